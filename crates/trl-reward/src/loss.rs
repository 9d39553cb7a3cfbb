//! The reward-model objective and its logged statistics, as pure functions of the scores.

use burn::tensor::Tensor;
use burn::tensor::activation::log_sigmoid;

/// Scores of one micro-batch of pairs, split from one concatenated forward pass.
#[derive(Debug, Clone)]
pub struct PairScores {
    /// `[pairs]`
    pub chosen: Tensor<1>,
    /// `[pairs]`
    pub rejected: Tensor<1>,
    /// `[pairs]`: the dataset's `margin` column, when it has one.
    pub margin: Option<Tensor<1>>,
}

/// The Bradley–Terry loss, averaged over the pairs (shape `[1]`):
/// `-mean(logsigmoid(r_chosen - r_rejected - margin))`, as in InstructGPT's reward model
/// (Ouyang et al. 2022, arXiv:2203.02155, eq. 1) with Llama 2's margin (Touvron et al. 2023,
/// arXiv:2307.09288, eq. 2). With `center_rewards_coefficient` c, adds
/// `c * mean((r_chosen + r_rejected)^2)` (Eisenstein et al. 2023, arXiv:2312.09244, eq. 2).
pub fn bradley_terry_loss(
    scores: &PairScores,
    center_rewards_coefficient: Option<f64>,
) -> Tensor<1> {
    let mut difference = scores.chosen.clone() - scores.rejected.clone();
    if let Some(margin) = &scores.margin {
        difference = difference - margin.clone();
    }
    let mut loss = log_sigmoid(difference).mean().neg();
    if let Some(coefficient) = center_rewards_coefficient {
        let sum = scores.chosen.clone() + scores.rejected.clone();
        loss = loss + (sum.clone() * sum).mean() * coefficient;
    }
    loss.reshape([1])
}

/// What TRL logs about the scores of one micro-batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RewardStats {
    /// Over all `2 * pairs` scores.
    pub min_reward: f64,
    pub mean_reward: f64,
    pub max_reward: f64,
    /// Share of pairs with `r_chosen > r_rejected` (a tie counts as wrong).
    pub accuracy: f64,
    /// `mean(r_chosen - r_rejected)`; the `margin` column is not subtracted.
    pub margin: f64,
}

/// TRL's metrics of one micro-batch from the host copies of its scores.
pub fn reward_stats(chosen: &[f32], rejected: &[f32]) -> RewardStats {
    let all = chosen.iter().chain(rejected).map(|&r| r as f64);
    let count = (chosen.len() + rejected.len()).max(1) as f64;
    let pairs = chosen.len().max(1) as f64;
    RewardStats {
        min_reward: all.clone().fold(f64::INFINITY, f64::min),
        mean_reward: all.clone().sum::<f64>() / count,
        max_reward: all.fold(f64::NEG_INFINITY, f64::max),
        accuracy: chosen.iter().zip(rejected).filter(|(c, r)| c > r).count() as f64 / pairs,
        margin: chosen
            .iter()
            .zip(rejected)
            .map(|(&c, &r)| (c - r) as f64)
            .sum::<f64>()
            / pairs,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use burn::tensor::{Device, TensorData};
    use serde_json::Value;

    use super::*;

    fn tensor(values: &[f64], device: &Device) -> Tensor<1> {
        let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        let len = values.len();
        Tensor::from_data(TensorData::new(values, [len]), device)
    }

    fn scores(chosen: &[f64], rejected: &[f64], margin: Option<&[f64]>) -> PairScores {
        let device = Device::default();
        PairScores {
            chosen: tensor(chosen, &device),
            rejected: tensor(rejected, &device),
            margin: margin.map(|m| tensor(m, &device)),
        }
    }

    fn loss_of(scores: &PairScores, center: Option<f64>) -> f64 {
        bradley_terry_loss(scores, center).into_scalar::<f64>()
    }

    #[test]
    fn equal_scores_cost_ln2() {
        let loss = loss_of(&scores(&[0.3, -1.0], &[0.3, -1.0], None), None);
        assert!((loss - 2f64.ln()).abs() < 1e-6, "{loss}");
    }

    #[test]
    fn a_margin_is_a_shift_of_the_difference() {
        let shifted = loss_of(&scores(&[1.0], &[0.0], Some(&[0.5])), None);
        let plain = loss_of(&scores(&[0.5], &[0.0], None), None);
        assert!((shifted - plain).abs() < 1e-6);
    }

    #[test]
    fn centering_adds_the_mean_squared_sum() {
        let plain = loss_of(&scores(&[1.0, 2.0], &[3.0, -1.0], None), None);
        let centered = loss_of(&scores(&[1.0, 2.0], &[3.0, -1.0], None), Some(0.1));
        // mean((1 + 3)^2, (2 - 1)^2) = 8.5
        assert!((centered - plain - 0.85).abs() < 1e-5);
    }

    #[test]
    fn saturated_differences_stay_finite() {
        let loss = loss_of(&scores(&[50.0, -50.0], &[-50.0, 50.0], None), None);
        assert!((loss - 50.0).abs() < 1e-4, "{loss}");
    }

    #[test]
    fn ties_are_not_accurate() {
        let stats = reward_stats(&[1.0, 2.0], &[1.0, 0.0]);
        assert_eq!(stats.accuracy, 0.5);
        assert_eq!((stats.min_reward, stats.max_reward), (0.0, 2.0));
        assert_eq!(stats.margin, 1.0);
    }

    /// Every case of `fixtures/expected/reward/losses.json`: TRL's own `compute_loss` on fixed
    /// scores (reference/reward_reference.py).
    #[test]
    fn matches_trl_compute_loss() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/expected/reward/losses.json");
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let floats = |v: &Value| -> Vec<f64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        for case in expected["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let inputs = &case["inputs"];
            let chosen = floats(&inputs["rewards_chosen"]);
            let rejected = floats(&inputs["rewards_rejected"]);
            let margin = (!inputs["margin"].is_null()).then(|| floats(&inputs["margin"]));
            let center = inputs["center_rewards_coefficient"].as_f64();
            let loss = loss_of(&scores(&chosen, &rejected, margin.as_deref()), center);
            let want = case["outputs"]["loss"].as_f64().unwrap();
            assert!(
                (loss - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{name}: loss {loss} vs {want}"
            );

            let as_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
            let stats = reward_stats(&as_f32(&chosen), &as_f32(&rejected));
            let metrics = &case["outputs"]["metrics"];
            for (key, got) in [
                ("min_reward", stats.min_reward),
                ("mean_reward", stats.mean_reward),
                ("max_reward", stats.max_reward),
                ("accuracy", stats.accuracy),
                ("margin", stats.margin),
            ] {
                let want = metrics[key].as_f64().unwrap();
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{name}: {key} {got} vs {want}"
                );
            }
        }
    }
}
