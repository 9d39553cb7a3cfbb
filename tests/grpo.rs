//! End-to-end tests of `trl grpo` and `trl rloo` on bundled prompt-only data and the tiny
//! fixture model, with rewards from an external program (`cmd:`): what a run writes
//! (metrics, `completions.jsonl`, the model), exact resume from a checkpoint taken in the
//! middle of a generation batch, and a reward program that crashes.

mod common;

use std::path::Path;

use common::{SHARE_REWARD, json_lines, logged_steps, read_json, text, trl, write_script};

/// tiny-llama: its samples are diverse at temperature 1 (tiny-qwen2 repeats one token, so every
/// reward group would have zero spread).
const MODEL: &str = common::ONLINE_MODEL;

/// Answers its first batch, then crashes with a message on stderr.
const CRASHING_REWARD: &str = r#"
import json, sys
first = True
for line in sys.stdin:
    if not first:
        sys.stderr.write("reward backend lost its database connection\n")
        sys.exit(3)
    first = False
    print(json.dumps([0.5 for _ in json.loads(line)]), flush=True)
"#;

/// [`common::online_args`] with a checkpoint every step.
fn online_args(command: &str, reward: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = common::online_args(command, reward, out, &["--save_steps", "1"]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn grpo_logs_trl_metrics_completions_and_saves_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let reward = write_script(dir.path(), "share.py", SHARE_REWARD);
    let out = dir.path().join("run");
    let args = online_args(
        "grpo",
        &reward,
        &out,
        &[
            "--max_steps",
            "2",
            "--log_completions",
            "true",
            "--beta",
            "0.04",
        ],
    );
    let run = trl(&args);
    assert!(run.status.success(), "{}", text(&run));
    let steps = logged_steps(&out);
    assert_eq!(steps.len(), 2, "{steps:?}");
    for name in [
        "loss",
        "grad_norm",
        "reward",
        "reward_std",
        "rewards/share/mean",
        "rewards/share/std",
        "frac_reward_zero_std",
        "completions/mean_length",
        "completions/clipped_ratio",
        "completions/mean_terminated_length",
        "entropy",
        "kl",
        "clip_ratio/low_mean",
        "clip_ratio/high_max",
        "clip_ratio/region_mean",
        "num_tokens",
        "step_time",
    ] {
        let value = steps[0][name].as_f64();
        assert!(value.is_some_and(f64::is_finite), "{name}: {:?}", steps[0]);
    }
    let lines = json_lines(&std::fs::read_to_string(out.join("completions.jsonl")).unwrap());
    assert_eq!(lines.len(), 2 * 4, "two steps of four completions");
    for line in &lines {
        for key in [
            "step",
            "prompt",
            "completion",
            "completion_ids",
            "rewards",
            "reward",
            "advantage",
        ] {
            assert!(line.get(key).is_some(), "{key} missing in {line}");
        }
        let share = line["rewards"]["share"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&share), "{line}");
    }
    // A group's advantages sum to ~0 (group-normalised).
    let group: f64 = lines[..4]
        .iter()
        .map(|l| l["advantage"].as_f64().unwrap())
        .sum();
    assert!(group.abs() < 1e-3, "{group}");
    assert!(out.join("model.safetensors").is_file());
    assert!(
        out.join("checkpoint-2")
            .join("rollout_state.json")
            .is_file()
    );
}

