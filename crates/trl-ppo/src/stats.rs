//! The per-rollout metrics TRL 1.12's PPOTrainer logs (`ppo_trainer.py` l.881-905), from a
//! scored rollout; the per-micro-batch ones come from [`crate::loss::loss_stats`].

use crate::rollout::Rollout;

/// `objective/kl`, `objective/entropy`, `objective/non_score_reward`, `objective/rlhf_reward`,
/// `objective/scores` and `val/num_eos_tokens` of one rollout batch.
pub fn rollout_metrics(rollout: &Rollout, eos_token_id: Option<u32>) -> Vec<(String, f64)> {
    let t = &rollout.targets;
    let rows = t.kl.len().max(1) as f64;
    let row_sum_mean = |m: &[Vec<f32>]| {
        m.iter()
            .map(|r| r.iter().map(|&v| v as f64).sum::<f64>())
            .sum::<f64>()
            / rows
    };
    let mean_kl = row_sum_mean(&t.kl);
    // padding slots hold INVALID_LOGPROB; they are left out, as TRL masks them
    let entropy: f64 = t
        .logprobs
        .iter()
        .zip(&t.padding_mask)
        .map(|(r, m)| {
            r.iter()
                .zip(m)
                .filter(|(_, pad)| !**pad)
                .map(|(&lp, _)| -(lp as f64))
                .sum::<f64>()
        })
        .sum::<f64>()
        / rows;
    let non_score = row_sum_mean(&t.non_score_reward);
    let scores =
        rollout.scores.iter().map(|&s| s as f64).sum::<f64>() / rollout.scores.len().max(1) as f64;
    let eos_tokens = (0..rollout.query_responses.len())
        .map(|r| {
            rollout
                .response(r)
                .iter()
                .filter(|&&id| Some(id) == eos_token_id)
                .count()
        })
        .sum::<usize>();
    vec![
        ("objective/kl".into(), mean_kl),
        ("objective/entropy".into(), entropy),
        ("objective/non_score_reward".into(), non_score),
        ("objective/rlhf_reward".into(), non_score + scores),
        ("objective/scores".into(), scores),
        ("val/num_eos_tokens".into(), eos_tokens as f64),
    ]
}

/// torch's `var()` (Bessel-corrected; NaN for fewer than two values).
pub fn unbiased_var(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
}
