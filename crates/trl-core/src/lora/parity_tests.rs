//! Base + adapter logits against peft (reference/peft_reference.py), saving and merging.

use burn::tensor::{Device, Tensor};
use serde_json::Value;

use super::*;
use crate::model::parity_tests::{case_batch, fixtures, max_logit_error, read_json};
use crate::model::{TokenBatch, load_causal_lm};

/// Largest absolute difference allowed between our fp32 logits and peft's.
const TOLERANCE: f32 = 1e-4;

/// The base model of `case` with its peft adapter loaded.
fn adapted(case: &str, device: &Device) -> (CausalLm, LoraConfig, Value) {
    let expected = read_json(&fixtures().join(format!("expected/lora/{case}.json")));
    let dir = fixtures().join("adapters").join(case);
    let config = LoraConfig::read(&dir).unwrap();
    let base_name = expected["model"].as_str().unwrap();
    assert_eq!(
        config.base_model_name_or_path,
        format!("fixtures/models/{base_name}")
    );
    let base = load_causal_lm(&fixtures().join("models").join(base_name), device).unwrap();
    let model = load_adapter(base, &config, &dir, device).unwrap();
    (model, config, expected)
}

fn logits(model: &CausalLm, batch: &TokenBatch) -> Vec<f32> {
    model
        .forward(batch)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

/// Max error of `model` over both padded cases of `expected`.
fn worst_error(model: &CausalLm, expected: &Value) -> f32 {
    let cases = expected["cases"].as_object().unwrap();
    assert_eq!(cases.len(), 2);
    cases
        .values()
        .map(|case| {
            let batch = case_batch(case);
            max_logit_error(
                &logits(model, &batch),
                &case["logits"],
                &batch.attention_mask,
            )
        })
        .fold(0.0, f32::max)
}

fn check_case(case: &str) {
    let device = Device::default();
    let (model, config, expected) = adapted(case, &device);
    let err = worst_error(&model, &expected);
    assert!(err < TOLERANCE, "{case}: max |logit error| vs peft {err}");
    // What we save loads back to the same logits, and merging keeps them.
    let dir = tempfile::tempdir().unwrap();
    save_adapter(&model, &config, dir.path()).unwrap();
    let reread = LoraConfig::read(dir.path()).unwrap();
    let base_name = expected["model"].as_str().unwrap();
    let base = load_causal_lm(&fixtures().join("models").join(base_name), &device).unwrap();
    let again = load_adapter(base, &reread, dir.path(), &device).unwrap();
    assert!(
        worst_error(&again, &expected) < TOLERANCE,
        "{case}: saved adapter"
    );
    let merged = merge(model).unwrap();
    assert!(!has_adapters(&merged));
    assert!(
        worst_error(&merged, &expected) < TOLERANCE,
        "{case}: merged"
    );
}

#[test]
fn llama_q_v_adapter_matches_peft() {
    check_case("llama-qv");
}

#[test]
fn qwen3_all_linear_rslora_adapter_matches_peft() {
    check_case("qwen3-all-linear-rslora");
}

#[test]
fn mistral_mlp_and_lm_head_copy_match_peft() {
    check_case("mistral-mlp-lm-head");
}

#[test]
fn without_adapters_is_the_base_model() {
    let device = Device::default();
    let (model, _, expected) = adapted("llama-qv", &device);
    let base_logits = read_json(&fixtures().join("expected/logits/tiny-llama.json"));
    let base = without_adapters(&model).unwrap();
    assert!(worst_error(&base, &base_logits) < TOLERANCE);
    assert!(
        worst_error(&base, &expected) > 1e-2,
        "the adapter changes the logits"
    );
}

#[test]
fn a_fresh_adapter_changes_nothing_and_only_it_trains() {
    let device = Device::default().autodiff();
    let base = load_causal_lm(&fixtures().join("models/tiny-llama"), &device).unwrap();
    let config = LoraConfig {
        r: 2,
        lora_alpha: 4.0,
        lora_dropout: 0.0,
        target_modules: TargetModules::AllLinear,
        exclude_modules: None,
        layers: Default::default(),
        modules_to_save: vec!["lm_head".into()],
        use_rslora: false,
        task_type: TaskType::CausalLm,
        base_model_name_or_path: "tiny-llama".into(),
    };
    let model = {
        let _stream = crate::random_stream::hold();
        attach_new(base, &config, &device).unwrap()
    };
    let expected = read_json(&fixtures().join("expected/logits/tiny-llama.json"));
    assert!(worst_error(&model, &expected) < TOLERANCE);
    // One backward: every trainable parameter is an adapter factor or the lm_head copy.
    let batch = case_batch(&expected["cases"]["right_pad"]);
    let loss: Tensor<1> = model.forward(&batch).powi_scalar(2).mean();
    let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
    let adapters = adapted_paths(&model).len();
    assert_eq!(adapters, 2 * 7, "all-linear: 7 projections per layer");
    // Per adapter A and B, plus the lm_head copy's weight.
    assert_eq!(grads.len(), 2 * adapters + 1);
}
