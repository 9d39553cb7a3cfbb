//! Every GRPO loss type and RLOO's loss against TRL 1.16's `_compute_loss` on fixed inputs
//! (fixtures/expected/grpo_loss.json, from reference/grpo_loss_reference.py): the loss, its
//! gradient w.r.t. the per-token log-probs, and every metric TRL logged.

use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;
use trl_core::parity::repo_root;
use trl_core::train::collective::SingleProcess;

use super::*;

/// Same inputs, float32 on both sides: only rounding separates us from TRL.
const RTOL: f64 = 1e-5;
/// Floor for values that are (nearly) zero by cancellation.
const ATOL: f64 = 1e-7;

/// The parsed fixture, shared with the advantage tests.
pub(crate) fn fixture() -> Value {
    let path = repo_root().join("fixtures/expected/grpo_loss.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// A JSON number, `null` read as NaN (the fixture's spelling of NaN).
pub(crate) fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

pub(crate) fn numbers(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(number).collect()
}

pub(crate) fn rows(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(numbers).collect()
}

/// `|got - want| <= RTOL |want| + atol`, NaN only against NaN.
pub(crate) fn assert_close(got: f64, want: f64, atol: f64, what: &str) {
    if want.is_nan() || got.is_nan() {
        assert!(
            want.is_nan() && got.is_nan(),
            "{what}: got {got}, TRL {want}"
        );
        return;
    }
    let tol = RTOL * want.abs() + atol;
    assert!((got - want).abs() <= tol, "{what}: got {got}, TRL {want}");
}

fn tensor2(values: &Value, device: &Device) -> Tensor<2> {
    let rows = rows(values);
    let (r, c) = (rows.len(), rows[0].len());
    let flat: Vec<f32> = rows.concat().iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(flat, [r, c]), device)
}

fn tensor1(values: &Value, device: &Device) -> Tensor<1> {
    let flat: Vec<f32> = numbers(values).iter().map(|&x| x as f32).collect();
    let n = flat.len();
    Tensor::from_data(TensorData::new(flat, [n]), device)
}

fn config_of(c: &Value) -> PolicyLossConfig {
    let f = |k: &str| c[k].as_f64().unwrap_or_else(|| panic!("config.{k}"));
    PolicyLossConfig {
        loss_type: c["loss_type"].as_str().unwrap().parse().unwrap(),
        epsilon: f("epsilon_low"),
        epsilon_high: Some(f("epsilon_high")),
        delta: c["delta"].as_f64(),
        beta: f("beta"),
        use_bias_correction_kl: c["use_bias_correction_kl"].as_bool().unwrap(),
        importance_sampling_level: c["importance_sampling_level"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        sapo_temperature_pos: f("sapo_temperature_pos"),
        sapo_temperature_neg: f("sapo_temperature_neg"),
        vespo_k_pos: f("vespo_k_pos"),
        vespo_lambda_pos: f("vespo_lambda_pos"),
        vespo_k_neg: f("vespo_k_neg"),
        vespo_lambda_neg: f("vespo_lambda_neg"),
        max_completion_length: c["max_completion_length"].as_u64().unwrap() as usize,
        top_entropy_quantile: f("top_entropy_quantile"),
        entropy_coef: f("entropy_coef"),
        use_adaptive_entropy: false,
    }
}

/// Compares the loss, the gradient w.r.t. `per_token_logps` and the metrics with a case.
fn check_against(case: &Value, name: &str, logps: &Tensor<2>, out: PolicyLoss, loss_scale: f64) {
    let grads = out.loss.backward();
    let got_loss = f64::from(out.loss.into_scalar::<f32>());
    assert_close(
        got_loss,
        number(&case["loss"]) * loss_scale,
        ATOL,
        &format!("{name}: loss"),
    );
    let grad = host(Tensor::<2>::from_inner(logps.grad(&grads).unwrap())).unwrap();
    let want = rows(&case["grad_per_token_logps"]).concat();
    for (i, (&g, &w)) in grad.iter().zip(&want).enumerate() {
        assert_close(
            g as f64,
            w * loss_scale,
            ATOL,
            &format!("{name}: grad[{i}]"),
        );
    }
    let metrics = case["metrics"].as_object().unwrap();
    for (key, want) in metrics {
        let got = out
            .metrics
            .get(key)
            .unwrap_or_else(|| panic!("{name}: no metric {key}"));
        assert_close(got, number(want), ATOL, &format!("{name}: {key}"));
    }
    for (key, _) in &out.metrics.values {
        assert!(metrics.contains_key(key), "{name}: TRL does not log {key}");
    }
}

#[test]
fn every_loss_type_matches_trl() {
    let fixture = fixture();
    let device = Device::default().autodiff();
    let cases = fixture["grpo_loss_cases"].as_array().unwrap();
    let mut seen = std::collections::HashSet::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let cfg = config_of(&case["config"]);
        cfg.validate().unwrap();
        seen.insert(cfg.loss_type);
        let set = &fixture["loss_inputs"][case["inputs"].as_str().unwrap()];
        let logps = tensor2(&set["per_token_logps"], &device).require_grad();
        let optional = |key: &str| (!set[key].is_null()).then(|| tensor2(&set[key], &device));
        let inputs = PolicyLossInputs {
            per_token_logps: logps.clone(),
            entropies: tensor2(&set["entropies"], &device),
            old_per_token_logps: optional("old_per_token_logps"),
            // passed even when beta is 0: TRL then ignores it
            ref_per_token_logps: optional("ref_per_token_logps"),
            advantages: tensor1(&set["advantages"], &device),
            mask: tensor2(&set["completion_mask"], &device),
        };
        let n = &case["normalizer"];
        let norm = LossNormalizer {
            current_gradient_accumulation_steps: n["current_gradient_accumulation_steps"]
                .as_u64()
                .unwrap() as usize,
            steps_per_generation: n["steps_per_generation"].as_u64().unwrap() as usize,
            num_items_in_batch: number(&n["num_items_in_batch"]),
            processes: 1,
        };
        let out = policy_loss(&cfg, inputs, &norm, &SingleProcess).unwrap();
        check_against(case, name, &logps, out, 1.0);
    }
    assert_eq!(
        seen.len(),
        LossType::ALL.len(),
        "every loss type has a case"
    );
}

#[test]
fn rloo_loss_matches_trl() {
    let fixture = fixture();
    let device = Device::default().autodiff();
    for case in fixture["rloo_loss_cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let set = &fixture["loss_inputs"][case["inputs"].as_str().unwrap()];
        let logps = tensor2(&set["per_token_logps"], &device).require_grad();
        let inputs = RlooLossInputs {
            per_token_logps: logps.clone(),
            entropies: tensor2(&set["entropies"], &device),
            old_logps: tensor1(&case["old_logps"], &device),
            advantages: tensor1(&set["advantages"], &device),
            mask: tensor2(&set["completion_mask"], &device),
        };
        let ga = case["current_gradient_accumulation_steps"]
            .as_u64()
            .unwrap() as usize;
        let c = &case["config"];
        let (low, high) = (number(&c["epsilon_low"]), number(&c["epsilon_high"]));
        let out = rloo_policy_loss(low, high, inputs, ga).unwrap();
        // The HF Trainer divides RLOO's `_compute_loss` (and so its gradient) by GA.
        check_against(case, name, &logps, out, 1.0 / ga as f64);
    }
}

#[test]
fn defaults_are_grpo_config_defaults() {
    let fixture = fixture();
    let d = &fixture["grpo_config_defaults"];
    let cfg = PolicyLossConfig::default();
    assert_eq!(cfg.loss_type.as_str(), d["loss_type"].as_str().unwrap());
    assert_eq!(cfg.epsilon, number(&d["epsilon"]));
    assert_eq!(cfg.epsilon_high, d["epsilon_high"].as_f64());
    assert_eq!(cfg.delta, d["delta"].as_f64());
    assert_eq!(cfg.beta, number(&d["beta"]));
    assert_eq!(
        cfg.use_bias_correction_kl,
        d["use_bias_correction_kl"].as_bool().unwrap()
    );
    let level: ImportanceSamplingLevel = d["importance_sampling_level"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(cfg.importance_sampling_level, level);
    for (got, key) in [
        (cfg.sapo_temperature_pos, "sapo_temperature_pos"),
        (cfg.sapo_temperature_neg, "sapo_temperature_neg"),
        (cfg.vespo_k_pos, "vespo_k_pos"),
        (cfg.vespo_lambda_pos, "vespo_lambda_pos"),
        (cfg.vespo_k_neg, "vespo_k_neg"),
        (cfg.vespo_lambda_neg, "vespo_lambda_neg"),
        (cfg.top_entropy_quantile, "top_entropy_quantile"),
        (cfg.entropy_coef, "entropy_coef"),
    ] {
        assert_eq!(got, number(&d[key]), "{key}");
    }
    assert_eq!(
        cfg.max_completion_length as u64,
        d["max_completion_length"].as_u64().unwrap()
    );
    assert_eq!(
        cfg.use_adaptive_entropy,
        d["use_adaptive_entropy"].as_bool().unwrap()
    );
    assert_eq!(cfg.validate().unwrap(), Vec::<String>::new());
}

#[test]
fn bad_options_are_errors_naming_the_option() {
    let err = "ppo".parse::<LossType>().unwrap_err().to_string();
    assert!(
        err.contains("loss_type") && err.contains("dr_grpo, dapo"),
        "{err}"
    );
    let err = "tokens"
        .parse::<ImportanceSamplingLevel>()
        .unwrap_err()
        .to_string();
    assert!(err.contains("importance_sampling_level"), "{err}");
    let bad = |cfg: PolicyLossConfig, option: &str| {
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains(option), "{err}");
    };
    let base = PolicyLossConfig::default;
    bad(
        PolicyLossConfig {
            use_adaptive_entropy: true,
            ..base()
        },
        "use_adaptive_entropy",
    );
    bad(
        PolicyLossConfig {
            top_entropy_quantile: 1.5,
            ..base()
        },
        "top_entropy_quantile",
    );
    bad(
        PolicyLossConfig {
            sapo_temperature_neg: 0.0,
            ..base()
        },
        "sapo_temperature_neg",
    );
    bad(
        PolicyLossConfig {
            epsilon: -0.1,
            ..base()
        },
        "epsilon",
    );
    let dr = PolicyLossConfig {
        loss_type: LossType::DrGrpo,
        max_completion_length: 0,
        ..base()
    };
    bad(dr, "max_completion_length");
}

#[test]
fn trl_warnings_on_level_and_type_mismatches() {
    let with = |loss_type, level| PolicyLossConfig {
        loss_type,
        importance_sampling_level: level,
        ..PolicyLossConfig::default()
    };
    use ImportanceSamplingLevel::{Sequence, Token};
    assert_eq!(with(LossType::Luspo, Token).validate().unwrap().len(), 1);
    assert_eq!(with(LossType::Vespo, Sequence).validate().unwrap().len(), 1);
    assert_eq!(with(LossType::Dapo, Sequence).validate().unwrap().len(), 1);
    assert!(
        with(LossType::Grpo, Sequence)
            .validate()
            .unwrap()
            .is_empty()
    );
    assert!(
        with(LossType::Luspo, Sequence)
            .validate()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn wrong_shapes_and_a_missing_reference_are_errors() {
    let device = Device::default();
    let zeros = |r, c| Tensor::<2>::zeros([r, c], &device);
    let inputs = || PolicyLossInputs {
        per_token_logps: zeros(2, 3),
        entropies: zeros(2, 3),
        old_per_token_logps: None,
        ref_per_token_logps: None,
        advantages: Tensor::<1>::zeros([2], &device),
        mask: zeros(2, 3),
    };
    let norm = LossNormalizer {
        current_gradient_accumulation_steps: 1,
        steps_per_generation: 1,
        num_items_in_batch: 6.0,
        processes: 1,
    };
    let cfg = PolicyLossConfig {
        beta: 0.04,
        ..PolicyLossConfig::default()
    };
    let err = policy_loss(&cfg, inputs(), &norm, &SingleProcess)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ref_per_token_logps"), "{err}");
    let bad_mask = PolicyLossInputs {
        mask: zeros(2, 4),
        ..inputs()
    };
    let err = policy_loss(
        &PolicyLossConfig::default(),
        bad_mask,
        &norm,
        &SingleProcess,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("mask"), "{err}");
}

/// Gradient accumulation: the window's summed loss does not depend on how the generation
/// batch is split into micro-batches, for every type whose normaliser is not local (TRL
/// documents that bnpo's is).
#[test]
fn split_micro_batches_sum_to_the_whole_batch() {
    let fixture = fixture();
    let set = &fixture["loss_inputs"]["off_policy"];
    let device = Device::default();
    let rows_of = |key: &str, range: std::ops::Range<usize>| {
        let all = rows(&set[key]);
        Value::from(all[range].to_vec())
    };
    let batch = |range: std::ops::Range<usize>| PolicyLossInputs {
        per_token_logps: tensor2(&rows_of("per_token_logps", range.clone()), &device),
        entropies: tensor2(&rows_of("entropies", range.clone()), &device),
        old_per_token_logps: Some(tensor2(
            &rows_of("old_per_token_logps", range.clone()),
            &device,
        )),
        ref_per_token_logps: Some(tensor2(
            &rows_of("ref_per_token_logps", range.clone()),
            &device,
        )),
        advantages: tensor1(
            &Value::from(numbers(&set["advantages"])[range.clone()].to_vec()),
            &device,
        ),
        mask: tensor2(&rows_of("completion_mask", range), &device),
    };
    let tokens: f64 = rows(&set["completion_mask"]).concat().iter().sum();
    let rows_total = numbers(&set["advantages"]).len();
    // `ga` counts every process's micro-batches (the loop's summed items).
    let loss = |cfg: &PolicyLossConfig, inputs, ga, spg, processes| {
        let norm = LossNormalizer {
            current_gradient_accumulation_steps: ga,
            steps_per_generation: spg,
            num_items_in_batch: tokens,
            processes,
        };
        f64::from(
            policy_loss(cfg, inputs, &norm, &SingleProcess)
                .unwrap()
                .loss
                .into_scalar::<f32>(),
        )
    };
    for loss_type in [
        LossType::Grpo,
        LossType::DrGrpo,
        LossType::Dapo,
        LossType::Luspo,
        LossType::Cispo,
    ] {
        let cfg = PolicyLossConfig {
            loss_type,
            beta: 0.04,
            max_completion_length: 8,
            ..Default::default()
        };
        let whole = loss(&cfg, batch(0..rows_total), 1, 1, 1);
        let half = rows_total / 2;
        let split =
            loss(&cfg, batch(0..half), 2, 2, 1) + loss(&cfg, batch(half..rows_total), 2, 2, 1);
        assert_close(
            split,
            whole,
            ATOL,
            &format!("{loss_type}: two micro-batches vs one"),
        );
        // Two processes with one micro-batch each: their summed losses are the whole's.
        let ranks =
            loss(&cfg, batch(0..half), 2, 1, 2) + loss(&cfg, batch(half..rows_total), 2, 1, 2);
        assert_close(
            ranks,
            whole,
            ATOL,
            &format!("{loss_type}: two processes vs one"),
        );
    }
}
