//! Evaluation during SFT training against TRL 1.16 (reference/eval_reference.py, case `sft`):
//! every evaluation (on start, every 3 steps, at the last step) logs TRL's `eval_*` values,
//! and evaluating does not change the training trajectory by one bit.

use burn::tensor::Device;
use serde_json::Value;
use trl_core::model::load_causal_lm;
use trl_core::parity::{assert_eval_run_matches, load_eval_case, read_case_row_range, repo_root};
use trl_core::tokenizer::Tokenizer;
use trl_core::train::state::LogEntry;
use trl_core::train::{RunLogger, train_with_eval};

use crate::data::prepare_examples;
use crate::{SftConfig, SftMethod};

/// Trains the case (with its eval set when `with_eval`), returning its log history.
fn run(with_eval: bool) -> (Value, Vec<LogEntry>) {
    let out = tempfile::tempdir().unwrap();
    let (case, mut args, sft) = load_eval_case::<SftConfig>("sft", out.path());
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
    assert_eval_run_matches(
        "eval/sft",
        &history,
        want,
        &[
            "grad_norm",
            "entropy",
            "mean_token_accuracy",
            "learning_rate",
            "epoch",
        ],
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
