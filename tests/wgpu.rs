//! The GPU code path (burn's wgpu backend: the composed kernels, not the CPU ones) against
//! TRL 1.16's reference numbers, runnable without a GPU on Mesa's lavapipe (software Vulkan;
//! Debian's `mesa-vulkan-drivers`, installed by `.ci/run`). Built only with `--features wgpu`:
//! `cargo test --features wgpu --test wgpu`.
//!
//! `trl sft` / `trl dpo --device wgpu` run the same reference cases as the CPU parity tests
//! (`fixtures/expected/{sft,dpo}`), compared with the same rules and tolerances; a short SFT run
//! on wgpu writes a checkpoint whose logits on the CPU backend equal those on wgpu.
#![cfg(feature = "wgpu")]

mod common;

use std::path::Path;

use burn::tensor::{Device, DeviceKind};
use common::{MODEL, online_args, read_json, root, stderr, trl};
use serde_json::Value;
use trl::core::model::{TokenBatch, load_causal_lm};
use trl::core::parity::{
    assert_log_history_matches, assert_run_updates_match, assert_summary_matches, read_case_rows,
};
use trl::core::train::state::LogEntry;

/// The config keys of a reference case that only mean something to Python (or that would
/// move the run to the CPU: `use_cpu`).
const PYTHON_ONLY: [&str; 4] = [
    "model_init_kwargs",
    "disable_tqdm",
    "dataloader_num_workers",
    "use_cpu",
];

