//! Logits of every fixture architecture against transformers (reference/make_fixtures.py),
//! and save -> load round trips.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde_json::Value;

use super::*;

/// Largest absolute difference allowed between our fp32 logits and transformers' (eager, fp32).
const LOGITS_TOLERANCE: f32 = 1e-4;

pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

pub(crate) fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn matrix<T>(value: &Value, f: impl Fn(&Value) -> T) -> Vec<Vec<T>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(&f).collect())
        .collect()
}

/// The padded batch of one expected-logits case.
pub(crate) fn case_batch(case: &Value) -> TokenBatch {
    TokenBatch::with_position_ids(
        matrix(&case["input_ids"], |v| v.as_u64().unwrap() as u32),
        matrix(&case["attention_mask"], |v| v.as_i64().unwrap()),
        matrix(&case["position_ids"], |v| v.as_i64().unwrap()),
    )
}

/// Max |ours - expected| over non-padding positions of `[batch, seq, vocab]` logits. Panics
/// when the shapes differ or no position is compared.
pub(crate) fn max_logit_error(ours: &[f32], expected: &Value, mask: &[Vec<i64>]) -> f32 {
    let vocab = expected[0][0].as_array().unwrap().len();
    let seq = mask[0].len();
    let rows = expected.as_array().unwrap().len();
    assert_eq!(rows, mask.len(), "expected logits rows vs mask rows");
    assert_eq!(
        ours.len(),
        rows * seq * vocab,
        "our logits vs [{rows}, {seq}, {vocab}]"
    );
    assert!(
        vocab > 0 && mask.iter().flatten().any(|&m| m != 0),
        "no position to compare"
    );
    let mut worst = 0f32;
    for (b, row) in mask.iter().enumerate() {
        for (s, &m) in row.iter().enumerate() {
            if m == 0 {
                continue;
            }
            for v in 0..vocab {
                let want = expected[b][s][v].as_f64().unwrap() as f32;
                let got = ours[(b * seq + s) * vocab + v];
                worst = worst.max((got - want).abs());
            }
        }
    }
    worst
}

/// The cases of `expected/logits/<model>.json`: both padding sides, never none.
fn expected_cases(model: &str) -> Vec<(String, Value)> {
    let expected = read_json(&fixtures().join(format!("expected/logits/{model}.json")));
    let cases: Vec<(String, Value)> = expected["cases"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut names: Vec<&str> = cases.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["left_pad", "right_pad"],
        "{model}: expected logits cases"
    );
    cases
}

fn check_causal_lm(model: &str) {
    let device = Device::default();
    let lm = load_causal_lm(&fixtures().join("models").join(model), &device).unwrap();
    for (name, case) in expected_cases(model) {
        let batch = case_batch(&case);
        let logits = lm.forward(&batch).into_data().try_to_vec::<f32>().unwrap();
        let err = max_logit_error(&logits, &case["logits"], &batch.attention_mask);
        assert!(
            err < LOGITS_TOLERANCE,
            "{model} {name}: max |logit error| {err}"
        );
    }
}

#[test]
fn llama_logits_match_transformers() {
    check_causal_lm("tiny-llama");
}

#[test]
fn llama_tied_llama3_rope_logits_match_transformers() {
    check_causal_lm("tiny-llama-tied-llama3rope");
}

#[test]
fn llama_linear_rope_logits_match_transformers() {
    check_causal_lm("tiny-llama-linear-rope");
}

#[test]
fn mistral_logits_match_transformers() {
    check_causal_lm("tiny-mistral");
}

#[test]
fn qwen2_logits_match_transformers() {
    check_causal_lm("tiny-qwen2");
}

#[test]
fn qwen3_logits_match_transformers() {
    check_causal_lm("tiny-qwen3");
}

#[test]
fn bf16_checkpoint_logits_match_transformers() {
    check_causal_lm("tiny-llama-bf16");
}

#[test]
fn f16_checkpoint_logits_match_transformers() {
    check_causal_lm("tiny-llama-f16");
}

#[test]
fn sharded_checkpoint_logits_match_transformers() {
    check_causal_lm("tiny-llama-sharded");
}

/// `*ForSequenceClassification` with one label (a reward head) on every decoder family.
#[test]
fn reward_model_scores_match_transformers() {
    for model in [
        "tiny-qwen2-rm",
        "tiny-llama-rm",
        "tiny-mistral-rm",
        "tiny-qwen3-rm",
    ] {
        check_sequence_classifier(model);
    }
}

fn check_sequence_classifier(model: &str) {
    let device = Device::default();
    let rm = load_sequence_classifier(&fixtures().join("models").join(model), 1, &device).unwrap();
    for (name, case) in expected_cases(model) {
        let batch = case_batch(&case);
        let scores = rm
            .forward(&batch)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let expected: Vec<f32> = matrix(&case["scores"], |v| v.as_f64().unwrap() as f32)
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(
            scores.len(),
            expected.len(),
            "{model} {name}: number of scores"
        );
        for (got, want) in scores.iter().zip(&expected) {
            assert!(
                (got - want).abs() < LOGITS_TOLERANCE,
                "{model} {name}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn save_then_load_gives_bitwise_equal_logits() {
    let device = Device::default();
    for model in ["tiny-qwen2", "tiny-qwen3", "tiny-llama"] {
        let lm = load_causal_lm(&fixtures().join("models").join(model), &device).unwrap();
        let out = tempfile::tempdir().unwrap();
        let mut writer = WeightWriter::default();
        lm.save_weights(&mut writer).unwrap();
        save_pretrained(out.path(), lm.config(), &writer).unwrap();
        let reloaded = load_causal_lm(out.path(), &device).unwrap();
        let (_, case) = expected_cases(model).remove(0);
        let batch = case_batch(&case);
        let a = lm.forward(&batch).into_data().try_to_vec::<f32>().unwrap();
        let b = reloaded
            .forward(&batch)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(
            !a.is_empty()
                && a.len() == b.len()
                && a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{model}"
        );
        assert_eq!(
            reloaded.config().tie_word_embeddings,
            lm.config().tie_word_embeddings
        );
    }
}

#[test]
fn mismatched_config_names_the_tensor() {
    let device = Device::default();
    let src = fixtures().join("models/tiny-llama");
    let out = tempfile::tempdir().unwrap();
    let weights = "model.safetensors";
    std::fs::copy(src.join(weights), out.path().join(weights)).unwrap();
    let mut config = read_json(&src.join("config.json"));
    config["intermediate_size"] = Value::from(96);
    std::fs::write(out.path().join("config.json"), config.to_string()).unwrap();
    let err = load_causal_lm(out.path(), &device).unwrap_err().to_string();
    assert!(
        err.contains("mlp.gate_proj.weight") && err.contains("96"),
        "{err}"
    );
}
