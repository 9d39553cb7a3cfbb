//! Evaluation during reward modeling against TRL 1.16 (reference/eval_reference.py, case
//! `reward`): every evaluation logs RewardTrainer's `eval_*` values (accuracy, margin,
//! min/mean/max reward) step by step, and the training steps still match.

use burn::tensor::Device;
use trl_core::model::load_sequence_classifier;
use trl_core::parity::{assert_eval_run_matches, load_eval_case, read_case_row_range, repo_root};
use trl_core::tokenizer::Tokenizer;
use trl_core::train::{RunLogger, train_with_eval};

use crate::data::prepare_examples;
use crate::trainer::resolve_pad_token;
use crate::{RewardConfig, RewardMethod};

#[test]
fn reward_eval_metrics_match_trl_at_every_evaluation() {
    let out = tempfile::tempdir().unwrap();
    let (case, args, config) = load_eval_case::<RewardConfig>("reward", out.path());
    let model_dir = repo_root().join("fixtures/models/tiny-qwen2-rm");
    let mut tokenizer = Tokenizer::from_dir(&model_dir).unwrap();
    let pad = resolve_pad_token(&mut tokenizer, config.pad_token.as_deref()).unwrap();
    let prepare = |key: &str| {
        let rows = read_case_row_range(&case, key);
        prepare_examples(&rows, &tokenizer, config.max_length).unwrap()
    };
    let (train_set, eval_set) = (prepare("train_rows"), prepare("eval_rows"));
    let mut method = RewardMethod::new(config, tokenizer.clone()).unwrap();
    let device = Device::default().autodiff();
    let mut model = load_sequence_classifier(&model_dir, 1, &device).unwrap();
    model.set_pad_token_id(pad);
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
    let (history, want) = (&outcome.state.log_history, &case["log_history"]);
    assert_eval_run_matches(
        "eval/reward",
        history,
        want,
        &[
            "grad_norm",
            "learning_rate",
            "epoch",
            "accuracy",
            "margin",
            "min_reward",
            "mean_reward",
            "max_reward",
        ],
    );
}
