//! GRPO's and RLOO's advantages and reward metrics against TRL 1.16's
//! `_generate_and_score_completions` (fixtures/expected/grpo_loss.json, from
//! reference/grpo_loss_reference.py).

use serde_json::Value;

use super::*;
use crate::loss::tests::{assert_close, fixture, number, numbers, rows};

/// TRL computes in float32: a reward of ~2 carries ~2e-7 of rounding, which a group mean can
/// leave as the whole of a small advantage.
const ATOL: f64 = 2e-6;

fn names(case: &Value) -> Vec<String> {
    let funcs = case["reward_weights"].as_array().unwrap().len();
    (0..funcs).map(|i| format!("reward_{i}")).collect()
}

fn check(case: &Value, got: &Advantages) {
    let name = case["name"].as_str().unwrap();
    let want = numbers(&case["advantages"]);
    assert_eq!(got.advantages.len(), want.len(), "{name}");
    for (i, (&g, &w)) in got.advantages.iter().zip(&want).enumerate() {
        assert_close(g, w, ATOL, &format!("{name}: advantage[{i}]"));
    }
    let metrics = got.metrics(&names(case));
    let logged = case["metrics"].as_object().unwrap();
    assert_eq!(metrics.len(), logged.len(), "{name}: {metrics:?}");
    for (key, value) in metrics {
        let want = logged
            .get(&key)
            .unwrap_or_else(|| panic!("{name}: TRL does not log {key}"));
        assert_close(value, number(want), ATOL, &format!("{name}: {key}"));
    }
}

fn scale(s: &str) -> ScaleRewards {
    serde_json::from_value(Value::String(s.into())).unwrap()
}

fn aggregation(s: &str) -> MultiObjectiveAggregation {
    serde_json::from_value(Value::String(s.into())).unwrap()
}

#[test]
fn grpo_advantages_match_trl() {
    let fixture = fixture();
    for case in fixture["grpo_advantage_cases"].as_array().unwrap() {
        let got = grpo_advantages(
            &rows(&case["rewards_per_func"]),
            &numbers(&case["reward_weights"]),
            case["num_generations"].as_u64().unwrap() as usize,
            scale(case["scale_rewards"].as_str().unwrap()),
            aggregation(case["multi_objective_aggregation"].as_str().unwrap()),
        )
        .unwrap();
        check(case, &got);
    }
}

#[test]
fn rloo_advantages_match_trl() {
    let fixture = fixture();
    for case in fixture["rloo_advantage_cases"].as_array().unwrap() {
        let cfg = RlooAdvantageConfig {
            beta: number(&case["beta"]),
            reward_clip_range: case["reward_clip_range"]
                .as_array()
                .map(|r| (number(&r[0]), number(&r[1]))),
            normalize_advantages: case["normalize_advantages"].as_bool().unwrap(),
        };
        let flat = |key: &str| -> Vec<f32> {
            rows(&case[key])
                .concat()
                .iter()
                .map(|&x| x as f32)
                .collect()
        };
        let mask = rows(&case["completion_mask"]);
        let kl = (cfg.beta != 0.0).then(|| {
            let (old, reference) = (flat("old_per_token_logps"), flat("ref_per_token_logps"));
            SequenceKl::from_token_logps(&old, &reference, &flat("completion_mask"), mask[0].len())
        });
        let got = rloo_advantages(
            &rows(&case["rewards_per_func"]),
            &numbers(&case["reward_weights"]),
            case["num_generations"].as_u64().unwrap() as usize,
            &cfg,
            kl.as_ref(),
        )
        .unwrap();
        check(case, &got);
    }
}

#[test]
fn defaults_are_rloo_config_defaults() {
    let fixture = fixture();
    let d = &fixture["rloo_config_defaults"];
    let cfg = RlooAdvantageConfig::default();
    assert_eq!(cfg.beta, number(&d["beta"]));
    assert_eq!(
        cfg.normalize_advantages,
        d["normalize_advantages"].as_bool().unwrap()
    );
    assert!(cfg.reward_clip_range.is_none() && d["reward_clip_range"].is_null());
}

#[test]
fn unscorable_rows_get_zero_advantage_and_nan_reward() {
    let nan = f64::NAN;
    let table = vec![vec![1.0], vec![nan], vec![0.0], vec![2.0]];
    let got = grpo_advantages(
        &table,
        &[1.0],
        4,
        ScaleRewards::Group,
        MultiObjectiveAggregation::SumThenNormalize,
    )
    .unwrap();
    assert_eq!(got.advantages[1], 0.0);
    assert!(got.rewards[1].is_nan());
    // the other three are centred on their own mean (1.0)
    assert!((got.advantages[0]).abs() < 1e-12 && got.advantages[3] > 0.0);
}

#[test]
fn bad_shapes_are_errors_naming_the_option() {
    let table = vec![vec![1.0, 2.0]; 6];
    let sum = MultiObjectiveAggregation::SumThenNormalize;
    let err = grpo_advantages(&table, &[1.0, 1.0], 4, ScaleRewards::Group, sum).unwrap_err();
    assert!(err.to_string().contains("num_generations"), "{err}");
    let err = grpo_advantages(&table, &[1.0], 2, ScaleRewards::Group, sum).unwrap_err();
    assert!(err.to_string().contains("reward_weights"), "{err}");
    let cfg = RlooAdvantageConfig::default();
    let err = rloo_advantages(&table, &[1.0, 1.0], 2, &cfg, None).unwrap_err();
    assert!(err.to_string().contains("sequence KL"), "{err}");
    let clip = RlooAdvantageConfig {
        beta: 0.0,
        reward_clip_range: Some((1.0, 0.0)),
        ..cfg
    };
    let err = rloo_advantages(&table, &[1.0, 1.0], 2, &clip, None).unwrap_err();
    assert!(err.to_string().contains("reward_clip_range"), "{err}");
}
