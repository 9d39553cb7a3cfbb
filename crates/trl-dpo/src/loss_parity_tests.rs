//! Every DPO loss variant against TRL 1.16's `_compute_loss` on fixed log-probs
//! (fixtures/expected/dpo/losses.json, from reference/dpo_reference.py), and the
//! configurations TRL rejects.

use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;
use trl_core::parity::repo_root;
use trl_core::train::take_known_keys;

use crate::DpoConfig;
use crate::loss::{PairLogps, ld_token_weights, pair_loss, wpo_weights};

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
