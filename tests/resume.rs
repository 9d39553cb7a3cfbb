//! End-to-end tests of stopping and resuming: `kill -9` between checkpoints, Ctrl-C and
//! SIGTERM, each followed by `--resume_from_checkpoint true`, compared with an unbroken run.
//!
//! No hook slows the library's loop: a run is long enough (hundreds of tiny steps) that the
//! test sees its first checkpoints appear and signals it well before its end.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{MODEL, read_json, text, trl, trl_command, wait_for};

/// Starts `trl args...` with its output piped, to signal or kill it while it trains.
fn spawn(args: &[String]) -> Child {
    trl_command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn with_output(mut args: Vec<String>, out: &Path, extra: &[&str]) -> Vec<String> {
    args.push("--output_dir".into());
    args.push(out.to_string_lossy().into_owned());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// SFT for `steps` steps with a checkpoint every 3, decaying LR and weight decay.
fn sft(steps: &str) -> Vec<String> {
    strings(&[
        "sft",
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        "datasets/messages.jsonl",
        "--per_device_train_batch_size",
        "2",
        "--learning_rate",
        "1e-3",
        "--lr_scheduler_type",
        "linear",
        "--weight_decay",
        "0.1",
        "--logging_steps",
        "5",
        "--save_steps",
        "3",
        "--max_steps",
        steps,
    ])
}

/// TR-DPO: the reference is blended with the policy every 2 steps, so a resumed run that
/// restarted from the original reference would train differently.
fn tr_dpo(steps: &str) -> Vec<String> {
    strings(&[
        "dpo",
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        "datasets/preference.jsonl",
        "--per_device_train_batch_size",
        "2",
        "--learning_rate",
        "5e-3",
        "--beta",
        "0.5",
        "--sync_ref_model",
        "true",
        "--ref_model_sync_steps",
        "2",
        "--ref_model_mixup_alpha",
        "0.5",
        "--logging_steps",
        "5",
        "--save_steps",
        "3",
        "--max_steps",
        steps,
    ])
}

/// Runs `args` unbroken, and again killed with SIGKILL once `checkpoint-6` exists, then
/// resumed: both end with the same weights, bit for bit.
fn assert_kill_and_resume_is_exact(args: Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    let out = trl(&with_output(args.clone(), &full, &[]));
    assert!(out.status.success(), "{}", text(&out));

    let killed = dir.path().join("killed");
    let broken = with_output(args, &killed, &[]);
    let mut child = spawn(&broken);
    let seen = wait_for(
        &killed.join("checkpoint-6/trainer_state.json"),
        Duration::from_secs(120),
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(seen, "no checkpoint-6 appeared");
    assert!(
        !killed.join("model.safetensors").exists(),
        "the run finished before it was killed"
    );
    let mut resume = broken.clone();
    resume.extend(strings(&["--resume_from_checkpoint", "true"]));
    let out = trl(&resume);
    assert!(out.status.success(), "{}", text(&out));
    let a = std::fs::read(full.join("model.safetensors")).unwrap();
    let b = std::fs::read(killed.join("model.safetensors")).unwrap();
    assert!(a == b, "resumed weights differ from the uninterrupted run");
}

#[test]
fn sft_resumed_after_sigkill_ends_bitwise_equal() {
    assert_kill_and_resume_is_exact(sft("300"));
}

#[test]
fn tr_dpo_resumed_after_sigkill_ends_bitwise_equal() {
    assert_kill_and_resume_is_exact(tr_dpo("240"));
}

#[test]
fn tr_dpo_checkpoints_keep_the_synced_reference() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let out = trl(&with_output(tr_dpo("3"), &out_dir, &[]));
    assert!(out.status.success(), "{}", text(&out));
    let reference = out_dir.join("checkpoint-3/ref_model");
    assert!(reference.join("model.safetensors").is_file());
    assert!(reference.join("config.json").is_file());
}

/// GRPO with two accumulation steps per generation batch and two passes over it (so
/// checkpoints fall inside a batch's reuse), rewards from an external program.
fn grpo(steps: &str, reward: &Path) -> Vec<String> {
    let reward = format!("cmd:python3 {}", reward.display());
    strings(&[
        "grpo",
        "--model_name_or_path",
        "fixtures/models/tiny-llama",
        "--dataset_name",
        "datasets/prompt_only.jsonl",
        "--reward_funcs",
        &reward,
        "--num_generations",
        "4",
        "--per_device_train_batch_size",
        "4",
        "--steps_per_generation",
        "2",
        "--num_iterations",
        "2",
        "--max_completion_length",
        "6",
        "--learning_rate",
        "1e-3",
        "--beta",
        "0.04",
        "--logging_steps",
        "5",
        "--save_steps",
        "3",
        "--max_steps",
        steps,
    ])
}

#[test]
fn grpo_resumed_after_sigkill_ends_bitwise_equal() {
    let dir = tempfile::tempdir().unwrap();
    let reward = dir.path().join("share.py");
    std::fs::write(
        &reward,
        "import json, sys\n\
         for line in sys.stdin:\n\
         \x20   rows = json.loads(line)\n\
         \x20   print(json.dumps([sum(t < 192 for t in r['completion_ids']) / len(r['completion_ids']) for r in rows]), flush=True)\n",
    )
    .unwrap();
    assert_kill_and_resume_is_exact(grpo("200", &reward));
}

/// Sends `signal` once the run has written its first checkpoint: the run saves a checkpoint
/// after the current step, says so, exits with 130, and resuming finishes the run.
fn assert_signal_checkpoints_and_resumes(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let args = with_output(sft("100000"), &out_dir, &["--save_steps", "5"]);
    let child = spawn(&args);
    assert!(wait_for(
        &out_dir.join("checkpoint-5/trainer_state.json"),
        Duration::from_secs(120)
    ));
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let message = text(&output);
    assert_eq!(output.status.code(), Some(130), "{message}");
    assert!(message.contains("interrupted at step"), "{message}");
    assert!(!message.contains("panicked"), "{message}");
    let state = read_json(&latest_checkpoint(&out_dir).join("trainer_state.json"));
    let step = state["global_step"].as_u64().unwrap();
    assert!((5..100_000).contains(&step), "{step}");
    assert!(
        message.contains(&format!("interrupted at step {step}")),
        "{message}"
    );
    // Resuming (to a shorter end) continues from that step.
    let mut resume = with_output(sft(&(step + 2).to_string()), &out_dir, &[]);
    resume.extend(strings(&["--resume_from_checkpoint", "true"]));
    let out = trl(&resume);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("at step {step}")),
        "{}",
        text(&out)
    );
}

fn latest_checkpoint(dir: &Path) -> PathBuf {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            Some((name.strip_prefix("checkpoint-")?.parse().ok()?, e.path()))
        })
        .collect();
    found.sort();
    found.pop().expect("a checkpoint").1
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_resumes() {
    assert_signal_checkpoints_and_resumes("-INT");
}

#[test]
fn sigterm_saves_a_checkpoint_and_resumes() {
    assert_signal_checkpoints_and_resumes("-TERM");
}