/// `trl <command> --device wgpu` arguments reproducing the reference case `case` (its config
/// under `config_key`, its rows written to `dir/rows.jsonl`), saving into `dir/run`.
fn case_args(command: &str, case: &Value, config_key: &str, dir: &Path) -> Vec<String> {
    let rows = dir.join("rows.jsonl");
    let text: String = read_case_rows(case)
        .into_iter()
        .map(|row| serde_json::to_string(&row).unwrap() + "\n")
        .collect();
    std::fs::write(&rows, text).unwrap();
    let mut args: Vec<String> = vec![
        command.into(),
        "--device".into(),
        "wgpu".into(),
        "--model_name_or_path".into(),
        MODEL.into(),
        "--dataset_name".into(),
        rows.to_string_lossy().into(),
        "--output_dir".into(),
        dir.join("run").to_string_lossy().into(),
    ];
    for (key, value) in case[config_key].as_object().unwrap() {
        if PYTHON_ONLY.contains(&key.as_str()) {
            continue;
        }
        args.push(format!("--{key}"));
        args.push(match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    }
    args
}

/// Runs the reference case on wgpu and returns its output folder's `log_history`.
fn run_case(command: &str, case: &Value, config_key: &str, dir: &Path) -> Vec<LogEntry> {
    let out = trl(&case_args(command, case, config_key, dir));
    assert!(out.status.success(), "{}", stderr(&out));
    let state = read_json(&dir.join("run/trainer_state.json"));
    serde_json::from_value(state["log_history"].clone()).unwrap()
}

/// `trl sft --device wgpu` on the plain-text case: same losses, metrics and weight updates
/// as TRL, within the CPU parity test's tolerances (trl-sft's `parity_tests.rs`).
#[test]
fn sft_on_wgpu_matches_trl() {
    let case = read_json(&root().join("fixtures/expected/sft/text.json"));
    let dir = tempfile::tempdir().unwrap();
    let history = run_case("sft", &case, "sft_config", dir.path());
    let (loss_rtol, metric_rtol) = (2e-3, 1e-2);
    assert_log_history_matches(
        "sft text on wgpu",
        &history,
        &case["log_history"],
        loss_rtol,
        metric_rtol,
        &[
            "grad_norm",
            "entropy",
            "mean_token_accuracy",
            "learning_rate",
            "epoch",
        ],
        &["num_tokens"],
    );
    assert_summary_matches(
        "sft text on wgpu",
        &history,
        &case["log_history"],
        loss_rtol,
        &["train_loss", "entropy", "mean_token_accuracy", "num_tokens"],
    );
    assert_run_updates_match(
        "sft text on wgpu",
        &root().join(MODEL),
        &dir.path().join("run"),
        &case["param_update_norms"],
        metric_rtol,
    );
    // With burn's checkpointing strategy (activations recomputed in the backward): the same
    // losses within 1e-5.
    let again = tempfile::tempdir().unwrap();
    let mut args = case_args("sft", &case, "sft_config", again.path());
    args.extend(["--gradient_checkpointing".into(), "true".into()]);
    let out = trl(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let state = read_json(&again.path().join("run/trainer_state.json"));
    let losses = |entries: &[LogEntry]| -> Vec<f64> {
        entries
            .iter()
            .filter_map(|e| e.get("loss").and_then(Value::as_f64))
            .collect()
    };
    let checkpointed: Vec<LogEntry> = serde_json::from_value(state["log_history"].clone()).unwrap();
    let (plain, checkpointed) = (losses(&history), losses(&checkpointed));
    assert_eq!(plain.len(), checkpointed.len());
    for (a, b) in plain.iter().zip(&checkpointed) {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs(),
            "{plain:?} vs {checkpointed:?}"
        );
    }
}

/// `trl dpo --device wgpu` on the sigmoid case (policy + reference model): same losses,
/// rewards, log-probs and weight updates as TRL, within trl-dpo's parity tolerances.
#[test]
fn dpo_on_wgpu_matches_trl() {
    let case = read_json(&root().join("fixtures/expected/dpo/sigmoid.json"));
    let dir = tempfile::tempdir().unwrap();
    let history = run_case("dpo", &case, "dpo_config", dir.path());
    let (loss_rtol, metric_rtol) = (2e-3, 2e-2);
    assert_log_history_matches(
        "dpo sigmoid on wgpu",
        &history,
        &case["log_history"],
        loss_rtol,
        metric_rtol,
        &[
            "rewards/chosen",
            "rewards/rejected",
            "rewards/margins",
            "logps/chosen",
            "logps/rejected",
            "logits/chosen",
            "logits/rejected",
            "entropy",
            "grad_norm",
            "mean_token_accuracy",
            "learning_rate",
            "epoch",
            "rewards/accuracies",
        ],
        &["num_tokens"],
    );
    assert_summary_matches(
        "dpo sigmoid on wgpu",
        &history,
        &case["log_history"],
        loss_rtol,
        &["train_loss"],
    );
    assert_run_updates_match(
        "dpo sigmoid on wgpu",
        &root().join(MODEL),
        &dir.path().join("run"),
        &case["param_update_norms"],
        metric_rtol,
    );
}

/// Logits `[batch * seq * vocab]` of the model in `dir` loaded on `device`, for two rows of
/// different lengths (the shorter one left-padded).
fn logits_on(dir: &Path, device: &Device) -> Vec<f32> {
    let model = load_causal_lm(dir, device).unwrap();
    let batch = TokenBatch::new(
        vec![vec![0, 5, 17, 42, 7, 99], vec![0, 0, 3, 8, 250, 11]],
        vec![vec![1; 6], vec![0, 0, 1, 1, 1, 1]],
    );
    model
        .forward(&batch)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

/// A short `trl sft --device wgpu` run writes a checkpoint (and a final model) that the CPU
/// backend loads, with the same logits as on wgpu; training moved the weights.
#[test]
fn a_wgpu_checkpoint_loads_on_the_cpu_with_equal_logits() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = trl(&[
        "sft",
        "--device",
        "wgpu",
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        "datasets/text.jsonl",
        "--output_dir",
        run.to_str().unwrap(),
        "--max_steps",
        "2",
        "--save_steps",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--learning_rate",
        "1e-3",
        "--max_length",
        "32",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let checkpoint = run.join("checkpoint-2");
    assert!(checkpoint.join("model.safetensors").is_file());
    let wgpu = Device::wgpu(DeviceKind::DefaultDevice);
    let cpu = Device::flex();
    let on_gpu = logits_on(&checkpoint, &wgpu);
    let on_cpu = logits_on(&checkpoint, &cpu);
    let worst = on_gpu
        .iter()
        .zip(&on_cpu)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "checkpoint logits wgpu vs cpu: {worst}");
    let before = logits_on(&root().join(MODEL), &cpu);
    let moved = before
        .iter()
        .zip(&on_cpu)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        moved > 1e-3,
        "two steps at lr 1e-3 left the logits as they were"
    );
    // The final model is the checkpoint's weights.
    assert_eq!(logits_on(&run, &cpu), on_cpu);
}

/// `trl grpo --device wgpu` (generation through the KV cache, then the update) against the
/// same run on the CPU backend: the same sampled completions (equal rewards) and gradient
/// norms within 1e-5. TRL's GRPO replay needs its recorded completions, which only trl-grpo's
/// own tests can feed in, so the CPU run (itself checked against TRL there) is the reference.
#[test]
fn grpo_on_wgpu_matches_the_cpu_run() {
    let dir = tempfile::tempdir().unwrap();
    let reward = dir.path().join("reward.py");
    std::fs::write(
        &reward,
        "import json, sys\n\
         for line in sys.stdin:\n    \
             rows = json.loads(line)\n    \
             print(json.dumps([sum(r['completion_ids']) / (384 * max(1, len(r['completion_ids']))) \
             for r in rows]), flush=True)\n",
    )
    .unwrap();
    let run = |device: &str| -> Vec<LogEntry> {
        let out_dir = dir.path().join(device);
        let out = trl(&online_args(
            "grpo",
            &reward,
            &out_dir,
            &[
                "--device",
                device,
                "--max_steps",
                "3",
                "--save_strategy",
                "no",
            ],
        ));
        assert!(out.status.success(), "{}", stderr(&out));
        let state = read_json(&out_dir.join("trainer_state.json"));
        let history: Vec<LogEntry> = serde_json::from_value(state["log_history"].clone()).unwrap();
        history
            .into_iter()
            .filter(|e| e.contains_key("loss"))
            .collect()
    };
    let (cpu, gpu) = (run("cpu"), run("wgpu"));
    assert_eq!(cpu.len(), 3, "{cpu:?}");
    assert_eq!(cpu.len(), gpu.len());
    let value = |e: &LogEntry, key: &str| e[key].as_f64().unwrap();
    for (step, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
        let close = |key: &str, rtol: f64, atol: f64| {
            let (a, b) = (value(c, key), value(g, key));
            assert!(
                (a - b).abs() <= rtol * a.abs() + atol,
                "step {}: {key} cpu {a} vs wgpu {b}",
                step + 1
            );
        };
        close("reward", 1e-6, 0.0);
        close("grad_norm", 1e-5, 0.0);
        close("loss", 0.0, 1e-6);
    }
}

/// On wgpu, attention goes through the blocked op (scores a block of query rows at a time,
/// none kept for the backward) and the LM head's log-probs through the chunked one (no
/// `[tokens, vocab]` log-softmax kept): both equal the composed math in values and
/// gradients, with blocks smaller than the sequence.
#[test]
fn blocked_attention_and_chunked_head_match_the_composed_math_on_wgpu() {
    use trl::core::kernels::blocked_check::{
        ATTENTION_CASES, HEAD_CASES, attention_differences, head_differences,
    };
    let device = Device::wgpu(DeviceKind::DefaultDevice).autodiff();
    let q = burn::tensor::Tensor::<4>::zeros([1, 1, 2, 2], &device);
    assert!(trl::core::kernels::blocked::runs_on_cube(&q));
    for case in ATTENTION_CASES {
        let diffs = attention_differences(case, &device);
        assert!(diffs.iter().all(|d| *d < 1e-4), "{case:?}: {diffs:?}");
    }
    for case in HEAD_CASES {
        let diffs = head_differences(case, &device);
        assert!(diffs.iter().all(|d| *d < 1e-4), "{case:?}: {diffs:?}");
    }
}

/// `--fp16 true` on wgpu: fp16 matmuls over fp32 master weights with a dynamic loss scale;
/// the SFT reference case's losses stay within fp16 tolerance of TRL's fp32 ones (and are
/// not bitwise the fp32 run's: the half path ran). `--bf16 true` either runs (a runtime
/// with bf16 matmuls) or stops with the error naming the flag (lavapipe has none).
#[test]
fn fp16_mixed_precision_on_wgpu_tracks_fp32() {
    let case = read_json(&root().join("fixtures/expected/sft/text.json"));
    let dir = tempfile::tempdir().unwrap();
    let mut args = case_args("sft", &case, "sft_config", dir.path());
    args.extend(["--fp16".into(), "true".into()]);
    let out = trl(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("mixed precision: F16 matmuls"),
        "{}",
        stderr(&out)
    );
    let state = read_json(&dir.path().join("run/trainer_state.json"));
    let ours: Vec<f64> = state["log_history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.get("loss").and_then(Value::as_f64))
        .collect();
    let reference: Vec<f64> = case["log_history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.get("loss").and_then(Value::as_f64))
        .collect();
    assert_eq!(ours.len(), reference.len());
    assert!(!ours.is_empty());
    for (a, b) in ours.iter().zip(&reference) {
        assert!(
            (a - b).abs() <= 1e-2 * b.abs(),
            "{ours:?} vs TRL fp32 {reference:?}"
        );
    }
    assert!(
        ours.iter()
            .zip(&reference)
            .any(|(a, b)| (a - b).abs() > 1e-6 * b.abs())
    );

    let again = tempfile::tempdir().unwrap();
    let mut args = case_args("sft", &case, "sft_config", again.path());
    args.extend(["--bf16".into(), "true".into()]);
    let out = trl(&args);
    if !out.status.success() {
        let message = stderr(&out);
        assert!(
            message.contains("--bf16 true: this device's runtime has no"),
            "{message}"
        );
    }
}
