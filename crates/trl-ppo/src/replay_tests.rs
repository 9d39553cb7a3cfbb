//! Replay against TRL 1.12's `PPOTrainer.train()` on the fixture models
//! (fixtures/expected/ppo/replay.json, from reference/ppo_reference.py): fed the responses TRL
//! sampled, our method logs the same metrics step by step.

use burn::tensor::Device;
use serde_json::{Map, Value};
use trl_core::model::{
    TokenBatch, load_causal_lm, load_frozen_causal_lm, load_sequence_classifier,
};
use trl_core::parity::repo_root;
use trl_core::tokenizer::Tokenizer;
use trl_core::train::schedule::{LrSchedule, SchedulerType};
use trl_core::train::{RunLogger, TrainingArguments, train};

use crate::config::{KlEstimator, PpoConfig, StopToken};
use crate::data::prepare_prompts;
use crate::gae::RewardSettings;
use crate::rollout::{Recorded, RolloutSettings};
use crate::{PolicyAndValue, PpoMethod, PpoParts};

/// Losses after AdamW updates: float32 rounding in two frameworks, amplified by the updates.
const LOSS_RTOL: f64 = 2e-3;
/// Metrics near zero (KL of identical policies, ~1e-6 policy losses) are compared absolutely.
const ATOL: f64 = 1e-4;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn recorded(case: &Value, pad: u32) -> Recorded {
    let batches = case["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rollout| {
            let queries = rollout["queries"].as_array().unwrap().iter().map(ids);
            let responses = rollout["responses"].as_array().unwrap().iter().map(|r| {
                let mut r = ids(r);
                // generate pads finished rows on the right; our source returns them unpadded
                while r.len() > 1 && r.last() == Some(&pad) {
                    r.pop();
                }
                r
            });
            queries.zip(responses).collect()
        })
        .collect();
    Recorded { batches }
}

fn config(c: &Value) -> PpoConfig {
    PpoConfig {
        num_ppo_epochs: c["num_ppo_epochs"].as_u64().unwrap() as usize,
        num_mini_batches: c["num_mini_batches"].as_u64().unwrap() as usize,
        total_episodes: Some(c["total_episodes"].as_u64().unwrap() as usize),
        response_length: c["response_length"].as_u64().unwrap() as usize,
        stop_token: Some(StopToken::Eos),
        missing_eos_penalty: c["missing_eos_penalty"].as_f64(),
        kl_coef: c["kl_coef"].as_f64().unwrap(),
        temperature: c["temperature"].as_f64().unwrap(),
        num_sample_generations: 0,
        ..PpoConfig::default()
    }
}

/// Training policy and value (the value model started from the reward model's weights) left
/// the frozen reference and reward model exactly as loaded, while the trained pair moved.
fn assert_frozen_models_unchanged(
    method: &PpoMethod,
    model_dir: &std::path::Path,
    rm_dir: &std::path::Path,
    out: &std::path::Path,
) {
    let device = Device::default();
    let tokens = TokenBatch::new(vec![vec![5, 9, 17, 33, 2]], vec![vec![1; 5]]);
    let fresh_policy = load_causal_lm(model_dir, &device).unwrap();
    let fresh_rm = load_sequence_classifier(rm_dir, 1, &device).unwrap();
    let host = |t: burn::tensor::Tensor<3>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let (reference, reward) = method.frozen_models();
    assert_eq!(
        host(reference.forward(&tokens)),
        host(fresh_policy.forward(&tokens)),
        "reference changed"
    );
    assert_eq!(
        host(reward.forward_tokens(&tokens)),
        host(fresh_rm.forward_tokens(&tokens)),
        "reward model changed"
    );
    let trained = PolicyAndValue::load(out, &device).unwrap();
    assert_ne!(
        host(trained.policy.forward(&tokens)),
        host(fresh_policy.forward(&tokens)),
        "policy did not train"
    );
    assert_ne!(
        host(trained.value.forward_tokens(&tokens)),
        host(fresh_rm.forward_tokens(&tokens)),
        "value model did not train"
    );
}

fn close(what: &str, ours: f64, theirs: f64, rtol: f64) {
    assert!(
        (ours - theirs).abs() <= ATOL + rtol * theirs.abs(),
        "{what}: ours {ours} vs TRL {theirs}"
    );
}

