//! DPO against TRL 1.16 (reference/dpo_reference.py): training runs whose first micro-batch,
//! first forward (`parity_forward_tests.rs`), log_history, summary and parameter updates must
//! match TRL's (the pure losses are in
//! `loss_parity_tests.rs`).

use burn::tensor::Device;
use serde_json::Value;
use trl_core::completions::PaddingOptions;
use trl_core::model::{load_causal_lm, load_frozen_causal_lm};
use trl_core::parity::{
    assert_close_slices, assert_log_history_matches, assert_run_updates_match,
    assert_summary_matches, first_micro_batch_rows, load_case, micro_batch_loss, read_case_rows,
    repo_root,
};
use trl_core::tokenizer::Tokenizer;
use trl_core::train::{RunLogger, TrainingArguments, take_known_keys, train};

use crate::data::{DpoExample, collate, prepare_examples};
use crate::parity_forward_tests::check_first_forward;
use crate::{DpoConfig, DpoMethod};

/// Issue 7: loss within 2e-3, rewards/* and logps/* within 2e-2 relative.
const LOSS_RTOL: f64 = 2e-3;
const METRIC_RTOL: f64 = 2e-2;
fn check_run(name: &str) {
    check_first_steps(name, usize::MAX);
}

fn check_run_with(name: &str, extra: &[(&str, serde_json::Value)]) {
    check_first_steps_with(name, usize::MAX, extra);
}

/// Compares the first `steps` logged steps only.
fn check_first_steps(name: &str, steps: usize) {
    check_first_steps_with(name, steps, &[]);
}

/// [`check_first_steps`] with extra config keys that must not change the numbers.
fn check_first_steps_with(name: &str, steps: usize, extra: &[(&str, serde_json::Value)]) {
    let out = tempfile::tempdir().unwrap();
    let (case, mut map) = load_case(
        &format!("fixtures/expected/dpo/{name}.json"),
        "dpo_config",
        out.path(),
    );
    for (key, value) in extra {
        map.insert(key.to_string(), value.clone());
    }
    let args: TrainingArguments = take_known_keys(&mut map, "training").unwrap();
    let config: DpoConfig = take_known_keys(&mut map, "dpo").unwrap();
    assert!(map.is_empty(), "unhandled keys {map:?}");
    let model_dir = repo_root().join("fixtures/models/tiny-qwen2");
    let tokenizer = Tokenizer::from_dir(&model_dir).unwrap();
    let rows = read_case_rows(&case);
    let mut examples =
        prepare_examples(&rows, &tokenizer, config.max_length, config.truncation_mode).unwrap();
    let prepared = &case["prepared_dataset"];
    assert_eq!(
        examples.len() as u64,
        prepared["num_rows"].as_u64().unwrap(),
        "{name}: rows kept"
    );
    let lengths =
        |key: &str| -> Vec<usize> { serde_json::from_value(prepared[key].clone()).unwrap() };
    assert_eq!(
        examples
            .iter()
            .map(|e| e.prompt_ids.len())
            .collect::<Vec<_>>(),
        lengths("prompt_lengths"),
        "{name}"
    );
    assert_eq!(
        examples
            .iter()
            .map(|e| e.chosen_ids.len())
            .collect::<Vec<_>>(),
        lengths("chosen_lengths"),
        "{name}"
    );

    let device = Device::default().autodiff();
    let model = load_causal_lm(&model_dir, &device).unwrap();
    let reference = DpoMethod::needs_reference(&config)
        .then(|| load_frozen_causal_lm(&model_dir, &device).unwrap());
    let mut method = DpoMethod::new(config.clone(), tokenizer, reference).unwrap();
    if config.precompute_ref_log_probs {
        method
            .precompute_reference(&mut examples, args.per_device_train_batch_size, &device)
            .unwrap();
        method.drop_reference();
    }
    check_first_micro_batch(name, &case, &mut method, &examples, &args, &model_dir);
    let outcome = train(
        &mut method,
        model,
        &examples,
        &args,
        &device,
        &mut RunLogger::silent(),
    )
    .unwrap();
    let want: Vec<serde_json::Value> = case["log_history"]
        .as_array()
        .unwrap()
        .iter()
        .take(steps)
        .cloned()
        .collect();
    let got: Vec<_> = outcome
        .state
        .log_history
        .iter()
        .take(steps)
        .cloned()
        .collect();
    assert_log_history_matches(
        name,
        &got,
        &serde_json::Value::Array(want),
        LOSS_RTOL,
        METRIC_RTOL,
        &[
            "rewards/chosen",
            "rewards/rejected",
            "rewards/margins",
            "logps/chosen",
            "logps/rejected",
            "logits/chosen",
            "logits/rejected",
            "entropy",
            "grad_norm",
            "mean_token_accuracy",
            "learning_rate",
            "epoch",
            // a fraction of the batch's pairs, averaged in float32 by TRL (2/3 is 0.6666666865)
            "rewards/accuracies",
        ],
        &["num_tokens"],
    );
    if steps == usize::MAX {
        assert_summary_matches(
            name,
            &outcome.state.log_history,
            &case["log_history"],
            LOSS_RTOL,
            &["train_loss"],
        );
        assert_run_updates_match(
            name,
            &model_dir,
            out.path(),
            &case["param_update_norms"],
            METRIC_RTOL,
        );
    }
}

