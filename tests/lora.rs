//! End-to-end tests of LoRA (`--use_peft`, peft adapter folders, `trl merge`): per-step losses
//! against TRL + peft (reference/peft_reference.py), resuming an adapter run, and the
//! SFT -> DPO -> merge pipeline on the bundled data.

mod common;

use std::path::Path;

use common::{logged_steps, read_json, root, stderr, trl};
use serde_json::Value;

/// Relative tolerance on per-step losses against TRL (fp32, different kernels).
const LOSS_RTOL: f64 = 2e-3;

/// `trl <command>` arguments of the reference run in `expected/lora/<command>.json`.
fn reference_run_args(command: &str, expected: &Value, out_dir: &Path) -> Vec<String> {
    let mut args = vec![
        command.to_string(),
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

/// The logged steps (entries with a loss) of a reference run.
fn reference_steps(expected: &Value) -> Vec<Value> {
    expected["log_history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.get("loss").is_some())
        .cloned()
        .collect()
}

fn losses(steps: &[Value]) -> Vec<f64> {
    steps.iter().map(|e| e["loss"].as_f64().unwrap()).collect()
}

fn assert_close(ours: &[f64], theirs: &[f64], what: &str) {
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{what}: steps {ours:?} vs {theirs:?}"
    );
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
    let theirs = reference_steps(&expected);
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let mut args = reference_run_args("sft", &expected, &out_dir);
    args.extend(["--save_steps".into(), "4".into()]);
    let out = trl(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let ours = logged_steps(&out_dir);
    assert_close(&losses(&ours), &losses(&theirs), "sft losses");
    // Saved as a peft adapter (no full model), with the tokenizer.
    for file in [
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
    ] {
        assert!(out_dir.join(file).is_file(), "{file} missing");
    }
    assert!(!out_dir.join("model.safetensors").exists());
    let config = read_json(&out_dir.join("adapter_config.json"));
    assert_eq!(
        config["base_model_name_or_path"],
        "fixtures/models/tiny-qwen2"
    );
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

#[test]
fn dpo_of_a_peft_adapter_matches_trl_step_by_step() {
    let expected = read_json(&root().join("fixtures/expected/lora/dpo.json"));
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let out = trl(&reference_run_args("dpo", &expected, &out_dir));
    assert!(out.status.success(), "{}", stderr(&out));
    let ours = logged_steps(&out_dir);
    let theirs = reference_steps(&expected);
    assert_close(&losses(&ours), &losses(&theirs), "dpo losses");
    let margins = |steps: &[Value]| -> Vec<f64> {
        steps
            .iter()
            .map(|e| e["rewards/margins"].as_f64().unwrap())
            .collect()
    };
    for (a, b) in margins(&ours).iter().zip(margins(&theirs)) {
        assert!(
            (a - b).abs() <= 2e-3 * b.abs().max(1.0),
            "margins {a} vs {b}"
        );
    }
}

/// Max |ours - expected| over the unmasked positions of both cases of an expected-logits file.
fn worst_logit_error(model: &trl::core::model::CausalLm, expected: &Value) -> f32 {
    use trl::core::model::TokenBatch;
    let rows = |v: &Value| -> Vec<Vec<i64>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_i64().unwrap())
                    .collect()
            })
            .collect()
    };
    let mut worst = 0f32;
    for case in expected["cases"].as_object().unwrap().values() {
        let ids: Vec<Vec<u32>> = rows(&case["input_ids"])
            .into_iter()
            .map(|r| r.into_iter().map(|x| x as u32).collect())
            .collect();
        let mask = rows(&case["attention_mask"]);
        let batch = TokenBatch::with_position_ids(ids, mask.clone(), rows(&case["position_ids"]));
        let logits = model
            .forward(&batch)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let want = &case["logits"];
        let vocab = want[0][0].as_array().unwrap().len();
        let seq = mask[0].len();
        for (b, row) in mask.iter().enumerate() {
            for (s, _) in row.iter().enumerate().filter(|(_, m)| **m == 1) {
                for v in 0..vocab {
                    let w = want[b][s][v].as_f64().unwrap() as f32;
                    worst = worst.max((logits[(b * seq + s) * vocab + v] - w).abs());
                }
            }
        }
    }
    worst
}

