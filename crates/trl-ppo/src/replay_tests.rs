//! Replays against TRL 1.12's `PPOTrainer.train()` on the fixture models
//! (fixtures/expected/ppo/replay.json, from reference/ppo_reference.py): fed the responses TRL
//! sampled and the mini-batch permutations it drew, our method logs the same metrics step by
//! step. Case `one_micro_batch` has one micro-batch per rollout batch; `mini_batches` has two
//! mini-batches of two micro-batches each under gradient_accumulation_steps 4, where
//! accelerate's accumulation spans mini-batches and TRL's statistics keep unfilled slots.

use std::path::Path;

use burn::tensor::Device;
use serde_json::{Map, Value};
use trl_core::model::{
    TokenBatch, load_causal_lm, load_frozen_causal_lm, load_sequence_classifier,
};
use trl_core::parity::repo_root;
use trl_core::tokenizer::Tokenizer;
use trl_core::train::sampler::torch_randperm_nth;
use trl_core::train::schedule::{LrSchedule, SchedulerType};
use trl_core::train::{RunLogger, TrainingArguments, train};

use crate::config::{PpoConfig, StopToken};
use crate::data::{PromptExample, prepare_prompts};
use crate::gae::RewardSettings;
use crate::order::{RecordedBatch, RecordedOrders};
use crate::rollout::{Recorded, RolloutSettings};
use crate::{PolicyAndValue, PpoMethod, PpoParts};

/// Losses after AdamW updates: float32 rounding in two frameworks, amplified by the updates.
const LOSS_RTOL: f64 = 2e-3;
/// Metrics near zero (KL of identical policies, ~1e-6 policy losses) are compared absolutely.
const ATOL: f64 = 1e-4;

/// The metrics compared, each with its relative tolerance.
const COMPARED: [(&str, f64); 16] = [
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
];

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn rollouts(case: &Value) -> &Vec<Value> {
    case["rollouts"].as_array().unwrap()
}

