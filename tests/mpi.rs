//! Data-parallel training over MPI, end to end: `mpiexec -n 2 trl ...` on the CPU backend
//! against one process with the same global batch. Compiled only with `--features mpi` (the
//! default `cargo test` builds no MPI); `.ci/run` runs it with `cargo test --features mpi
//! --test mpi`. Needs `mpiexec` (Debian: openmpi-bin).
#![cfg(feature = "mpi")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::mpi::{assert_close, mpiexec, trl_one_thread, weights};
use common::{MODEL, logged_steps, read_json, text, wait_for};

/// Waits for `child` at most `limit`; a job still running then is killed and the test fails
/// (a rank that died must never leave the others hanging).
fn finish_within(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the MPI job was still running after {limit:?}: it hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `command` on `dataset` with `batch` rows per device, 2 accumulation steps, `steps` steps,
/// a loss logged every step, into `out`. Adam's epsilon is raised from 1e-8 to 1e-4: a
/// parameter whose true gradient is 0 (the key projection's bias: softmax ignores a shift of
/// every score) gets rounding noise as its gradient, which Adam with a tiny epsilon turns into
/// full-size steps of random sign; real gradients here are far above 1e-4.
fn run_args(command: &str, dataset: &str, batch: usize, steps: usize, out: &Path) -> Vec<String> {
    let batch = batch.to_string();
    let steps = steps.to_string();
    let out = out.to_string_lossy();
    strings(&[
        command,
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        dataset,
        "--per_device_train_batch_size",
        &batch,
        "--gradient_accumulation_steps",
        "2",
        "--learning_rate",
        "1e-3",
        "--adam_epsilon",
        "1e-4",
        "--logging_steps",
        "1",
        "--save_steps",
        "2",
        "--max_steps",
        &steps,
        "--output_dir",
        &out,
    ])
}

/// 2 ranks x batch b x GA 2 against 1 process x batch 2b x GA 2: the same losses at every
/// step, the same final weights, and only rank 0 wrote outputs.
fn assert_two_ranks_match_one_process(command: &str, dataset: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    trl_one_thread(&run_args(command, dataset, 4, 4, &one));
    let output = mpiexec()
        .args(["-n", "2", env!("CARGO_BIN_EXE_trl")])
        .args(run_args(command, dataset, 2, 4, &two))
        .output()
        .unwrap();
    let log = text(&output);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("rank 0 of 2") && log.contains("rank 1 of 2"),
        "{log}"
    );
    assert!(log.contains("parameters identical on all 2 ranks"), "{log}");
    let (expected, got) = (logged_steps(&one), logged_steps(&two));
    assert_eq!(expected.len(), 4);
    assert_eq!(got.len(), expected.len());
    for (step, (a, b)) in expected.iter().zip(&got).enumerate() {
        for key in ["loss", "grad_norm"] {
            let what = format!("{command} {key} of step {}", step + 1);
            assert_close(&what, a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
        }
        assert_eq!(
            a["num_tokens"],
            b["num_tokens"],
            "{command} step {}",
            step + 1
        );
    }
    let state = read_json(&two.join("trainer_state.json"));
    assert_eq!(state["global_step"], 4);
    for ((name, a), (other, b)) in weights(&one).iter().zip(&weights(&two)) {
        assert_eq!(name, other);
        for (x, y) in a.iter().zip(b) {
            assert_close(
                &format!("{command} weight {name}"),
                f64::from(*x),
                f64::from(*y),
            );
        }
    }
}

#[test]
fn sft_on_two_ranks_equals_one_process_with_the_global_batch() {
    assert_two_ranks_match_one_process("sft", "datasets/messages.jsonl");
}

#[test]
fn two_ranks_resume_from_rank_zeros_checkpoint_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, resumed) = (tmp.path().join("whole"), tmp.path().join("resumed"));
    let run = |out: &Path, extra: &[&str]| {
        let output = mpiexec()
            .args(["-n", "2", env!("CARGO_BIN_EXE_trl")])
            .args(run_args("sft", "datasets/messages.jsonl", 2, 4, out))
            .args(extra)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
        text(&output)
    };
    run(&whole, &[]);
    common::copy_dir(&whole.join("checkpoint-2"), &resumed.join("checkpoint-2"));
    let log = run(&resumed, &["--resume_from_checkpoint", "true"]);
    assert!(
        log.contains("resuming from") && log.contains("at step 2"),
        "{log}"
    );
    let bytes = |dir: &Path| std::fs::read(dir.join("model.safetensors")).unwrap();
    assert!(
        bytes(&whole) == bytes(&resumed),
        "the resumed run ended with other weights"
    );
}

