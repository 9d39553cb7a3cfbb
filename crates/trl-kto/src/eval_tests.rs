//! Evaluation during KTO training against TRL 1.16 (reference/eval_reference.py, case `kto`):
//! every evaluation logs KTOTrainer's `eval_*` values (KL from each eval batch's mismatched
//! pairs, rewards, log-probs, logits) step by step, and the training steps still match.

use burn::tensor::Device;
use trl_core::model::{load_causal_lm, load_frozen_causal_lm};
use trl_core::parity::{assert_eval_run_matches, load_eval_case, read_case_row_range, repo_root};
use trl_core::tokenizer::Tokenizer;
use trl_core::train::{RunLogger, train_with_eval};

use crate::data::prepare_examples;
use crate::{KtoConfig, KtoMethod};

#[test]
fn kto_eval_metrics_match_trl_at_every_evaluation() {
    let out = tempfile::tempdir().unwrap();
    let (case, args, config) = load_eval_case::<KtoConfig>("kto", out.path());
    let model_dir = repo_root().join("fixtures/models/tiny-qwen2");
    let tokenizer = Tokenizer::from_dir(&model_dir).unwrap();
    // TRL pairs KL completions in blocks of the train batch size, for the eval set too.
    let kl_block = config
        .loss_type
        .uses_kl()
        .then_some(args.per_device_train_batch_size);
    let prepare = |key: &str| {
        let rows = read_case_row_range(&case, key);
        prepare_examples(&rows, &tokenizer, config.max_length, kl_block).unwrap()
    };
    let (train_set, eval_set) = (prepare("train_rows"), prepare("eval_rows"));
    let device = Device::default().autodiff();
    let reference = load_frozen_causal_lm(&model_dir, &device).unwrap();
    let mut method = KtoMethod::new(config, tokenizer.clone(), Some(reference)).unwrap();
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
    let (history, want) = (&outcome.state.log_history, &case["log_history"]);
    assert_eval_run_matches(
        "eval/kto",
        history,
        want,
        &[
            "grad_norm",
            "learning_rate",
            "epoch",
            "entropy",
            "kl",
            "rewards/chosen",
            "rewards/rejected",
            "rewards/margins",
            "logps/chosen",
            "logps/rejected",
            "logits/chosen",
            "logits/rejected",
        ],
    );
}
