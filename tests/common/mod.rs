//! Helpers shared by the end-to-end tests in `tests/`: where the repository is, a cache folder
//! private to the test process, running the `trl` binary, and reading what it printed or wrote.
//!
//! Cargo compiles this module into every test target that says `mod common;` (a folder module,
//! so it is not a test target of its own). Each target uses only some of the helpers, hence
//! `allow(dead_code)`.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod mpi;

/// The tiny Qwen2 causal LM the end-to-end tests train, relative to [`root`].
pub const MODEL: &str = "fixtures/models/tiny-qwen2";

/// The repository root: every run starts there, so the tests name fixtures and datasets by
/// their paths in the repository.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A cache folder for this build of `trl`, so no run reads another build's cached data: under
/// cargo's `target/tmp` (not the system's temp folder, which a folder per test process filled),
/// named by the binary's modification time.
pub fn cache_dir() -> PathBuf {
    let built = std::fs::metadata(env!("CARGO_BIN_EXE_trl"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(
            || format!("pid-{}", std::process::id()),
            |d| d.as_nanos().to_string(),
        );
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("test-cache-{built}"))
}

/// `trl args...`, not started yet: run from [`root`] with `TRL_RS_CACHE` set to [`cache_dir`].
/// For runs that need more (another cache, a variable, piped streams).
pub fn trl_command<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trl"));
    command
        .args(args)
        .current_dir(root())
        .env("TRL_RS_CACHE", cache_dir());
    command
}

/// Runs `trl args...` to its end (see [`trl_command`]) and returns its exit status and output.
pub fn trl<S: AsRef<OsStr>>(args: &[S]) -> Output {
    trl_command(args).output().unwrap()
}

/// Runs `trl args...` with `cache` as its cache folder, for tests about what is cached.
pub fn trl_in_cache<S: AsRef<OsStr>>(args: &[S], cache: &Path) -> Output {
    trl_command(args)
        .env("TRL_RS_CACHE", cache)
        .output()
        .unwrap()
}

/// Runs `trl args...` with `stdin` piped in, for commands that read prompts from stdin.
pub fn trl_with_stdin<S: AsRef<OsStr>>(args: &[S], stdin: &str) -> Output {
    let mut child = trl_command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    // A run that stops on a bad option exits before reading its input: the pipe is then
    // closed under the write, which is no failure of the test.
    if let Err(e) = written {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing trl's stdin: {e}"
        );
    }
    child.wait_with_output().unwrap()
}

/// Stdout followed by stderr of a run: what a user saw, for assertions and their messages.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Stderr of a run alone, where stdout holds results (JSON lines) the message must not mix in.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Whether `path` appears within `timeout`, polled every 5 ms; for a run still going on.
pub fn wait_for(path: &Path, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Copies every file of the tiny model ([`MODEL`]) into `target` (created when missing) and
/// returns `target`, for tests that break one file of an otherwise good model.
pub fn copy_model(target: &Path) -> PathBuf {
    std::fs::create_dir_all(target).unwrap();
    for entry in std::fs::read_dir(root().join(MODEL)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
    }
    target.to_path_buf()
}

/// The parsed JSON file at `path`; panics naming the file when it is missing.
pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The entries of the `log_history` in `out_dir`'s `trainer_state.json` that hold `key`.
fn log_entries_with(out_dir: &Path, key: &str) -> Vec<Value> {
    let state = read_json(&out_dir.join("trainer_state.json"));
    state["log_history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.get(key).is_some())
        .cloned()
        .collect()
}

/// The logged steps (entries with a `loss`) of the `trainer_state.json` in `out_dir`.
pub fn logged_steps(out_dir: &Path) -> Vec<Value> {
    log_entries_with(out_dir, "loss")
}

/// The evaluations (entries with an `eval_loss`) of the `trainer_state.json` in `out_dir`.
pub fn eval_entries(out_dir: &Path) -> Vec<Value> {
    log_entries_with(out_dir, "eval_loss")
}

/// The logged losses of the run in `out_dir`, in step order.
pub fn logged_losses(out_dir: &Path) -> Vec<Value> {
    logged_steps(out_dir)
        .into_iter()
        .map(|e| e["loss"].clone())
        .collect()
}

/// One parsed JSON value per line of `text` (a JSONL file or stdout).
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The tiny Llama the online-method tests (GRPO, RLOO) train.
pub const ONLINE_MODEL: &str = "fixtures/models/tiny-llama";

/// A reward program for [`online_args`]: for each batch line, the share of completion tokens
/// below id 192 (deterministic, and spread out on [`ONLINE_MODEL`]'s samples).
pub const SHARE_REWARD: &str = r#"
import json, sys
for line in sys.stdin:
    batch = json.loads(line)
    print(json.dumps([
        sum(1 for t in row["completion_ids"] if t < 192) / max(len(row["completion_ids"]), 1)
        for row in batch
    ]), flush=True)
"#;

/// Every per-step metric TRL 1.12's PPOTrainer logs.
pub const PPO_METRICS: [&str; 17] = [
    "eps",
    "objective/kl",
    "objective/entropy",
    "objective/non_score_reward",
    "objective/rlhf_reward",
    "objective/scores",
    "policy/approxkl_avg",
    "policy/clipfrac_avg",
    "policy/entropy_avg",
    "loss/policy_avg",
    "loss/value_avg",
    "val/clipfrac_avg",
    "val/ratio",
    "val/ratio_var",
    "val/num_eos_tokens",
    "lr",
    "episode",
];

/// Writes the program `body` to `dir/name` (a `cmd:` reward), returning its path.
pub fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

/// `trl <command>` (grpo, rloo) on the prompt-only data with [`ONLINE_MODEL`] and the `cmd:`
/// reward program `reward`: four prompts x four completions of up to six tokens per step,
/// learning rate 1e-3, every step logged to `out`; `extra` flags follow.
pub fn online_args(command: &str, reward: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let reward = format!("cmd:python3 {}", reward.display());
    let out = out.to_string_lossy();
    let mut args: Vec<String> = [
        command,
        "--model_name_or_path",
        ONLINE_MODEL,
        "--dataset_name",
        "datasets/prompt_only.jsonl",
        "--reward_funcs",
        &reward,
        "--num_generations",
        "4",
        "--per_device_train_batch_size",
        "4",
        "--max_completion_length",
        "6",
        "--learning_rate",
        "1e-3",
        "--logging_steps",
        "1",
        "--output_dir",
        &out,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Copies the folder `from` into `to`, recursively (a checkpoint or an output folder that a
/// test resumes from or compares against).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