/// TRL's first collated micro-batch (`first_batch`) and what its first `compute_loss` call
/// returned and logged (`micro_batches[0]`), against ours on the untrained model.
fn check_first_micro_batch(
    name: &str,
    case: &Value,
    method: &mut DpoMethod,
    examples: &[DpoExample],
    args: &TrainingArguments,
    model_dir: &std::path::Path,
) {
    let first: Vec<&DpoExample> = first_micro_batch_rows(args, examples.len())
        .into_iter()
        .map(|i| &examples[i])
        .collect();
    let options = PaddingOptions {
        pad_token_id: method.pad_token_id,
        max_length: method.config.max_length,
        truncation_mode: method.config.truncation_mode,
        pad_to_multiple_of: method.config.pad_to_multiple_of,
    };
    let ours = collate(&first, &options).batch;
    let want = &case["first_batch"];
    let ints = |key: &str| -> Vec<Vec<i64>> { serde_json::from_value(want[key].clone()).unwrap() };
    let ids: Vec<Vec<i64>> = ours
        .tokens
        .input_ids
        .iter()
        .map(|r| r.iter().map(|&t| t as i64).collect())
        .collect();
    assert_eq!(ids, ints("input_ids"), "{name}: first batch input_ids");
    assert_eq!(
        ours.tokens.attention_mask,
        ints("attention_mask"),
        "{name}: first batch attention_mask"
    );
    assert_eq!(
        ours.completion_mask,
        ints("completion_mask"),
        "{name}: first batch completion_mask"
    );
    if let Some(want_chosen) = want.get("ref_chosen_logps") {
        let logps = |pick: fn(&(f64, f64)) -> f64| -> Vec<f64> {
            first
                .iter()
                .map(|e| pick(e.ref_logps.as_ref().expect("precomputed")))
                .collect()
        };
        let want_rejected: Vec<f64> =
            serde_json::from_value(want["ref_rejected_logps"].clone()).unwrap();
        let want_chosen: Vec<f64> = serde_json::from_value(want_chosen.clone()).unwrap();
        assert_close_slices(
            &format!("{name}: ref_chosen_logps"),
            &logps(|p| p.0),
            &want_chosen,
            METRIC_RTOL,
            1e-4,
        );
        assert_close_slices(
            &format!("{name}: ref_rejected_logps"),
            &logps(|p| p.1),
            &want_rejected,
            METRIC_RTOL,
            1e-4,
        );
    }

    let device = Device::default().autodiff();
    let model = load_causal_lm(model_dir, &device).unwrap();
    // TRL runs a reference model unless its log-probs are precomputed (then first_batch holds them)
    let reference = (DpoMethod::needs_reference(&method.config)
        && want.get("ref_chosen_logps").is_none())
    .then(|| load_frozen_causal_lm(model_dir, &device).unwrap());
    check_first_forward(
        name,
        case,
        &ours,
        first.len(),
        (&model, reference.as_ref()),
        method.config.ld_alpha.is_some(),
    );
    let (loss, metrics) = micro_batch_loss(method, &model, first.clone(), &device).unwrap();
    let micro = &case["micro_batches"][0];
    let loss = loss.into_scalar::<f32>() as f64;
    let want_loss = micro["loss"].as_f64().unwrap();
    assert_close_slices(
        &format!("{name}: first micro-batch loss"),
        &[loss],
        &[want_loss],
        LOSS_RTOL,
        1e-7,
    );
    let trl_metrics = micro["metrics"].as_object().unwrap();
    assert!(
        !trl_metrics.is_empty(),
        "{name}: TRL's first micro-batch logged nothing"
    );
    for (key, value) in trl_metrics {
        let want = value.as_f64().unwrap();
        let got = if key == "num_tokens" {
            metrics.num_tokens
        } else {
            metrics
                .values
                .iter()
                .find(|(k, _)| k == key)
                .unwrap_or_else(|| panic!("{name}: first micro-batch: we did not compute {key}"))
                .1
        };
        assert_close_slices(
            &format!("{name}: first micro-batch {key}"),
            &[got],
            &[want],
            METRIC_RTOL,
            1e-4,
        );
    }
}

