//! End-to-end tests of LoRA (`--use_peft`, peft adapter folders, `trl merge`): per-step losses
//! against TRL + peft (reference/peft_reference.py), resuming an adapter run, and the
//! SFT -> DPO -> merge pipeline on the bundled data.

mod common;

use std::path::Path;

use common::{logged_steps, read_json, root, stderr, trl};
use serde_json::Value;

/// Relative tolerance on per-step losses against TRL (fp32, different kernels).
const LOSS_RTOL: f64 = 2e-3;

/// `trl sft` arguments of the reference run in `expected/lora/sft.json`.
fn sft_reference_args(expected: &Value, out_dir: &Path) -> Vec<String> {
    let mut args = vec![
        "sft".to_string(),
        "--model_name_or_path".into(),
        expected["adapter_dir"].as_str().unwrap().into(),
        "--dataset_name".into(),
        expected["dataset"].as_str().unwrap().into(),
        "--output_dir".into(),
        out_dir.to_str().unwrap().into(),
    ];
    for (key, value) in expected["args"].as_object().unwrap() {
        args.push(format!("--{key}"));
        args.push(match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    }
    args
}

fn losses(steps: &[Value]) -> Vec<f64> {
    steps.iter().map(|e| e["loss"].as_f64().unwrap()).collect()
}

fn assert_close(ours: &[f64], theirs: &[f64], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: steps {ours:?} vs {theirs:?}");
    for (step, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!(
            (a - b).abs() <= LOSS_RTOL * b.abs(),
            "{what} step {}: ours {a} vs {b}\nours {ours:?}\nexpected {theirs:?}",
            step + 1
        );
    }
}

#[test]
fn sft_of_a_peft_adapter_matches_trl_step_by_step_and_resumes() {
    let expected = read_json(&root().join("fixtures/expected/lora/sft.json"));
    let theirs: Vec<Value> = expected["log_history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.get("loss").is_some())
        .cloned()
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let mut args = sft_reference_args(&expected, &out_dir);
    args.extend(["--save_steps".into(), "4".into()]);
    let out = trl(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let ours = logged_steps(&out_dir);
    assert_close(&losses(&ours), &losses(&theirs), "sft losses");
    // Saved as a peft adapter (no full model), with the tokenizer.
    for file in ["adapter_model.safetensors", "adapter_config.json", "tokenizer.json"] {
        assert!(out_dir.join(file).is_file(), "{file} missing");
    }
    assert!(!out_dir.join("model.safetensors").exists());
    let config = read_json(&out_dir.join("adapter_config.json"));
    assert_eq!(config["base_model_name_or_path"], "fixtures/models/tiny-qwen2");
    assert_eq!(config["peft_type"], "LORA");
    // Resuming from step 4 gives the unbroken run's last four steps exactly.
    let full = losses(&ours);
    std::fs::remove_dir_all(out_dir.join("checkpoint-8")).unwrap();
    args.extend(["--resume_from_checkpoint".into(), "true".into()]);
    let out = trl(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let resumed = losses(&logged_steps(&out_dir));
    assert_eq!(resumed, full, "resumed run's losses");
}
