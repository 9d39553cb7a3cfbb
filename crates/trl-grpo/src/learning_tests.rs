//! GRPO learns: on a tiny task whose reward is the share of completion tokens from the lower
//! half of the vocabulary, the mean reward rises clearly within a bounded number of CPU
//! steps. The reward is a Rust [`RewardFunction`], as a library user would write one.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde_json::{Map, Value};
use trl_core::generate::GenerationOptions;
use trl_core::model::load_causal_lm;
use trl_core::tokenizer::Tokenizer;
use trl_core::train::{RunLogger, TrainingArguments, train};

use crate::config::GrpoConfig;
use crate::data::prepare_prompts;
use crate::rewards::{RewardFunction, RewardInput};
use crate::rollout::PolicySampler;
use crate::trainer::{GrpoMethod, GrpoParts, Variant};

/// Share of completion tokens with an id below `limit`.
struct LowTokenShare {
    limit: u32,
}

impl RewardFunction for LowTokenShare {
    fn name(&self) -> &str {
        "low_token_share"
    }

    fn score(&mut self, batch: &[RewardInput]) -> crate::rewards::Result<Vec<Option<f64>>> {
        Ok(batch
            .iter()
            .map(|input| {
                let ids = &input.completion_ids;
                let low = ids.iter().filter(|&&t| t < self.limit).count();
                Some(low as f64 / ids.len().max(1) as f64)
            })
            .collect())
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn prompt_rows() -> Vec<Map<String, Value>> {
    let text = std::fs::read_to_string(repo().join("datasets/prompt_only.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

#[test]
fn mean_reward_rises_on_a_token_share_task() {
    let model_dir = repo().join("fixtures/models/tiny-llama");
    let tokenizer = Tokenizer::from_dir(&model_dir).unwrap();
    let examples = prepare_prompts(&prompt_rows()[..16], &tokenizer, &Map::new()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let args = TrainingArguments {
        output_dir: out.path().to_string_lossy().into_owned(),
        per_device_train_batch_size: 8,
        learning_rate: 3e-3,
        max_steps: 30,
        logging_steps: 1.0,
        save_strategy: serde_json::from_value(Value::from("no")).unwrap(),
        ..TrainingArguments::default()
    };
    let config = GrpoConfig {
        num_generations: 4,
        max_completion_length: 8,
        reward_funcs: None,
        ..GrpoConfig::default()
    };
    let device = Device::default().autodiff();
    let model = load_causal_lm(&model_dir, &device).unwrap();
    let eos = tokenizer.eos_token_id().unwrap();
    let pad = tokenizer.pad_token_id().unwrap_or(eos);
    let parts = GrpoParts {
        tokenizer,
        pad_token_id: pad,
        eos_token_ids: vec![eos],
        reference: None,
        rewards: vec![Box::new(LowTokenShare { limit: 192 })],
        source: Box::new(PolicySampler {
            options: GenerationOptions {
                max_new_tokens: 8,
                top_k: 0,
                eos_token_ids: vec![eos],
                pad_token_id: pad,
                ..GenerationOptions::default()
            },
        }),
        variant: Variant::Grpo,
    };
    let mut method = GrpoMethod::new(config, &args, parts).unwrap();
    let outcome = train(
        &mut method,
        model,
        &examples,
        &args,
        &device,
        &mut RunLogger::silent(),
    )
    .unwrap();
    let rewards: Vec<f64> = outcome
        .state
        .log_history
        .iter()
        .filter_map(|e| e.get("reward").and_then(Value::as_f64))
        .collect();
    assert_eq!(rewards.len(), 30, "one logged reward per step");
    let (first, last) = (mean(&rewards[..5]), mean(&rewards[25..]));
    assert!(
        last > first + 0.15,
        "mean reward of the first five steps {first:.3}, of the last five {last:.3}"
    );
}