#[test]
fn sigmoid_matches_trl() {
    check_run("sigmoid");
}

#[test]
fn ipo_matches_trl() {
    check_run("ipo");
}

#[test]
fn hinge_matches_trl() {
    check_run("hinge");
}

/// At max_length 64 only 10 conversations survive and truncation leaves chosen == rejected in
/// some batches: the gradient is pure float noise (TRL logs grad_norm 1.9e-7) that AdamW
/// normalises into a full-size step, in TRL as here, so later steps follow the noise. Only the
/// data and the first step are comparable; `sigmoid_conversational_len128` checks all steps.
#[test]
fn sigmoid_conversational_first_step_matches_trl() {
    check_first_steps("sigmoid_conversational", 1);
}

#[test]
fn sigmoid_implicit_prompt_matches_trl() {
    check_run("sigmoid_implicit");
}

#[test]
fn sigmoid_with_gradient_accumulation_matches_trl() {
    check_run("sigmoid_ga2");
}

#[test]
fn precomputed_reference_matches_trl() {
    check_run("sigmoid_precompute_ref");
}

#[test]
fn weighted_sigmoid_plus_sft_matches_trl() {
    check_run("sigmoid_sft_weighted");
}

#[test]
fn ld_alpha_matches_trl() {
    check_run("sigmoid_ld_alpha");
}

#[test]
fn synced_reference_matches_trl() {
    check_run("sigmoid_sync_ref");
}

#[test]
fn conversational_len128_matches_trl() {
    check_run("sigmoid_conversational_len128");
}

// Step accounting: transformers makes ceil(micro-batches / GA) optimizer steps per epoch, the
// last one with the remaining micro-batches (issue 14).

#[test]
fn gradient_accumulation_remainder_matches_trl() {
    check_run("sigmoid_ga_remainder");
}

#[test]
fn last_partial_batch_matches_trl() {
    check_run("sigmoid_partial_batch");
}

#[test]
fn several_epochs_with_a_remainder_match_trl() {
    check_run("sigmoid_epochs_remainder");
}

#[test]
fn max_steps_crossing_an_epoch_boundary_matches_trl() {
    check_run("sigmoid_max_steps_across_epochs");
}

#[test]
fn random_order_matches_trl() {
    check_run("sigmoid_random_order");
}

#[test]
fn keep_end_truncation_matches_trl() {
    check_run("sigmoid_keep_end");
}

/// Padding-free runs the transformer on real tokens only; the numbers must not change.
#[test]
fn padding_free_gives_trl_numbers() {
    check_run_with(
        "sigmoid",
        &[("padding_free", serde_json::Value::Bool(true))],
    );
}
