//! Data-parallel GRPO, RLOO and PPO over MPI, end to end: `mpiexec -n 2 trl grpo|rloo|ppo`
//! on the CPU backend against one process with the same global batch. Each rank generates its
//! half of every generation (rollout) batch (seeded per global row), the rewards (PPO: the
//! scored rollout) are gathered for the advantages, so the completions, rewards, advantages,
//! losses and weights equal one process's. Compiled only with `--features mpi`; needs
//! `mpiexec` and `python3` (the reward program).
#![cfg(feature = "mpi")]

mod common;

use std::path::{Path, PathBuf};

use common::mpi::{assert_close, mpiexec, trl_one_thread, weights};
use common::{json_lines, logged_steps, text};
use serde_json::Value;

/// Writes the reward program into `dir` (as `share.py`).
fn reward_program(dir: &Path) {
    common::write_script(dir, "share.py", common::SHARE_REWARD);
}

/// Four prompts of the training data: the eval set.
fn eval_set(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(common::root().join("datasets/prompt_only.jsonl")).unwrap();
    let path = dir.join("eval.jsonl");
    let lines: Vec<&str> = text.lines().take(4).collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// `command` with `batch` completions per device and per step (groups of 4: with 2 ranks x
/// 2, every group is split between the ranks), 4 steps, completions logged, and an
/// evaluation at the last step in eval batches of `batch` (groups of 2).
fn run_args(command: &str, dir: &Path, batch: usize, out: &Path, extra: &[&str]) -> Vec<String> {
    let eval = eval_set(dir).to_string_lossy().into_owned();
    let batch_text = batch.to_string();
    let mut flags = vec![
        "--max_steps",
        "4",
        "--adam_epsilon",
        "1e-4",
        "--log_completions",
        "true",
        "--eval_dataset_name",
        &eval,
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "4",
        "--num_generations_eval",
        "2",
        "--per_device_eval_batch_size",
        &batch_text,
    ];
    flags.extend(extra);
    let reward = dir.join("share.py");
    let mut args = common::online_args(command, &reward, out, &flags);
    let at = args
        .iter()
        .position(|a| a == "--per_device_train_batch_size")
        .unwrap();
    args[at + 1] = batch_text;
    args
}

/// The logged values 2 ranks and 1 process must agree on.
const KEYS: [&str; 6] = [
    "loss",
    "grad_norm",
    "reward",
    "reward_std",
    "completions/mean_length",
    "num_tokens",
];

/// The evaluation's values 2 ranks and 1 process must agree on.
const EVAL_KEYS: [&str; 4] = [
    "eval_loss",
    "eval_reward",
    "eval_reward_std",
    "eval_completions/mean_length",
];

/// 2 ranks x 2 completions against 1 process x 4: the same completions (ids, rewards,
/// advantages) in `completions.jsonl`, written once; the same logged values at every step;
/// the same final weights.
fn assert_two_ranks_match_one_process(command: &str, extra: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    reward_program(tmp.path());
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    trl_one_thread(&run_args(command, tmp.path(), 4, &one, extra));
    let output = mpiexec()
        .args(["-n", "2", env!("CARGO_BIN_EXE_trl")])
        .args(run_args(command, tmp.path(), 2, &two, extra))
        .output()
        .unwrap();
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("parameters identical on all 2 ranks"), "{log}");
    let (expected, got) = (logged_steps(&one), logged_steps(&two));
    assert_eq!((expected.len(), got.len()), (4, 4), "{log}");
    for (step, (a, b)) in expected.iter().zip(&got).enumerate() {
        for key in KEYS {
            let what = format!("{command} {key} of step {}", step + 1);
            let value = |e: &Value| e[key].as_f64().unwrap_or_else(|| panic!("{what}: {e}"));
            assert_close(&what, value(a), value(b));
        }
    }
    let (expected, got) = (eval_entry(&one), eval_entry(&two));
    for key in EVAL_KEYS {
        let what = format!("{command} {key}");
        assert_close(
            &what,
            expected[key].as_f64().unwrap(),
            got[key].as_f64().unwrap(),
        );
    }
    let lines = |path: PathBuf| json_lines(&std::fs::read_to_string(path).unwrap());
    let evaluated = |dir: &Path| lines(dir.join("eval_completions.jsonl")).len();
    assert_eq!((evaluated(&one), evaluated(&two)), (8, 8), "4 prompts x 2");
    let completions = |dir: &Path| lines(dir.join("completions.jsonl"));
    let (expected, got) = (completions(&one), completions(&two));
    assert_eq!(expected.len(), 16, "4 steps x 4 completions");
    assert_eq!(
        got.len(),
        expected.len(),
        "rank 0 writes every rank's completions once"
    );
    for (a, b) in expected.iter().zip(&got) {
        assert_eq!(a["completion_ids"], b["completion_ids"]);
        assert_eq!(a["step"], b["step"]);
        for key in ["reward", "advantage"] {
            let what = format!("{command} completion {key}");
            assert_close(&what, a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
        }
    }
    for ((name, a), (other, b)) in weights(&one).iter().zip(&weights(&two)) {
        assert_eq!(name, other);
        for (x, y) in a.iter().zip(b) {
            let what = format!("{command} weight {name}");
            assert_close(&what, f64::from(*x), f64::from(*y));
        }
    }
}

/// The evaluation entry of the run in `out`.
fn eval_entry(out: &Path) -> Value {
    let state = common::read_json(&out.join("trainer_state.json"));
    let entries = state["log_history"].as_array().unwrap();
    let found = entries.iter().find(|e| e.get("eval_loss").is_some());
    found
        .unwrap_or_else(|| panic!("no evaluation in {state}"))
        .clone()
}

#[test]
fn grpo_on_two_ranks_equals_one_process_with_the_global_batch() {
    assert_two_ranks_match_one_process("grpo", &[]);
}

#[test]
fn rloo_on_two_ranks_equals_one_process_with_the_global_batch() {
    // beta != 0: the KL folded into the reward is gathered with the rewards.
    assert_two_ranks_match_one_process("rloo", &["--beta", "0.1"]);
}

#[test]
fn grpo_top_entropy_quantile_takes_its_threshold_over_both_ranks() {
    // TRL 1.16's get_high_entropy_mask gathers every process's entropies: the threshold of a
    // micro-batch split over 2 ranks is the one of the whole micro-batch in one process.
    assert_two_ranks_match_one_process("grpo", &["--top_entropy_quantile", "0.5"]);
}

#[test]
fn grpo_on_two_ranks_resumes_inside_a_generation_batch_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    reward_program(tmp.path());
    let (whole, resumed) = (tmp.path().join("whole"), tmp.path().join("resumed"));
    // A generation batch serves 2 steps, so checkpoint-1 holds half-used rollout buffers.
    let extra = ["--steps_per_generation", "2", "--save_steps", "1"];
    let run = |out: &Path, more: &[&str]| {
        let output = mpiexec()
            .args(["-n", "2", env!("CARGO_BIN_EXE_trl")])
            .args(run_args("grpo", tmp.path(), 2, out, &extra))
            .args(more)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
        text(&output)
    };
    run(&whole, &[]);
    let checkpoint = whole.join("checkpoint-1");
    assert!(checkpoint.join("rollout_state.rank-1.json").is_file());
    common::copy_dir(&checkpoint, &resumed.join("checkpoint-1"));
    let log = run(&resumed, &["--resume_from_checkpoint", "true"]);
    assert!(log.contains("at step 1"), "{log}");
    let bytes = |dir: &Path| std::fs::read(dir.join("model.safetensors")).unwrap();
    assert!(
        bytes(&whole) == bytes(&resumed),
        "the resumed run ended with other weights"
    );
}