#[test]
fn resuming_mid_generation_batch_repeats_the_unbroken_run() {
    let dir = tempfile::tempdir().unwrap();
    let reward = write_script(dir.path(), "share.py", SHARE_REWARD);
    // Two accumulation steps per generation batch and two passes over it: a checkpoint after
    // step 1 sits in the middle of the first batch's reuse.
    // Five steps: generations at steps 1 and 5 (every 2 × 2 accumulation steps).
    let extra = [
        "--max_steps",
        "5",
        "--steps_per_generation",
        "2",
        "--num_iterations",
        "2",
        "--log_completions",
        "true",
    ];
    let unbroken = dir.path().join("unbroken");
    let run = trl(&online_args("grpo", &reward, &unbroken, &extra));
    assert!(run.status.success(), "{}", text(&run));
    let resumed = dir.path().join("resumed");
    std::fs::create_dir_all(&resumed).unwrap();
    common::copy_dir(
        &unbroken.join("checkpoint-1"),
        &resumed.join("checkpoint-1"),
    );
    let mut args = online_args("grpo", &reward, &resumed, &extra);
    args.extend(["--resume_from_checkpoint".into(), "true".into()]);
    let run = trl(&args);
    assert!(run.status.success(), "{}", text(&run));
    let weights = |dir: &Path| std::fs::read(dir.join("model.safetensors")).unwrap();
    assert!(
        weights(&unbroken) == weights(&resumed),
        "final weights differ after resume"
    );
    let losses = |dir: &Path| -> Vec<f64> {
        logged_steps(dir)
            .iter()
            .map(|s| s["loss"].as_f64().unwrap())
            .collect()
    };
    // The resumed run's history starts with the checkpoint's step, then its own steps.
    assert_eq!(losses(&unbroken), losses(&resumed), "logged losses");
    let completions = |dir: &Path| std::fs::read_to_string(dir.join("completions.jsonl")).unwrap();
    let (all, after) = (completions(&unbroken), completions(&resumed));
    assert!(
        !after.is_empty() && all.ends_with(&after),
        "the resumed run's completions are the unbroken run's last ones"
    );
}

#[test]
fn a_crashing_reward_program_stops_the_run_and_keeps_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let reward = write_script(dir.path(), "crash.py", CRASHING_REWARD);
    let out = dir.path().join("run");
    let run = trl(&online_args("grpo", &reward, &out, &["--max_steps", "3"]));
    assert!(!run.status.success());
    let message = text(&run);
    assert!(message.contains("crash.py"), "{message}");
    assert!(
        message.contains("lost its database connection"),
        "{message}"
    );
    // Step 1 finished and was checkpointed before the second batch's scoring failed.
    let state = read_json(&out.join("checkpoint-1").join("trainer_state.json"));
    assert_eq!(state["global_step"], 1);
    assert!(!out.join("model.safetensors").exists());
}

#[test]
fn rloo_folds_the_kl_into_the_reward_and_logs_it() {
    let dir = tempfile::tempdir().unwrap();
    let reward = write_script(dir.path(), "share.py", SHARE_REWARD);
    let out = dir.path().join("run");
    let run = trl(&online_args("rloo", &reward, &out, &["--max_steps", "2"]));
    assert!(run.status.success(), "{}", text(&run));
    let steps = logged_steps(&out);
    for name in ["loss", "kl", "reward", "entropy", "clip_ratio/region_mean"] {
        assert!(
            steps[1][name].as_f64().is_some_and(f64::is_finite),
            "{name}: {:?}",
            steps[1]
        );
    }
}

#[test]
fn vllm_keys_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let reward = write_script(dir.path(), "share.py", SHARE_REWARD);
    let out = dir.path().join("run");
    let run = trl(&online_args("grpo", &reward, &out, &["--use_vllm", "true"]));
    assert!(!run.status.success());
    assert!(
        text(&run).contains("--use_vllm") && text(&run).contains("vLLM"),
        "{}",
        text(&run)
    );
    assert!(!out.exists());
}

#[test]
fn generation_batch_must_hold_whole_groups() {
    let dir = tempfile::tempdir().unwrap();
    let reward = write_script(dir.path(), "share.py", SHARE_REWARD);
    let out = dir.path().join("run");
    let run = trl(&online_args(
        "grpo",
        &reward,
        &out,
        &["--num_generations", "3"],
    ));
    assert!(!run.status.success());
    assert!(text(&run).contains("num_generations"), "{}", text(&run));
}

#[test]
fn sync_ref_model_blends_the_reference_and_checkpoints_keep_it() {
    let dir = tempfile::tempdir().unwrap();
    let reward = write_script(dir.path(), "share.py", SHARE_REWARD);
    let out = dir.path().join("run");
    let extra = [
        "--max_steps",
        "2",
        "--beta",
        "0.04",
        "--sync_ref_model",
        "true",
        "--ref_model_sync_steps",
        "1",
        "--ref_model_mixup_alpha",
        "0.5",
    ];
    let run = trl(&online_args("grpo", &reward, &out, &extra));
    assert!(run.status.success(), "{}", text(&run));
    let synced = std::fs::read(out.join("checkpoint-2/ref_model/model.safetensors")).unwrap();
    let original = std::fs::read(Path::new(MODEL).join("model.safetensors")).unwrap();
    assert!(
        synced != original,
        "the reference was not blended with the policy"
    );
}