#[test]
fn metrics_match_trl_ppo_trainer_on_its_recorded_rollouts() {
    let root = repo_root();
    let case: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("fixtures/expected/ppo/replay.json")).unwrap(),
    )
    .unwrap();
    let (model_dir, rm_dir) = (
        root.join("fixtures/models/tiny-qwen2"),
        root.join("fixtures/models/tiny-qwen2-rm"),
    );
    let tokenizer = Tokenizer::from_dir(&model_dir).unwrap();
    let rows: Vec<Map<String, Value>> = case["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Map::from_iter([("prompt".to_string(), p.clone())]))
        .collect();
    let examples = prepare_prompts(&rows, &tokenizer).unwrap();
    let ppo = config(&case["config"]);
    let out = tempfile::tempdir().unwrap();
    let args = TrainingArguments {
        output_dir: out.path().to_string_lossy().into_owned(),
        per_device_train_batch_size: 4,
        gradient_accumulation_steps: 1,
        learning_rate: case["config"]["learning_rate"].as_f64().unwrap(),
        max_grad_norm: 0.0,
        logging_steps: 1.0,
        seed: 42,
        ..TrainingArguments::default()
    };
    let sizes = ppo.batch_sizes(4, 1, 1.0, examples.len()).unwrap();
    let args = TrainingArguments {
        max_steps: sizes.num_total_batches as i64,
        ..args
    };
    let device = Device::default().autodiff();
    let pad = tokenizer.pad_token_id().unwrap();
    let parts = PpoParts {
        reference: load_frozen_causal_lm(&model_dir, &device).unwrap(),
        reward: load_sequence_classifier(&rm_dir, 1, &device).unwrap(),
        source: Box::new(recorded(&case, pad)),
        rollout: RolloutSettings {
            pad_token_id: pad,
            eos_token_id: tokenizer.eos_token_id(),
            stop_token_id: tokenizer.eos_token_id(),
            temperature: ppo.temperature,
            missing_eos_penalty: ppo.missing_eos_penalty,
            forward_batch_size: 64,
            rewards: RewardSettings {
                kl_coef: ppo.kl_coef,
                kl_estimator: KlEstimator::K1,
                gamma: 1.0,
                lam: 0.95,
                whiten_rewards: false,
            },
        },
        schedule: LrSchedule {
            kind: SchedulerType::Linear,
            base_lr: args.learning_rate,
            warmup_steps: 0,
            total_steps: sizes.num_total_batches as u64,
            min_lr_rate: 0.0,
        },
        tokenizer,
    };
    let mut method = PpoMethod::new(ppo, sizes, &args, parts).unwrap();
    let model = PolicyAndValue {
        policy: load_causal_lm(&model_dir, &device).unwrap(),
        value: load_sequence_classifier(&rm_dir, 1, &device).unwrap(),
    };
    let outcome = train(
        &mut method,
        model,
        &examples,
        &args,
        &device,
        &mut RunLogger::silent(),
    )
    .unwrap();
    assert_frozen_models_unchanged(&method, &model_dir, &rm_dir, out.path());
    let want = case["log_history"].as_array().unwrap();
    assert_eq!(want.len(), 3);
    let mut checks = Vec::new();
    for (step, theirs) in want.iter().enumerate() {
        let ours = &outcome.state.log_history[step];
        for (name, rtol) in [
            ("loss/policy_avg", LOSS_RTOL),
            ("loss/value_avg", LOSS_RTOL),
            ("objective/kl", LOSS_RTOL),
            ("objective/scores", 1e-5),
            ("objective/rlhf_reward", 1e-5),
            ("objective/non_score_reward", LOSS_RTOL),
            ("objective/entropy", LOSS_RTOL),
            ("policy/approxkl_avg", LOSS_RTOL),
            ("policy/clipfrac_avg", LOSS_RTOL),
            ("policy/entropy_avg", LOSS_RTOL),
            ("val/clipfrac_avg", LOSS_RTOL),
            ("val/ratio", LOSS_RTOL),
            ("val/ratio_var", LOSS_RTOL),
            ("val/num_eos_tokens", 0.0),
            ("lr", 1e-9),
            ("episode", 0.0),
        ] {
            let (a, b) = (ours[name].as_f64(), theirs[name].as_f64());
            let (a, b) = (
                a.unwrap_or_else(|| panic!("step {}: we logged no {name}", step + 1)),
                b.unwrap(),
            );
            eprintln!("step {} {name}: ours {a} TRL {b}", step + 1);
            checks.push((format!("step {} {name}", step + 1), a, b, rtol));
        }
    }
    for (what, ours, theirs, rtol) in checks {
        close(&what, ours, theirs, rtol);
    }
}
