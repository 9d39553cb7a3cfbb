//! Evaluation during SFT training against TRL 1.16 (reference/eval_reference.py, case `sft`):
//! every evaluation (on start, every 3 steps, at the last step) logs TRL's `eval_*` values,
//! and evaluating does not change the training trajectory by one bit.

use burn::tensor::Device;
use serde_json::Value;
use trl_core::model::load_causal_lm;
use trl_core::parity::{
    assert_eval_history_matches, assert_log_history_matches, load_case, read_case_row_range,
    repo_root,
};
use trl_core::tokenizer::Tokenizer;
use trl_core::train::state::LogEntry;
use trl_core::train::{RunLogger, TrainingArguments, take_known_keys, train_with_eval};

use crate::data::prepare_examples;
use crate::{SftConfig, SftMethod};

const LOSS_RTOL: f64 = 2e-3;
const METRIC_RTOL: f64 = 1e-2;

/// Trains the case (with its eval set when `with_eval`), returning its log history.
fn run(with_eval: bool) -> (Value, Vec<LogEntry>) {
    let out = tempfile::tempdir().unwrap();
    let (case, mut map) = load_case("fixtures/expected/eval/sft.json", "config", out.path());
    let mut args: TrainingArguments = take_known_keys(&mut map, "training").unwrap();
    let sft: SftConfig = take_known_keys(&mut map, "sft").unwrap();
    assert!(map.is_empty(), "unhandled keys {map:?}");
    if !with_eval {
        args.eval_strategy = trl_core::train::args::EvalStrategy::No;
        args.eval_on_start = false;
    }
    let model_dir = repo_root().join("fixtures/models/tiny-qwen2");
    let tokenizer = Tokenizer::from_dir(&model_dir).unwrap();
    let train_set =
        prepare_examples(&read_case_row_range(&case, "train_rows"), &tokenizer, &sft).unwrap();
    let eval_set =
        prepare_examples(&read_case_row_range(&case, "eval_rows"), &tokenizer, &sft).unwrap();
    let mut method = SftMethod::new(sft, tokenizer).unwrap();
    let device = Device::default().autodiff();
    let model = load_causal_lm(&model_dir, &device).unwrap();
    let outcome = train_with_eval(
        &mut method,
        model,
        &train_set,
        Some(&eval_set),
        &args,
        &device,
        &mut RunLogger::silent(),
    )
    .unwrap();
    (case, outcome.state.log_history)
}

#[test]
fn sft_eval_metrics_match_trl_at_every_evaluation() {
    let (case, history) = run(true);
    let want = &case["log_history"];
    assert_eval_history_matches(
        "eval/sft",
        &history,
        want,
        LOSS_RTOL,
        METRIC_RTOL,
        &["eval_num_tokens"],
    );
    assert_log_history_matches(
        "eval/sft",
        &history,
        want,
        LOSS_RTOL,
        METRIC_RTOL,
        &[
            "grad_norm",
            "entropy",
            "mean_token_accuracy",
            "learning_rate",
            "epoch",
        ],
        &["num_tokens"],
    );
}

#[test]
fn evaluating_leaves_the_training_trajectory_bit_for_bit() {
    let (_, with) = run(true);
    let (_, without) = run(false);
    let train = |history: &[LogEntry]| -> Vec<LogEntry> {
        history
            .iter()
            .filter(|e| e.contains_key("loss"))
            .map(|e| {
                let mut e = e.clone();
                e.remove("step_time");
                e
            })
            .collect()
    };
    assert!(with.iter().any(|e| e.contains_key("eval_loss")));
    assert_eq!(train(&with), train(&without));
}
