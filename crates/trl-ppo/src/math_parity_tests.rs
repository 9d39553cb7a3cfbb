//! The pure functions against TRL 1.12's own on recorded inputs
//! (fixtures/expected/ppo/math.json, from reference/ppo_reference.py).

use burn::tensor::{Bool, Device, Tensor, TensorData};
use serde_json::Value;
use trl_core::parity::repo_root;

use crate::config::KlEstimator;
use crate::gae::{RewardSettings, RolloutInputs, rollout_targets};
use crate::loss::{HostLossInputs, LossInputs, LossSettings, loss_stats, ppo_losses};
use crate::masked::{masked_mean, masked_var, masked_whiten};
use crate::response::{
    apply_missing_eos_penalty, contains_eos, first_true_indices, sequence_lengths,
    truncate_response,
};
use crate::rollout::Rollout;
use crate::stats::rollout_metrics;

/// Identical inputs: only float32 rounding (and summation order) separates us from torch.
const RTOL: f64 = 1e-5;
const ATOL: f64 = 1e-6;

fn fixture() -> Value {
    let path = repo_root().join("fixtures/expected/ppo/math.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

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
fn bools(v: &Value) -> Vec<Vec<bool>> {
    let row = |r: &Value| {
        r.as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_bool().unwrap())
            .collect()
    };
    v.as_array().unwrap().iter().map(row).collect()
}
fn ids(v: &Value) -> Vec<Vec<u32>> {
    let row = |r: &Value| {
        r.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    v.as_array().unwrap().iter().map(row).collect()
}

fn close(what: &str, ours: f64, theirs: f64) {
    let tol = ATOL + RTOL * theirs.abs();
    assert!(
        (ours - theirs).abs() <= tol || (ours.is_nan() && theirs.is_nan()),
        "{what}: ours {ours} vs TRL {theirs}"
    );
}

fn close_matrix(what: &str, ours: &[Vec<f32>], theirs: &Value) {
    let theirs = matrix(theirs);
    assert_eq!(ours.len(), theirs.len(), "{what}: rows");
    for (r, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        for (t, (x, y)) in a.iter().zip(b).enumerate() {
            close(&format!("{what}[{r}][{t}]"), *x as f64, *y as f64);
        }
    }
}

#[test]
fn masked_statistics_match_trl() {
    for case in fixture()["masked"].as_array().unwrap() {
        let (values, mask) = (matrix(&case["values"]), bools(&case["mask"]));
        close(
            "mean",
            masked_mean(&values, &mask),
            case["mean"].as_f64().unwrap(),
        );
        close(
            "var",
            masked_var(&values, &mask, true).unwrap(),
            case["var_unbiased"].as_f64().unwrap(),
        );
        close(
            "var biased",
            masked_var(&values, &mask, false).unwrap(),
            case["var_biased"].as_f64().unwrap(),
        );
        close_matrix(
            "whiten",
            &masked_whiten(&values, &mask, true).unwrap(),
            &case["whiten"],
        );
        close_matrix(
            "whiten no shift",
            &masked_whiten(&values, &mask, false).unwrap(),
            &case["whiten_no_shift"],
        );
    }
}

#[test]
fn first_true_indices_and_truncation_match_trl() {
    let fixture = fixture();
    for case in fixture["first_true"].as_array().unwrap() {
        let expected: Vec<usize> = case["indices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(first_true_indices(&bools(&case["bools"])), expected);
    }
    for case in fixture["truncate"].as_array().unwrap() {
        let stop = case["stop_token_id"].as_u64().unwrap() as u32;
        let pad = case["pad_token_id"].as_u64().unwrap() as u32;
        assert_eq!(
            truncate_response(stop, pad, &ids(&case["responses"])),
            ids(&case["truncated"])
        );
    }
}

fn reward_settings(s: &Value) -> RewardSettings {
    RewardSettings {
        kl_coef: s["kl_coef"].as_f64().unwrap(),
        kl_estimator: serde_json::from_value::<KlEstimator>(s["kl_estimator"].clone()).unwrap(),
        gamma: s["gamma"].as_f64().unwrap(),
        lam: s["lam"].as_f64().unwrap(),
        whiten_rewards: s["whiten_rewards"].as_bool().unwrap(),
    }
}

#[test]
fn rollout_targets_match_trl_train_loop() {
    for case in fixture()["rollout"].as_array().unwrap() {
        let (s, x, out) = (&case["settings"], &case["inputs"], &case["outputs"]);
        let pad = s["pad_token_id"].as_u64().unwrap() as u32;
        let eos = s["eos_token_id"].as_u64().map(|e| e as u32);
        let responses = ids(&x["responses"]);
        let post = match s["stop_token_id"].as_u64() {
            Some(stop) => truncate_response(stop as u32, pad, &responses),
            None => responses.clone(),
        };
        assert_eq!(post, ids(&out["postprocessed_responses"]));
        let lengths = sequence_lengths(&post, pad);
        let expected: Vec<i64> = out["sequence_lengths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(lengths, expected);
        let mut scores = floats(&x["scores"]);
        apply_missing_eos_penalty(
            &mut scores,
            &contains_eos(&post, eos),
            s["missing_eos_penalty"].as_f64(),
        );
        close_matrix(
            "scores",
            &[scores.clone()],
            &Value::Array(vec![out["scores"].clone()]),
        );
        let inputs = RolloutInputs {
            logprobs: matrix(&x["logprobs"]),
            ref_logprobs: matrix(&x["ref_logprobs"]),
            values: matrix(&x["values"]),
            scores,
            sequence_lengths: lengths,
        };
        let t = rollout_targets(inputs, &reward_settings(s)).unwrap();
        let rollout = Rollout {
            context_length: 0,
            query_responses: responses.clone(),
            scores: floats(&out["scores"]),
            targets: t.clone(),
        };
        let metrics: std::collections::BTreeMap<String, f64> =
            rollout_metrics(&rollout, eos).into_iter().collect();
        for (ours, theirs) in [
            ("objective/kl", "objective_kl"),
            ("objective/entropy", "objective_entropy"),
            ("objective/non_score_reward", "objective_non_score_reward"),
            ("objective/rlhf_reward", "objective_rlhf_reward"),
            ("objective/scores", "objective_scores"),
            ("val/num_eos_tokens", "num_eos_tokens"),
        ] {
            close(ours, metrics[ours], out[theirs].as_f64().unwrap());
        }
        assert_eq!(t.padding_mask, bools(&out["padding_mask"]));
        assert_eq!(t.padding_mask_p1, bools(&out["padding_mask_p1"]));
        for (name, ours) in [
            ("logprobs", &t.logprobs),
            ("values", &t.values),
            ("kl", &t.kl),
            ("non_score_reward", &t.non_score_reward),
            ("rewards", &t.rewards),
            ("advantages", &t.advantages),
            ("returns", &t.returns),
        ] {
            close_matrix(name, ours, &out[name]);
        }
    }
}

fn tensor(rows: &[Vec<f32>], device: &Device) -> Tensor<2> {
    let (r, c) = (rows.len(), rows[0].len());
    Tensor::from_data(TensorData::new(rows.concat(), [r, c]), device)
}
fn mask_tensor(rows: &[Vec<bool>], device: &Device) -> Tensor<2, Bool> {
    let (r, c) = (rows.len(), rows[0].len());
    Tensor::from_data(TensorData::new(rows.concat(), [r, c]), device)
}

#[test]
fn clipped_losses_and_their_statistics_match_trl() {
    let device = Device::default();
    for case in fixture()["loss"].as_array().unwrap() {
        let (s, x, out) = (&case["settings"], &case["inputs"], &case["outputs"]);
        let settings = LossSettings {
            cliprange: s["cliprange"].as_f64().unwrap(),
            cliprange_value: s["cliprange_value"].as_f64().unwrap(),
            vf_coef: s["vf_coef"].as_f64().unwrap(),
        };
        let m = |k: &str| matrix(&x[k]);
        let (pm, pm1) = (bools(&x["padding_mask"]), bools(&x["padding_mask_p1"]));
        let losses = ppo_losses(
            LossInputs {
                new_logprobs: tensor(&m("new_logprobs"), &device),
                vpred: tensor(&m("vpred"), &device),
                old_logprobs: tensor(&m("mb_logprobs"), &device),
                old_values: tensor(&m("mb_values"), &device),
                returns: tensor(&m("mb_return"), &device),
                advantages: tensor(&m("mb_advantage"), &device),
                padding_mask: mask_tensor(&pm, &device),
                padding_mask_p1: mask_tensor(&pm1, &device),
            },
            &settings,
        );
        let scalar = |t: Tensor<1>| t.into_scalar::<f64>();
        close("loss", scalar(losses.loss), out["loss"].as_f64().unwrap());
        close(
            "pg_loss",
            scalar(losses.pg_loss),
            out["pg_loss"].as_f64().unwrap(),
        );
        close(
            "vf_loss",
            scalar(losses.vf_loss),
            out["vf_loss"].as_f64().unwrap(),
        );
        let (nl, vp, ol, ov, rt, ad) = (
            m("new_logprobs"),
            m("vpred"),
            m("mb_logprobs"),
            m("mb_values"),
            m("mb_return"),
            m("mb_advantage"),
        );
        let stats = loss_stats(
            &HostLossInputs {
                new_logprobs: &nl,
                vpred: &vp,
                old_logprobs: &ol,
                old_values: &ov,
                returns: &rt,
                advantages: &ad,
                padding_mask: &pm,
                padding_mask_p1: &pm1,
            },
            &settings,
        );
        close(
            "pg_clipfrac",
            stats.pg_clipfrac,
            out["pg_clipfrac"].as_f64().unwrap(),
        );
        close(
            "vf_clipfrac",
            stats.vf_clipfrac,
            out["vf_clipfrac"].as_f64().unwrap(),
        );
        close(
            "approxkl",
            stats.approxkl,
            out["approxkl"].as_f64().unwrap(),
        );
        close(
            "ratio_mean",
            stats.ratio_mean,
            out["ratio_mean"].as_f64().unwrap(),
        );
    }
}
