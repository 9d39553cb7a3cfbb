//! End-to-end test of `trl ppo --use_peft` (TRL 1.12's PPOTrainer with `peft_config`): the
//! policy trains a LoRA adapter saved as a peft folder that `trl merge` accepts, the base
//! weights stay as they were (the merged model is the base plus the adapter's product, and
//! nothing else changed), and the value model trains in full beside it.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{MODEL, read_json, root, text, trl};
use safetensors::SafeTensors;

const RM: &str = "fixtures/models/tiny-qwen2-rm";

/// Every f32 tensor of a safetensors file, by name.
fn tensors(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (view.shape().to_vec(), values))
        })
        .collect()
}

#[test]
fn ppo_with_use_peft_saves_an_adapter_merge_accepts_and_keeps_the_base() {
    let dir = tempfile::tempdir().unwrap();
    let (out, merged) = (dir.path().join("ppo"), dir.path().join("merged"));
    let run = trl(&[
        "ppo",
        "--model_name_or_path",
        MODEL,
        "--reward_model_path",
        RM,
        "--dataset_name",
        "datasets/prompt_only.jsonl",
        "--output_dir",
        out.to_str().unwrap(),
        "--per_device_train_batch_size",
        "2",
        "--gradient_accumulation_steps",
        "2",
        "--response_length",
        "6",
        "--total_episodes",
        "8",
        "--learning_rate",
        "1e-2",
        "--use_peft",
        "true",
        "--lora_r",
        "4",
        "--report_to",
        "none",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(
        !out.join("model.safetensors").exists(),
        "the policy is saved as its adapter only"
    );
    let config = read_json(&out.join("adapter_config.json"));
    assert_eq!(config["r"], 4);
    assert_eq!(config["lora_dropout"], 0.05, "the user's setting is saved");
    let adapter = tensors(&out.join("adapter_model.safetensors"));
    assert!(
        adapter
            .keys()
            .all(|k| k.starts_with("base_model.model.") && k.contains(".lora_"))
    );
    let moved = adapter
        .iter()
        .filter(|(k, _)| k.contains("lora_B"))
        .any(|(_, (_, v))| v.iter().any(|x| *x != 0.0));
    assert!(moved, "lora_B starts at zero; training must move it");
    // The value model trained in full from the reward model.
    let value = tensors(&out.join("value_model/model.safetensors"));
    let rm = tensors(&root().join(RM).join("model.safetensors"));
    assert_ne!(value["score.weight"].1, rm["score.weight"].1);

    let run = trl(&[
        "merge",
        "--model_name_or_path",
        out.to_str().unwrap(),
        "--output_dir",
        merged.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let base = tensors(&root().join(MODEL).join("model.safetensors"));
    let merged = tensors(&merged.join("model.safetensors"));
    assert_eq!(
        base.keys().collect::<Vec<_>>(),
        merged.keys().collect::<Vec<_>>()
    );
    let scaling = config["lora_alpha"].as_f64().unwrap() / 4.0;
    for (name, (shape, base_values)) in &base {
        let stem = name.trim_end_matches(".weight");
        let a_name = format!("base_model.model.{stem}.lora_A.weight");
        let merged_values = &merged[name].1;
        let Some((_, a)) = adapter.get(&a_name) else {
            assert_eq!(
                merged_values, base_values,
                "{name}: not adapted, must be the base's"
            );
            continue;
        };
        // merged = base + scaling * B [out, r] @ A [r, in]: the base under the adapter is intact.
        let b = &adapter[&format!("base_model.model.{stem}.lora_B.weight")].1;
        let (rows, cols) = (shape[0], shape[1]);
        for i in 0..rows {
            for j in 0..cols {
                let delta: f64 = (0..4)
                    .map(|k| f64::from(b[i * 4 + k]) * f64::from(a[k * cols + j]))
                    .sum();
                let want = f64::from(base_values[i * cols + j]) + scaling * delta;
                let got = f64::from(merged_values[i * cols + j]);
                assert!(
                    (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "{name}[{i},{j}]: {got} vs {want}"
                );
            }
        }
    }
}