/// `trl ppo` on the prompt-only data with the tiny Qwen2 policy and reward model: `batch`
/// prompts per micro-batch, `accumulation` micro-batches per rank and rollout batch, two
/// mini-batches, two PPO epochs, 24 episodes (3 rollout batches of 8 prompts), a checkpoint
/// every 2 rollout batches; AdamW's epsilon 1e-4, so that gradients at float-rounding level
/// (summed in another order on two ranks) do not make full steps.
fn ppo_args(out: &Path, accumulation: usize) -> Vec<String> {
    let out = out.to_string_lossy();
    let accumulation = accumulation.to_string();
    [
        "ppo",
        "--model_name_or_path",
        common::MODEL,
        "--reward_model_path",
        "fixtures/models/tiny-qwen2-rm",
        "--dataset_name",
        "datasets/prompt_only.jsonl",
        "--output_dir",
        &out,
        "--per_device_train_batch_size",
        "2",
        "--gradient_accumulation_steps",
        &accumulation,
        "--num_mini_batches",
        "2",
        "--num_ppo_epochs",
        "2",
        "--response_length",
        "6",
        "--total_episodes",
        "24",
        "--save_steps",
        "2",
        "--num_sample_generations",
        "0",
        "--learning_rate",
        "1e-3",
        "--adam_epsilon",
        "1e-4",
        "--report_to",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// PPO's logged values 2 ranks and 1 process must agree on (all but the timing `eps`).
/// What a PPO step logs and 2 ranks must reproduce: the loss, the gradient norm, the tokens
/// and every TRL metric but the timing (`eps`).
fn ppo_keys() -> Vec<&'static str> {
    let metrics = common::PPO_METRICS.iter().filter(|k| **k != "eps");
    ["loss", "grad_norm", "num_tokens"]
        .into_iter()
        .chain(metrics.copied())
        .collect()
}

/// `mpiexec -n 2 trl ppo` with `args` and `more`; the output's text, whether it succeeded.
fn ppo_on_two_ranks(args: &[String], more: &[&str]) -> (bool, String) {
    let output = mpiexec()
        .args(["-n", "2", env!("CARGO_BIN_EXE_trl")])
        .args(args)
        .args(more)
        .output()
        .unwrap();
    (output.status.success(), text(&output))
}

/// Every weight of the policy (`dir`) and the value model (`dir/value_model`).
fn ppo_weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let mut all = weights(dir);
    let value = weights(&dir.join("value_model"));
    all.extend(
        value
            .into_iter()
            .map(|(name, w)| (format!("value/{name}"), w)),
    );
    all
}