#[test]
fn dpo_on_two_ranks_equals_one_process_with_the_global_batch() {
    assert_two_ranks_match_one_process("dpo", "datasets/preference.jsonl");
}

#[test]
fn a_failing_rank_ends_the_job_naming_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let good = run_args(
        "sft",
        "datasets/messages.jsonl",
        2,
        4,
        &tmp.path().join("out"),
    );
    let mut bad = good.clone();
    let missing = tmp.path().join("missing.jsonl");
    bad[4] = missing.to_string_lossy().into_owned();
    // MPMD: rank 0 runs the good command, rank 1 the one whose dataset does not exist.
    let child = mpiexec()
        .args(["-n", "1", env!("CARGO_BIN_EXE_trl")])
        .args(&good)
        .args([":", "-n", "1", env!("CARGO_BIN_EXE_trl")])
        .args(&bad)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = finish_within(child, Duration::from_secs(120));
    let log = text(&output);
    assert!(!output.status.success(), "{log}");
    assert!(
        log.contains("error (rank 1 of 2)") && log.contains("missing.jsonl"),
        "{log}"
    );
}

/// The pid of the process whose environment holds both `marker` and rank 1's variable.
fn rank_one_pid(marker: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
            let has = |v: &str| vars.contains(&v.as_bytes());
            (has(marker) && has("OMPI_COMM_WORLD_RANK=1")).then_some(pid)
        })
}

#[test]
fn a_killed_rank_ends_the_job_with_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out: PathBuf = tmp.path().join("out");
    let marker = format!("TRL_MPI_TEST={}", std::process::id());
    let (name, value) = marker.split_once('=').unwrap();
    let child = mpiexec()
        .env(name, value)
        .args(["-n", "2", env!("CARGO_BIN_EXE_trl")])
        .args(run_args("sft", "datasets/messages.jsonl", 2, 100_000, &out))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_for(&out.join("checkpoint-2"), Duration::from_secs(120)),
        "no step was made"
    );
    let pid = rank_one_pid(&marker).expect("rank 1 runs");
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let output = finish_within(child, Duration::from_secs(60));
    let log = text(&output);
    assert!(!output.status.success(), "{log}");
    assert!(log.contains("rank 1") && log.contains("signal 9"), "{log}");
}

/// Each rank evaluates every other eval batch; the gathered `eval_*` values equal one
/// process evaluating them all (the same eval batch size, 64 rows in batches of 4).
#[test]
fn sft_evaluation_is_sharded_and_equals_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let eval = strings(&[
        "--eval_dataset_name",
        "datasets/messages.jsonl",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "2",
        "--per_device_eval_batch_size",
        "4",
    ]);
    let dataset = "datasets/messages.jsonl";
    trl_one_thread(&[run_args("sft", dataset, 4, 2, &one), eval.clone()].concat());
    let output = mpiexec()
        .args(["-n", "2", env!("CARGO_BIN_EXE_trl")])
        .args(run_args("sft", dataset, 2, 2, &two))
        .args(&eval)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let eval_entry = |out: &Path| {
        let state = read_json(&out.join("trainer_state.json"));
        let entries = state["log_history"].as_array().unwrap().clone();
        entries
            .into_iter()
            .find(|e| e.get("eval_loss").is_some())
            .unwrap()
    };
    let (expected, got) = (eval_entry(&one), eval_entry(&two));
    for key in [
        "eval_loss",
        "eval_entropy",
        "eval_mean_token_accuracy",
        "eval_num_tokens",
    ] {
        let value = |e: &serde_json::Value| e[key].as_f64().unwrap();
        assert_close(&format!("sft {key}"), value(&expected), value(&got));
    }
}
