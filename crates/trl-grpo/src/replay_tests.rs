//! Replay against TRL 1.16: `reference/grpo_reference.py` ran TRL's `GRPOTrainer` and
//! `RLOOTrainer` on the tiny-llama fixture and recorded what they generated and logged. Here
//! our trainer trains on TRL's completions, in TRL's row order (a test-only
//! [`CompletionSource`]), with the same two reward functions written in Rust, and must log the
//! same loss, grad_norm and every metric step by step, and move the weights by as much.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::Device;
use serde_json::{Map, Value};
use tempfile::TempDir;
use trl_core::model::{CausalLm, load_causal_lm, load_frozen_causal_lm};
use trl_core::parity::{
    assert_log_history_matches, assert_run_updates_match, read_case_rows, read_fixture, repo_root,
};
use trl_core::tokenizer::Tokenizer;
use trl_core::train::{RunLogger, TrainingArguments, take_known_keys, train};

use crate::config::GrpoConfig;
use crate::data::prepare_prompts;
use crate::rewards::{RewardFunction, RewardInput};
use crate::rloo_config::RlooConfig;
use crate::rollout::CompletionSource;
use crate::trainer::{GrpoMethod, GrpoParts, Variant};

const FIXTURE: &str = "fixtures/expected/grpo/replay.json";
const LOSS_RTOL: f64 = 2e-3;
const METRIC_RTOL: f64 = 2e-3;
/// What the reference's `low_id_share` counts.
const LOW_ID_LIMIT: u32 = 192;

/// The reference's reward functions, by TRL's `__name__`.
struct RecordedReward {
    name: String,
    max_completion_length: usize,
}

impl RewardFunction for RecordedReward {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&mut self, batch: &[RewardInput]) -> crate::rewards::Result<Vec<Option<f64>>> {
        Ok(batch
            .iter()
            .map(|input| {
                let ids = &input.completion_ids;
                Some(match self.name.as_str() {
                    "low_id_share" if ids.is_empty() => 0.0,
                    "low_id_share" => {
                        ids.iter().filter(|&&t| t < LOW_ID_LIMIT).count() as f64 / ids.len() as f64
                    }
                    "length_ratio" => ids.len() as f64 / self.max_completion_length as f64,
                    other => panic!("the replay has no reward function {other}"),
                })
            })
            .collect())
    }
}

/// TRL's completions and row order, generation batch by generation batch.
struct Replay {
    generations: Vec<Value>,
    /// Per generation batch: its rows in the order TRL trained on them.
    orders: Vec<Vec<usize>>,
}

impl Replay {
    fn new(case: &Value) -> Self {
        let generations = case["generations"].as_array().unwrap().clone();
        let mut orders = vec![Vec::new(); generations.len()];
        for step in case["steps"].as_array().unwrap() {
            let g = step["generation"].as_u64().unwrap() as usize;
            let rows: Vec<usize> = serde_json::from_value(step["rows"].clone()).unwrap();
            if !rows.iter().all(|r| orders[g].contains(r)) {
                orders[g].extend(rows);
            }
        }
        Replay {
            generations,
            orders,
        }
    }
}

impl CompletionSource for Replay {
    fn complete(
        &mut self,
        _model: &CausalLm,
        prompts: &[Vec<u32>],
        generation: u64,
        _first_row: u64,
    ) -> trl_core::Result<Vec<Vec<u32>>> {
        let recorded = &self.generations[generation as usize];
        let want: Vec<Vec<u32>> = serde_json::from_value(recorded["prompt_ids"].clone()).unwrap();
        assert_eq!(
            prompts,
            want.as_slice(),
            "generation {generation}: prompts differ from TRL's"
        );
        Ok(serde_json::from_value(recorded["completion_ids"].clone()).unwrap())
    }

    fn order(&mut self, rows: usize, generation: u64, _seed: u64) -> Vec<usize> {
        let mut order = self.orders[generation as usize].clone();
        // Rows of slices TRL did not reach before max_steps follow in their own order.
        order.extend((0..rows).filter(|r| !order.contains(r)).collect::<Vec<_>>());
        order
    }
}

/// The case's keys as TrainingArguments and the method's config.
fn configs(case: &Value, out: &TempDir) -> (TrainingArguments, BTreeMap<String, Value>) {
    let mut map: BTreeMap<String, Value> = case["args"]
        .as_object()
        .unwrap()
        .clone()
        .into_iter()
        .filter(|(k, _)| !["disable_tqdm", "dataloader_num_workers", "fp16"].contains(&k.as_str()))
        .collect();
    map.insert(
        "output_dir".into(),
        Value::from(out.path().to_string_lossy().to_string()),
    );
    let args: TrainingArguments = take_known_keys(&mut map, "replay").unwrap();
    (args, map)
}