#[test]
fn ppo_on_two_ranks_equals_one_process_with_twice_the_accumulation() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    // 1 x (2 prompts x 4 micro-batches) against 2 x (2 x 2): the same global rollout batch of
    // 8, mini-batches of 4, micro-batches of 2, whitened over all 8 rows.
    trl_one_thread(&ppo_args(&one, 4));
    let (ok, log) = ppo_on_two_ranks(&ppo_args(&two, 2), &[]);
    assert!(ok, "{log}");
    assert!(log.contains("parameters identical on all 2 ranks"), "{log}");
    let (expected, got) = (logged_steps(&one), logged_steps(&two));
    assert_eq!((expected.len(), got.len()), (3, 3), "{log}");
    for (step, (a, b)) in expected.iter().zip(&got).enumerate() {
        for key in ppo_keys() {
            let what = format!("ppo {key} of step {}", step + 1);
            let value = |e: &Value| e[key].as_f64().unwrap_or_else(|| panic!("{what}: {e}"));
            assert_close(&what, value(a), value(b));
        }
    }
    let (expected, got) = (ppo_weights(&one), ppo_weights(&two));
    assert_eq!(expected.len(), got.len());
    for ((name, a), (other, b)) in expected.iter().zip(&got) {
        assert_eq!(name, other);
        for (x, y) in a.iter().zip(b) {
            assert_close(&format!("ppo weight {name}"), f64::from(*x), f64::from(*y));
        }
    }
}

#[test]
fn ppo_on_two_ranks_resumes_on_two_ranks_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, resumed) = (tmp.path().join("whole"), tmp.path().join("resumed"));
    let (ok, log) = ppo_on_two_ranks(&ppo_args(&whole, 2), &[]);
    assert!(ok, "{log}");
    let checkpoint = resumed.join("checkpoint-2");
    common::copy_dir(&whole.join("checkpoint-2"), &checkpoint);
    // one process cannot take over a 2-rank run's checkpoint
    let mut alone = ppo_args(&resumed, 2);
    alone.extend(["--resume_from_checkpoint".into(), "true".into()]);
    let output = common::trl_command(&alone).output().unwrap();
    let refused = text(&output);
    assert!(!output.status.success(), "{refused}");
    assert!(refused.contains("mpirun -n 2"), "{refused}");
    let (ok, log) = ppo_on_two_ranks(
        &ppo_args(&resumed, 2),
        &["--resume_from_checkpoint", "true"],
    );
    assert!(ok, "{log}");
    assert!(log.contains("at step 2"), "{log}");
    for file in ["model.safetensors", "value_model/model.safetensors"] {
        let bytes = |dir: &Path| std::fs::read(dir.join(file)).unwrap();
        assert!(
            bytes(&whole) == bytes(&resumed),
            "{file}: the resumed run ended with other weights"
        );
    }
}
