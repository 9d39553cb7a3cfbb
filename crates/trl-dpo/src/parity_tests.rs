//! DPO against TRL 1.16 (reference/dpo_reference.py): every loss variant on fixed log-probs
//! (losses.json), and 8-step training runs whose log_history must match step for step.

use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;
use trl_core::completions::PaddingOptions;
use trl_core::model::{load_causal_lm, load_frozen_causal_lm};
use trl_core::parity::{
    assert_close_slices, assert_log_history_matches, assert_param_updates_match,
    assert_summary_matches, first_micro_batch_rows, load_case, read_case_rows, repo_root,
    safetensors_update_norms,
};
use trl_core::tokenizer::Tokenizer;
use trl_core::train::{Method, RunLogger, TrainingArguments, take_known_keys, train};

use crate::data::{DpoExample, collate, prepare_examples};
use crate::loss::{PairLogps, ld_token_weights, pair_loss, wpo_weights};
use crate::{DpoConfig, DpoMethod};

/// Issue 7: loss within 2e-3, rewards/* and logps/* within 2e-2 relative.
const LOSS_RTOL: f64 = 2e-3;
const METRIC_RTOL: f64 = 2e-2;
/// The pure losses see identical inputs: only float32 rounding separates us from TRL.
const PURE_RTOL: f32 = 1e-5;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn matrix(v: &Value) -> Vec<Vec<f32>> {
    v.as_array().unwrap().iter().map(floats).collect()
}

fn tensor1(values: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

fn tensor2(rows: &[Vec<f32>], device: &Device) -> Tensor<2> {
    let (r, c) = (rows.len(), rows[0].len());
    Tensor::from_data(TensorData::new(rows.concat(), [r, c]), device)
}

#[test]
fn every_loss_variant_matches_trl_on_fixed_logps() {
    let text =
        std::fs::read_to_string(repo_root().join("fixtures/expected/dpo/losses.json")).unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let device = Device::default();
    let inputs = &fixture["inputs"];
    let pairs = inputs["batch_pairs"].as_u64().unwrap() as usize;
    let derived = &inputs["derived"];
    let policy = matrix(&inputs["policy"]["log_probs"]);
    let log_sum_sq = matrix(&inputs["policy"]["log_sum_sq_probs"]);
    let reference = matrix(&inputs["reference"]["log_probs"]);
    let shift: Vec<Vec<i64>> =
        serde_json::from_value(inputs["shift_completion_mask"].clone()).unwrap();
    let shift_f: Vec<Vec<f32>> = shift
        .iter()
        .map(|r| r.iter().map(|&m| m as f32).collect())
        .collect();
    let chosen_shift_tokens: f32 = shift_f[..pairs].iter().flatten().sum();
    let sft_nll = -policy[..pairs].iter().flatten().sum::<f32>() / chosen_shift_tokens;
    let mut checked = 0;
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut map: std::collections::BTreeMap<String, Value> = case["resolved"]
            .as_object()
            .unwrap()
            .clone()
            .into_iter()
            .collect();
        let config: DpoConfig = take_known_keys(&mut map, "dpo").unwrap();
        let losses = config.weighted_losses().unwrap();
        // Sequence log-probs, LD-weighted when asked, from the per-token values.
        let sums = |tokens: &[Vec<f32>]| -> Vec<f32> {
            match config.ld_alpha {
                None => tokens.iter().map(|r| r.iter().sum()).collect(),
                Some(alpha) => {
                    let w = ld_token_weights(&shift, pairs, alpha);
                    let width = tokens[0].len();
                    tokens
                        .iter()
                        .enumerate()
                        .map(|(i, r)| r.iter().zip(&w[i * width..]).map(|(a, b)| a * b).sum())
                        .collect()
                }
            }
        };
        let (policy_sums, reference_sums) = (sums(&policy), sums(&reference));
        let x = PairLogps {
            chosen: tensor1(policy_sums[..pairs].to_vec(), &device),
            rejected: tensor1(policy_sums[pairs..].to_vec(), &device),
            ref_chosen: tensor1(reference_sums[..pairs].to_vec(), &device),
            ref_rejected: tensor1(reference_sums[pairs..].to_vec(), &device),
            chosen_tokens: tensor1(
                floats(&derived["chosen_completion_tokens"])
                    .iter()
                    .map(|v| v.max(1.0))
                    .collect(),
                &device,
            ),
            rejected_tokens: tensor1(
                floats(&derived["rejected_completion_tokens"])
                    .iter()
                    .map(|v| v.max(1.0))
                    .collect(),
                &device,
            ),
            sft_nll: tensor1(vec![sft_nll], &device),
            chosen_full_nll: tensor1(vec![0.0], &device),
        };
        let weights = config.use_weighting.then(|| {
            wpo_weights(
                tensor2(&policy, &device),
                tensor2(&log_sum_sq, &device),
                tensor2(&shift_f, &device),
            )
        });
        let mut total = 0f32;
        for (kind, weight) in losses {
            let mut per_pair = pair_loss(kind, &x, &config.loss_params());
            if let Some(w) = &weights {
                per_pair = per_pair * w.clone();
            }
            total += per_pair.mean().into_scalar::<f32>() * weight as f32;
        }
        let want = case["loss"].as_f64().unwrap() as f32;
        assert!(
            (total - want).abs() <= PURE_RTOL * want.abs().max(1.0),
            "{name}: {total} vs TRL {want}"
        );
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} cases checked");
    for rejected in fixture["rejected_configs"].as_array().unwrap() {
        let mut map: std::collections::BTreeMap<String, Value> = rejected["config"]
            .as_object()
            .unwrap()
            .clone()
            .into_iter()
            .collect();
        let config: DpoConfig = take_known_keys(&mut map, "dpo").unwrap();
        assert!(
            config.weighted_losses().is_err(),
            "TRL rejects {}, we accepted it",
            rejected["config"]
        );
    }
}

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
    let method = DpoMethod::new(config.clone(), tokenizer, reference).unwrap();
    if config.precompute_ref_log_probs {
        method
            .precompute_reference(&mut examples, args.per_device_train_batch_size, &device)
            .unwrap();
        method.drop_reference();
    }
    check_first_micro_batch(name, &case, &method, &examples, &args, &model_dir);
    let outcome = train(
        &method,
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
        let updates = safetensors_update_norms(
            &model_dir.join("model.safetensors"),
            &out.path().join("model.safetensors"),
        )
        .unwrap();
        assert_param_updates_match(name, &updates, &case["param_update_norms"], METRIC_RTOL);
    }
}

/// TRL's first collated micro-batch (`first_batch`) and what its first `compute_loss` call
/// returned and logged (`micro_batches[0]`), against ours on the untrained model.
fn check_first_micro_batch(
    name: &str,
    case: &Value,
    method: &DpoMethod,
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
    let (loss, metrics) = method
        .loss(&model, &first, method.items_in(&first))
        .unwrap();
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
