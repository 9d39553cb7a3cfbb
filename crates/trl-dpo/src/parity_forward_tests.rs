//! TRL's first forward (`first_batch_forward` in fixtures/expected/dpo/*.json): the per-token
//! outputs of the untrained policy and reference on the first micro-batch, against ours.

use serde_json::Value;
use trl_core::completions::CompletionBatch;
use trl_core::model::CausalLm;
use trl_core::parity::{assert_close_rows, assert_close_slices, token_outputs};

/// Relative tolerance of per-token values, as for the metrics they are averaged into.
const RTOL: f64 = 2e-2;
/// Absolute floor: tokens the tiny model predicts almost surely have entropies of ~1e-6.
const FLOOR: f64 = 1e-4;

/// Compares the policy's per-token log-probs, entropy, mean logits and top-1 hits, their
/// chosen/rejected sums, and the reference's per-token log-probs (absent when TRL
/// precomputed them) on `batch` (`pairs` chosen rows, then as many rejected ones).
/// `ld_alpha` runs weight tokens, so their sums are not plain sums and are not compared here.
pub(crate) fn check_first_forward(
    name: &str,
    case: &Value,
    batch: &CompletionBatch,
    pairs: usize,
    (model, reference): (&CausalLm, Option<&CausalLm>),
    weighted_sums: bool,
) {
    let want = &case["first_batch_forward"];
    let ours = token_outputs(model, batch).unwrap();
    let what = |key: &str| format!("{name}: first forward {key}");
    for (key, got) in [
        ("policy_log_probs", &ours.log_probs),
        ("policy_entropy", &ours.entropy),
        ("policy_mean_logits", &ours.mean_logits),
    ] {
        assert_close_rows(&what(key), got, &want[key], RTOL, FLOOR);
    }
    // which token is the argmax is exact, not approximately right
    assert_close_rows(
        &what("policy_is_top1"),
        &ours.is_top1,
        &want["policy_is_top1"],
        0.0,
        0.0,
    );
    // the chosen/rejected sums of each model's per-token log-probs
    let check_sums = |log_probs: &[Vec<f64>], keys: [&str; 2]| {
        if weighted_sums {
            return;
        }
        let sums: Vec<f64> = log_probs.iter().map(|r| r.iter().sum()).collect();
        let (chosen, rejected) = sums.split_at(pairs.min(sums.len()));
        for (key, got) in keys.into_iter().zip([chosen, rejected]) {
            let want: Vec<f64> = serde_json::from_value(want[key].clone()).unwrap();
            assert_close_slices(&what(key), got, &want, RTOL, FLOOR);
        }
    };
    check_sums(&ours.log_probs, ["chosen_logps", "rejected_logps"]);
    if let Some(reference) = reference {
        let reference = token_outputs(reference, batch).unwrap();
        check_sums(
            &reference.log_probs,
            ["ref_chosen_logps", "ref_rejected_logps"],
        );
        assert_close_rows(
            &what("reference_log_probs"),
            &reference.log_probs,
            &want["reference_log_probs"],
            RTOL,
            FLOOR,
        );
    } else {
        assert!(
            want.get("reference_log_probs").is_none(),
            "{name}: TRL ran a reference model, we did not"
        );
    }
}