fn recorded(case: &Value, pad: u32) -> Recorded {
    let batches = rollouts(case)
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

fn orders(case: &Value) -> RecordedOrders {
    let batches = rollouts(case)
        .iter()
        .map(|rollout| {
            let queries = rollout["queries"]
                .as_array()
                .unwrap()
                .iter()
                .map(ids)
                .collect();
            let perms = rollout["permutations"].as_array().unwrap();
            let perms = perms
                .iter()
                .map(|p| ids(p).into_iter().map(|i| i as usize).collect())
                .collect();
            RecordedBatch {
                queries,
                permutations: perms,
            }
        })
        .collect();
    RecordedOrders { batches }
}

fn config(c: &Value) -> PpoConfig {
    let int = |k: &str| c[k].as_u64().unwrap() as usize;
    PpoConfig {
        num_ppo_epochs: int("num_ppo_epochs"),
        num_mini_batches: int("num_mini_batches"),
        total_episodes: Some(int("total_episodes")),
        response_length: int("response_length"),
        stop_token: Some(StopToken::Eos),
        missing_eos_penalty: c["missing_eos_penalty"].as_f64(),
        kl_coef: c["kl_coef"].as_f64().unwrap(),
        kl_estimator: serde_json::from_value(c["kl_estimator"].clone()).unwrap(),
        gamma: c["gamma"].as_f64().unwrap(),
        lam: c["lam"].as_f64().unwrap(),
        temperature: c["temperature"].as_f64().unwrap(),
        num_sample_generations: 0,
        ..PpoConfig::default()
    }
}

/// Places the prompts so that our sampler's first pass draws TRL's rollout batches: our
/// batch `k` is `examples[perm[k * size..]]` with `perm` the sampler's epoch-0 order.
fn arrange(
    examples: Vec<PromptExample>,
    case: &Value,
    size: usize,
    seed: u64,
) -> Vec<PromptExample> {
    let n = examples.len();
    if n == size {
        return examples; // every batch holds every prompt
    }
    let perm = torch_randperm_nth(n, seed, 0);
    let mut slots: Vec<Option<PromptExample>> = vec![None; n];
    let mut rest = examples;
    for (k, rollout) in rollouts(case).iter().enumerate() {
        for (i, query) in rollout["queries"]
            .as_array()
            .unwrap()
            .iter()
            .map(ids)
            .enumerate()
        {
            let at = rest
                .iter()
                .position(|e| e.prompt_ids == query)
                .expect("TRL's query is a prompt");
            slots[perm[k * size + i]] = Some(rest.remove(at));
        }
    }
    slots
        .into_iter()
        .map(|slot| slot.unwrap_or_else(|| rest.remove(0)))
        .collect()
}

fn rollout_settings(ppo: &PpoConfig, tokenizer: &Tokenizer) -> RolloutSettings {
    RolloutSettings {
        pad_token_id: tokenizer.pad_token_id().unwrap(),
        eos_token_id: tokenizer.eos_token_id(),
        stop_token_id: tokenizer.eos_token_id(),
        temperature: ppo.temperature,
        missing_eos_penalty: ppo.missing_eos_penalty,
        forward_batch_size: 64,
        rewards: RewardSettings {
            kl_coef: ppo.kl_coef,
            kl_estimator: ppo.kl_estimator,
            gamma: ppo.gamma,
            lam: ppo.lam,
            whiten_rewards: ppo.whiten_rewards,
        },
    }
}

/// Runs our method on `case`'s recorded rollouts; returns its log history and the method.
fn replay(case: &Value, out: &Path) -> (Vec<Value>, PpoMethod) {
    let root = repo_root();
    let (model_dir, rm_dir) = (
        root.join("fixtures/models/tiny-qwen2"),
        root.join("fixtures/models/tiny-qwen2-rm"),
    );
    let tokenizer = Tokenizer::from_dir(&model_dir).unwrap();
    let c = &case["config"];
    let rows: Vec<Map<String, Value>> = case["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Map::from_iter([("prompt".to_string(), p.clone())]))
        .collect();
    let ppo = config(c);
    let (batch, accumulation) = (
        c["per_device_train_batch_size"].as_u64().unwrap() as usize,
        c["gradient_accumulation_steps"].as_u64().unwrap() as usize,
    );
    let seed = c["seed"].as_u64().unwrap();
    let sizes = ppo
        .batch_sizes(batch, accumulation, 1.0, rows.len(), 1)
        .unwrap();
    let examples = arrange(
        prepare_prompts(&rows, &tokenizer).unwrap(),
        case,
        sizes.local_batch_size,
        seed,
    );
    let args = TrainingArguments {
        output_dir: out.to_string_lossy().into_owned(),
        per_device_train_batch_size: batch,
        gradient_accumulation_steps: accumulation,
        learning_rate: c["learning_rate"].as_f64().unwrap(),
        max_grad_norm: 0.0,
        logging_steps: 1.0,
        seed,
        max_steps: sizes.num_total_batches as i64,
        ..TrainingArguments::default()
    };
    let device = Device::default().autodiff();
    let pad = tokenizer.pad_token_id().unwrap();
    let parts = PpoParts {
        reference: load_frozen_causal_lm(&model_dir, &device).unwrap(),
        reward: load_sequence_classifier(&rm_dir, 1, &device).unwrap(),
        source: Box::new(recorded(case, pad)),
        rollout: rollout_settings(&ppo, &tokenizer),
        schedule: LrSchedule {
            kind: SchedulerType::Linear,
            base_lr: args.learning_rate,
            warmup_steps: 0,
            total_steps: sizes.num_total_batches as u64,
            min_lr_rate: 0.0,
        },
        adapter: None,
        tokenizer,
    };
    let mut method = PpoMethod::new(ppo, sizes, &args, parts)
        .unwrap()
        .with_recorded_orders(orders(case));
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
    (
        outcome
            .state
            .log_history
            .into_iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect(),
        method,
    )
}

/// Training policy and value (the value model started from the reward model's weights) left
/// the frozen reference and reward model exactly as loaded, while the trained pair moved.
fn assert_frozen_models_unchanged(method: &PpoMethod, out: &Path) {
    let root = repo_root();
    let device = Device::default();
    let tokens = TokenBatch::new(vec![vec![5, 9, 17, 33, 2]], vec![vec![1; 5]]);
    let fresh_policy = load_causal_lm(&root.join("fixtures/models/tiny-qwen2"), &device).unwrap();
    let fresh_rm =
        load_sequence_classifier(&root.join("fixtures/models/tiny-qwen2-rm"), 1, &device).unwrap();
    let host =
        |t: burn::tensor::Tensor<3>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
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

fn assert_matches(name: &str, ours: &[Value], theirs: &[Value]) {
    assert_eq!(
        ours.len(),
        theirs.len() + 1,
        "{name}: steps (+ the summary entry)"
    );
    let mut failures = Vec::new();
    for (step, (ours, theirs)) in ours.iter().zip(theirs).enumerate() {
        for (metric, rtol) in COMPARED {
            let (Some(a), Some(b)) = (ours[metric].as_f64(), theirs[metric].as_f64()) else {
                failures.push(format!(
                    "step {} {metric}: ours {} TRL {}",
                    step + 1,
                    ours[metric],
                    theirs[metric]
                ));
                continue;
            };
            if (a - b).abs() > ATOL + rtol * b.abs() {
                failures.push(format!("step {} {metric}: ours {a} TRL {b}", step + 1));
            }
        }
    }
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
}

#[test]
fn metrics_match_trl_ppo_trainer_on_its_recorded_rollouts() {
    let text =
        std::fs::read_to_string(repo_root().join("fixtures/expected/ppo/replay.json")).unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    for (name, case) in fixture["cases"].as_object().unwrap() {
        let out = tempfile::tempdir().unwrap();
        let (ours, method) = replay(case, out.path());
        assert_matches(name, &ours, case["log_history"].as_array().unwrap());
        assert_frozen_models_unchanged(&method, out.path());
    }
}
