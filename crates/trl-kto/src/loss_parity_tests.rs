//! KTO's pure loss against TRL 1.16's `_compute_loss` on fixed per-sequence log-probs
//! (fixtures/expected/kto/losses.json, from reference/kto_reference.py).

use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;
use trl_core::parity::{assert_close_slices, read_fixture};

use crate::loss::{KtoLossType, kto_losses};

fn floats(v: &Value) -> Vec<f64> {
    serde_json::from_value(v.clone()).unwrap()
}

/// The pure loss on TRL's fixed per-sequence log-probs (losses.json): per-example losses in
/// batch order, the clamped KL baseline, and the mean.
#[test]
fn every_loss_case_matches_trl_on_fixed_logps() {
    let fixture = read_fixture("fixtures/expected/kto/losses.json");
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 8, "only {} cases", cases.len());
    let device = Device::default();
    let tensor = |v: Vec<f64>| {
        let n = v.len();
        Tensor::<1>::from_data(
            TensorData::new(v.into_iter().map(|x| x as f32).collect(), [n]),
            &device,
        )
    };
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let x = &case["inputs"];
        let kind: KtoLossType = serde_json::from_value(x["loss_type"].clone()).unwrap();
        let labels: Vec<bool> = serde_json::from_value(x["label"].clone()).unwrap();
        let ratio = |p: &str, r: &str| -> Vec<f64> {
            floats(&x[p])
                .iter()
                .zip(floats(&x[r]))
                .map(|(a, b)| a - b)
                .collect()
        };
        let logratios = ratio("policy_logps", "ref_logps");
        let kl = match kind {
            KtoLossType::Kto => {
                let d = ratio("policy_KL_logps", "ref_KL_logps");
                (d.iter().sum::<f64>() / d.len() as f64).max(0.0)
            }
            KtoLossType::ApoZeroUnpaired => 0.0,
        };
        let pick = |want: bool| -> Vec<f64> {
            logratios
                .iter()
                .zip(&labels)
                .filter(|(_, l)| **l == want)
                .map(|(r, _)| *r)
                .collect()
        };
        let (chosen, rejected) = (pick(true), pick(false));
        let parts = kto_losses(
            kind,
            (!chosen.is_empty()).then(|| tensor(chosen)),
            (!rejected.is_empty()).then(|| tensor(rejected)),
            tensor(vec![kl]),
            x["beta"].as_f64().unwrap(),
            x["desirable_weight"].as_f64().unwrap(),
            x["undesirable_weight"].as_f64().unwrap(),
        );
        let values: Vec<Vec<f64>> = parts
            .into_iter()
            .map(|t| {
                t.into_data()
                    .try_to_vec::<f32>()
                    .unwrap()
                    .into_iter()
                    .map(f64::from)
                    .collect()
            })
            .collect();
        // Desirable losses come first, then undesirable: put them back in batch order.
        let mut desirable = values.first().cloned().unwrap_or_default().into_iter();
        let mut undesirable = values.last().cloned().unwrap_or_default().into_iter();
        let all_one_side = labels.iter().all(|&l| l) || labels.iter().all(|&l| !l);
        let per_example: Vec<f64> = labels
            .iter()
            .map(|&l| {
                let next = if l || all_one_side {
                    desirable.next()
                } else {
                    undesirable.next()
                };
                next.expect("one loss per example")
            })
            .collect();
        let out = &case["outputs"];
        assert_close_slices(
            &format!("{name}: per-example loss"),
            &per_example,
            &floats(&out["per_example_loss"]),
            1e-5,
            1e-7,
        );
        let mean = per_example.iter().sum::<f64>() / per_example.len() as f64;
        assert_close_slices(
            &format!("{name}: loss"),
            &[mean],
            &[out["loss"].as_f64().unwrap()],
            1e-5,
            1e-7,
        );
        assert_close_slices(
            &format!("{name}: kl"),
            &[kl],
            &[out["kl"].as_f64().unwrap()],
            1e-6,
            1e-9,
        );
    }
}