/// The case's training arguments, its GRPO config and the variant (`RLOOTrainer` cases split
/// an RLOO config into both).
pub(crate) fn case_configs(
    case: &Value,
    out: &TempDir,
) -> (TrainingArguments, GrpoConfig, Variant) {
    let (args, rest) = configs(case, out);
    let rest = Value::Object(rest.into_iter().collect::<Map<_, _>>());
    if case["trainer"] == "RLOOTrainer" {
        let rloo: RlooConfig = serde_json::from_value(rest).unwrap();
        let (config, options) = rloo.split().unwrap();
        (args, config, Variant::Rloo(options))
    } else {
        let config: GrpoConfig = serde_json::from_value(rest).unwrap();
        (args, config, Variant::Grpo)
    }
}

/// One [`RecordedReward`] per reward function the case names.
fn recorded_rewards(case: &Value, max_completion_length: usize) -> Vec<Box<dyn RewardFunction>> {
    case["reward_funcs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            Box::new(RecordedReward {
                name: n.as_str().unwrap().to_string(),
                max_completion_length,
            }) as Box<dyn RewardFunction>
        })
        .collect()
}

/// What a replay loads for a recorded case: the policy on autodiff CPU, and the trainer's
/// parts with `source` supplying the completions. Shared by the training and evaluation replays.
pub(crate) struct CaseSetup {
    pub model_dir: PathBuf,
    pub device: Device,
    pub model: CausalLm,
    pub parts: GrpoParts,
}

/// Loads the fixture's model (and a frozen reference when `config.beta != 0`) and builds the
/// [`GrpoParts`] of `case`.
pub(crate) fn case_setup(
    fixture: &Value,
    case: &Value,
    config: &GrpoConfig,
    variant: Variant,
    source: Box<dyn CompletionSource>,
) -> CaseSetup {
    let model_dir = repo_root().join(fixture["model"].as_str().unwrap());
    let tokenizer = Tokenizer::from_dir(&model_dir).unwrap();
    let device = Device::default().autodiff();
    let model = load_causal_lm(&model_dir, &device).unwrap();
    let reference =
        (config.beta != 0.0).then(|| load_frozen_causal_lm(&model_dir, &device).unwrap());
    let parts = GrpoParts {
        tokenizer,
        pad_token_id: case["pad_token_id"].as_u64().unwrap() as u32,
        eos_token_ids: serde_json::from_value(case["eos_token_ids"].clone()).unwrap(),
        reference,
        rewards: recorded_rewards(case, config.max_completion_length),
        source,
        variant,
    };
    CaseSetup {
        model_dir,
        device,
        model,
        parts,
    }
}

fn replay(name: &str) {
    let fixture = read_fixture(FIXTURE);
    let case = &fixture["cases"][name];
    assert!(case.is_object(), "{FIXTURE}: no case {name}");
    let out = tempfile::tempdir().unwrap();
    let (args, config, variant) = case_configs(case, &out);
    let source = Box::new(Replay::new(case));
    let CaseSetup {
        model_dir,
        device,
        model,
        parts,
    } = case_setup(&fixture, case, &config, variant, source);
    let kwargs = config.chat_template_kwargs.clone().unwrap_or_default();
    let examples = prepare_prompts(&read_case_rows(case), &parts.tokenizer, &kwargs).unwrap();
    let mut method = GrpoMethod::new(config, &args, parts).unwrap();
    let outcome = train(
        &mut method,
        model,
        &examples,
        &args,
        &device,
        &mut RunLogger::silent(),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let want = without_nulls(&case["log_history"]);
    assert_log_history_matches(
        name,
        &outcome.state.log_history,
        &want,
        LOSS_RTOL,
        METRIC_RTOL,
        &METRIC_KEYS,
        &["num_tokens", "epoch", "learning_rate"],
    );
    assert_run_updates_match(
        name,
        &model_dir,
        out.path(),
        &case["param_update_norms"],
        1e-2,
    );
}

/// Every metric compared within `METRIC_RTOL`.
const METRIC_KEYS: [&str; 26] = [
    "grad_norm",
    "reward",
    "reward_std",
    "rewards/low_id_share/mean",
    "rewards/low_id_share/std",
    "rewards/length_ratio/mean",
    "rewards/length_ratio/std",
    "frac_reward_zero_std",
    "completions/mean_length",
    "completions/min_length",
    "completions/max_length",
    "completions/clipped_ratio",
    "completions/mean_terminated_length",
    "completions/min_terminated_length",
    "completions/max_terminated_length",
    "entropy",
    "kl",
    "clip_ratio/low_mean",
    "clip_ratio/low_min",
    "clip_ratio/high_mean",
    "clip_ratio/high_max",
    "clip_ratio/region_mean",
    "cispo_clip_ratio",
    "policy_loss",
    "entropy_coef",
    "vespo/phi_seq_mean",
];

/// TRL's log entries without the values it could not record (wall-clock times are null).
fn without_nulls(history: &Value) -> Value {
    Value::Array(
        history
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                Value::Object(
                    entry
                        .as_object()
                        .unwrap()
                        .iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                )
            })
            .collect(),
    )
}

macro_rules! replay_cases {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*
    };
}

replay_cases!(
    dapo,
    grpo_beta,
    dr_grpo,
    bnpo,
    cispo,
    sapo,
    gspo,
    num_iterations,
    scale_batch,
    scale_none,
    mask_truncated,
    weighted_rewards,
    conversational,
    temperature,
    rloo,
    rloo_normalized,
);