#[test]
fn merge_writes_a_checkpoint_with_the_adapted_logits() {
    let dir = tempfile::tempdir().unwrap();
    for case in ["llama-qv", "mistral-mlp-lm-head"] {
        let out_dir = dir.path().join(case);
        let adapter = format!("fixtures/adapters/{case}");
        let out = trl(&[
            "merge",
            "--model_name_or_path",
            &adapter,
            "--output_dir",
            out_dir.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let expected = read_json(&root().join(format!("fixtures/expected/lora/{case}.json")));
        let device = burn::tensor::Device::default();
        let merged = trl::core::model::load_causal_lm(&out_dir, &device).unwrap();
        let err = worst_logit_error(&merged, &expected);
        assert!(err < 1e-4, "{case}: merged logits vs peft: {err}");
        assert!(out_dir.join("tokenizer.json").is_file());
    }
}

#[test]
fn merge_refuses_a_folder_without_an_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let out = trl(&[
        "merge",
        "--model_name_or_path",
        common::MODEL,
        "--output_dir",
        dir.path().join("out").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("adapter_config.json"),
        "{}",
        stderr(&out)
    );
}

/// `trl sft --use_peft` -> `trl dpo` on its adapter -> `trl merge`: each stage saves a peft
/// folder the next one loads; DPO's reference is the SFT policy (its first loss is ln 2);
/// the merged checkpoint gives the logits of base + DPO adapter.
#[test]
fn sft_then_dpo_then_merge_on_the_bundled_data() {
    let dir = tempfile::tempdir().unwrap();
    let (sft_dir, dpo_dir, merged_dir) = (
        dir.path().join("sft"),
        dir.path().join("dpo"),
        dir.path().join("merged"),
    );
    let common_args = |out: &Path| -> Vec<String> {
        [
            "--output_dir",
            out.to_str().unwrap(),
            "--max_steps",
            "3",
            "--logging_steps",
            "1",
            "--per_device_train_batch_size",
            "2",
            "--learning_rate",
            "1e-3",
            "--save_steps",
            "3",
        ]
        .map(String::from)
        .to_vec()
    };
    let mut sft: Vec<String> = [
        "sft",
        "--model_name_or_path",
        common::MODEL,
        "--dataset_name",
        "datasets/text.jsonl",
        "--use_peft",
        "--lora_r",
        "4",
        "--lora_dropout",
        "0",
        "--lora_target_modules",
        "all-linear",
    ]
    .map(String::from)
    .to_vec();
    sft.extend(common_args(&sft_dir));
    let out = trl(&sft);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = read_json(&sft_dir.join("adapter_config.json"));
    assert_eq!(config["r"], 4);
    assert_eq!(
        config["target_modules"].as_array().unwrap().len(),
        7 * 2,
        "all-linear, resolved"
    );
    // Only the adapters have optimizer state: A and B of 14 projections, two moments each.
    let optimizer = std::fs::read(sft_dir.join("checkpoint-3/optimizer.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(optimizer[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&optimizer[8..8 + header_len]).unwrap();
    let moments = header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.contains("exp_avg"))
        .count();
    assert_eq!(moments, 14 * 2 * 2);

    let mut dpo: Vec<String> = [
        "dpo",
        "--model_name_or_path",
        sft_dir.to_str().unwrap(),
        "--dataset_name",
        "datasets/preference.jsonl",
        "--use_peft",
    ]
    .map(String::from)
    .to_vec();
    dpo.extend(common_args(&dpo_dir));
    let out = trl(&dpo);
    assert!(out.status.success(), "{}", stderr(&out));
    let first = &logged_steps(&dpo_dir)[0];
    let loss = first["loss"].as_f64().unwrap();
    assert!(
        (loss - std::f64::consts::LN_2).abs() < 1e-5,
        "first DPO loss {loss}"
    );
    assert_eq!(
        read_json(&dpo_dir.join("adapter_config.json"))["base_model_name_or_path"],
        common::MODEL
    );

    let out = trl(&[
        "merge",
        "--model_name_or_path",
        dpo_dir.to_str().unwrap(),
        "--output_dir",
        merged_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    use trl::core::lora;
    use trl::core::model::{TokenBatch, load_causal_lm};
    let device = burn::tensor::Device::default();
    let merged = load_causal_lm(&merged_dir, &device).unwrap();
    let base = load_causal_lm(&root().join(common::MODEL), &device).unwrap();
    let config = lora::LoraConfig::read(&dpo_dir).unwrap();
    let adapted = lora::load_adapter(base, &config, &dpo_dir, &device).unwrap();
    let batch = TokenBatch::new(vec![vec![5, 6, 7, 8, 9, 10]], vec![vec![1; 6]]);
    let a = merged
        .forward(&batch)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let b = adapted
        .forward(&batch)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-4, "merged vs base + adapter: {worst}");
}

/// KTO, reward modeling and GRPO with `--use_peft` save peft folders; the reward adapter is
/// peft's SEQ_CLS with the `score` head saved in full, and merges into a reward model.
#[test]
fn kto_reward_and_grpo_train_adapters() {
    let dir = tempfile::tempdir().unwrap();
    let base = |command: &str, data: &str, out: &Path| -> Vec<String> {
        [
            command,
            "--model_name_or_path",
            common::MODEL,
            "--dataset_name",
            data,
            "--use_peft",
            "--output_dir",
            out.to_str().unwrap(),
            "--max_steps",
            "2",
            "--logging_steps",
            "1",
            "--per_device_train_batch_size",
            "4",
        ]
        .map(String::from)
        .to_vec()
    };
    let kto = dir.path().join("kto");
    let out = trl(&base("kto", "datasets/unpaired_preference.jsonl", &kto));
    assert!(out.status.success(), "{}", stderr(&out));
    // The reference is the base with the adapter off: equal to the policy at step 1.
    assert_eq!(logged_steps(&kto)[0]["kl"].as_f64().unwrap(), 0.0);
    let reward = dir.path().join("reward");
    let out = trl(&base("reward", "datasets/preference.jsonl", &reward));
    assert!(out.status.success(), "{}", stderr(&out));
    let config = read_json(&reward.join("adapter_config.json"));
    assert_eq!(config["task_type"], "SEQ_CLS");
    assert_eq!(config["modules_to_save"], serde_json::json!(["score"]));
    let merged = dir.path().join("reward-merged");
    let out = trl(&[
        "merge",
        "--model_name_or_path",
        reward.to_str().unwrap(),
        "--output_dir",
        merged.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let merged_config = read_json(&merged.join("config.json"));
    assert!(
        merged_config["architectures"][0]
            .as_str()
            .unwrap()
            .ends_with("ForSequenceClassification")
    );
    let grpo = dir.path().join("grpo");
    let mut args = base("grpo", "datasets/prompt_only.jsonl", &grpo);
    args.extend(
        [
            "--num_generations",
            "4",
            "--max_completion_length",
            "8",
            "--beta",
            "0.1",
            "--reward_funcs",
            "think_format_reward",
        ]
        .map(String::from),
    );
    let out = trl(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(grpo.join("adapter_model.safetensors").is_file());
}

/// A fresh adapter with TRL's default dropout (0.05): two runs with the same seed train the
/// same adapter (its init and the dropout masks come from the seeded device stream).
#[test]
fn a_seeded_use_peft_run_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let out_dir = dir.path().join(name);
        let out = trl(&[
            "sft",
            "--model_name_or_path",
            common::MODEL,
            "--dataset_name",
            "datasets/text.jsonl",
            "--use_peft",
            "--output_dir",
            out_dir.to_str().unwrap(),
            "--max_steps",
            "3",
            "--logging_steps",
            "1",
            "--per_device_train_batch_size",
            "2",
            "--learning_rate",
            "1e-2",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        (
            losses(&logged_steps(&out_dir)),
            std::fs::read(out_dir.join("adapter_model.safetensors")).unwrap(),
        )
    };
    let (first, second) = (run("a"), run("b"));
    assert_eq!(first.0, second.0);
    assert!(first.1 == second.1, "adapter files differ");
}

/// With dropout on, a resumed adapter run draws the unbroken run's masks (the device is
/// seeded per step) and logs the same losses.
#[test]
fn a_use_peft_run_with_dropout_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let mut args: Vec<String> = [
        "sft",
        "--model_name_or_path",
        common::MODEL,
        "--dataset_name",
        "datasets/text.jsonl",
        "--use_peft",
        "--lora_dropout",
        "0.3",
        "--output_dir",
        out_dir.to_str().unwrap(),
        "--max_steps",
        "4",
        "--save_steps",
        "2",
        "--logging_steps",
        "1",
        "--per_device_train_batch_size",
        "2",
        "--learning_rate",
        "1e-2",
    ]
    .map(String::from)
    .to_vec();
    let out = trl(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let full = losses(&logged_steps(&out_dir));
    std::fs::remove_dir_all(out_dir.join("checkpoint-4")).unwrap();
    args.extend(["--resume_from_checkpoint".into(), "true".into()]);
    let out = trl(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(losses(&logged_steps(&out_dir)), full);
}
