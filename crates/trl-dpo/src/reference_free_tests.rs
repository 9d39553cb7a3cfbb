//! SimPO and ORPO against TRL 1.16's own trainers (reference/reference_free_reference.py):
//! `trl.experimental.cpo.CPOTrainer(loss_type="simpo")` and `trl.experimental.orpo.ORPOTrainer`
//! on one fixed batch (fixtures/expected/dpo/reference_free_losses.json).
//!
//! The inputs are per-token log-probs; the sums, token counts and NLLs are derived here the way
//! the trainer derives them and checked against what TRL's trainers computed, then fed to
//! [`pair_loss`].

use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;
use trl_core::parity::repo_root;

use crate::loss::{
    DpoLossType, FDivergence, LossParams, PairLogps, logged_rewards, orpo_log_odds, pair_loss,
};

/// Identical inputs: only float32 rounding separates us from TRL.
const RTOL: f64 = 1e-5;

struct Fixture {
    json: Value,
    pairs: usize,
    /// `[2B][T-1]`, zero off the attended positions.
    token_logps: Vec<Vec<f64>>,
    shift_completion_mask: Vec<Vec<f64>>,
    shift_attention_mask: Vec<Vec<f64>>,
}

fn load() -> Fixture {
    let path = repo_root().join("fixtures/expected/dpo/reference_free_losses.json");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let inputs = &json["inputs"];
    let matrix =
        |key: &str| -> Vec<Vec<f64>> { serde_json::from_value(inputs[key].clone()).unwrap() };
    Fixture {
        pairs: inputs["batch_pairs"].as_u64().unwrap() as usize,
        token_logps: matrix("token_logps"),
        shift_completion_mask: matrix("shift_completion_mask"),
        shift_attention_mask: matrix("shift_attention_mask"),
        json,
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn tensor1(values: &[f64], device: &Device) -> Tensor<1> {
    let v: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(v, [values.len()]), device)
}

fn host(t: Tensor<1>) -> Vec<f64> {
    t.into_data()
        .try_to_vec::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

fn close(got: f64, want: f64, floor: f64) -> bool {
    (got - want).abs() <= RTOL * want.abs().max(floor)
}

fn assert_close(what: &str, got: f64, want: f64) {
    assert!(
        close(got, want, 1e-3),
        "{what}: {got} vs TRL {want} (rel {:.2e})",
        (got - want).abs() / want.abs()
    );
}

fn assert_all_close(what: &str, got: &[f64], want: &[f64]) {
    assert!(!want.is_empty(), "{what}: nothing to compare");
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_close(&format!("{what}[{i}]"), *g, *w);
    }
}

impl Fixture {
    /// Sum of token log-probs under `mask`, per row (float32 like the trainer).
    fn masked_sums(&self, mask: &[Vec<f64>]) -> Vec<f64> {
        self.token_logps
            .iter()
            .zip(mask)
            .map(|(r, m)| {
                r.iter()
                    .zip(m)
                    .map(|(a, b)| (*a as f32) * (*b as f32))
                    .sum::<f32>() as f64
            })
            .collect()
    }

    fn counts(mask: &[Vec<f64>]) -> Vec<f64> {
        mask.iter().map(|m| m.iter().sum()).collect()
    }

    /// Token-mean NLL of the chosen rows under `mask`.
    fn chosen_nll(&self, mask: &[Vec<f64>]) -> f64 {
        let sums = self.masked_sums(mask);
        let counts = Self::counts(mask);
        -sums[..self.pairs].iter().sum::<f64>() / counts[..self.pairs].iter().sum::<f64>()
    }

    /// What the DPO trainer builds: completion sums, completion token counts, and the two NLLs
    /// given by the caller (completion-only for `sft`, whole chosen sequence for ORPO).
    fn pair_logps(&self, sft_nll: f64, full_nll: f64, device: &Device) -> PairLogps {
        let b = self.pairs;
        let sums = self.masked_sums(&self.shift_completion_mask);
        let tokens: Vec<f64> = Self::counts(&self.shift_completion_mask)
            .iter()
            .map(|&t| t.max(1.0))
            .collect();
        PairLogps {
            chosen: tensor1(&sums[..b], device),
            rejected: tensor1(&sums[b..], device),
            ref_chosen: tensor1(&vec![0.0; b], device),
            ref_rejected: tensor1(&vec![0.0; b], device),
            chosen_tokens: tensor1(&tokens[..b], device),
            rejected_tokens: tensor1(&tokens[b..], device),
            sft_nll: tensor1(&[sft_nll], device),
            chosen_full_nll: tensor1(&[full_nll], device),
        }
    }
}

fn params(beta: f64, label_smoothing: f64, simpo_gamma: f64) -> LossParams {
    LossParams {
        beta,
        label_smoothing,
        f_divergence: FDivergence::ReverseKl,
        f_alpha_divergence_coef: 0.5,
        discopop_tau: 0.05,
        simpo_gamma,
    }
}

/// Our derivation of the inputs (sums over the shifted completion mask, counts, per-token means,
/// both NLL definitions) agrees with what TRL's trainers computed from the same logits.
#[test]
fn reference_free_inputs_match_trl_definitions() {
    let f = load();
    let d = &f.json["inputs"]["derived"];
    let b = f.pairs;
    let sums = f.masked_sums(&f.shift_completion_mask);
    let counts = Fixture::counts(&f.shift_completion_mask);
    assert_all_close(
        "chosen_sum_logps",
        &sums[..b],
        &floats(&d["chosen_sum_logps"]),
    );
    assert_all_close(
        "rejected_sum_logps",
        &sums[b..],
        &floats(&d["rejected_sum_logps"]),
    );
    assert_eq!(counts[..b], floats(&d["chosen_tokens"])[..]);
    assert_eq!(counts[b..], floats(&d["rejected_tokens"])[..]);
    let avg: Vec<f64> = sums.iter().zip(&counts).map(|(s, n)| s / n).collect();
    assert_all_close(
        "chosen_avg_logps",
        &avg[..b],
        &floats(&d["chosen_avg_logps"]),
    );
    assert_all_close(
        "rejected_avg_logps",
        &avg[b..],
        &floats(&d["rejected_avg_logps"]),
    );
    // CPOTrainer's nll_loss: chosen completion tokens only = the DPO trainer's `sft_nll`.
    assert_close(
        "completion_nll",
        f.chosen_nll(&f.shift_completion_mask),
        d["completion_nll"].as_f64().unwrap(),
    );
    // ORPOTrainer's NLL: every attended chosen token, prompt included.
    assert_close(
        "orpo_nll",
        f.chosen_nll(&f.shift_attention_mask),
        d["orpo_nll"].as_f64().unwrap(),
    );
}

/// `pair_loss(Simpo)` per pair and its mean against `CPOTrainer.cpo_loss` (loss_type "simpo",
/// label smoothing included) and `get_batch_loss_metrics` with cpo_alpha 0; with CPOConfig's
/// default cpo_alpha 1 TRL adds the completion NLL, which is our `Sft` variant.
#[test]
fn reference_free_simpo_matches_trl() {
    let f = load();
    let device = Device::default();
    let completion_nll = f.chosen_nll(&f.shift_completion_mask);
    let x = f.pair_logps(completion_nll, 0.0, &device);
    let cases = f.json["simpo_cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    assert!(
        cases
            .iter()
            .any(|c| c["label_smoothing"].as_f64().unwrap() > 0.0)
    );
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let p = params(
            case["beta"].as_f64().unwrap(),
            case["label_smoothing"].as_f64().unwrap(),
            case["simpo_gamma"].as_f64().unwrap(),
        );
        let per_pair = pair_loss(DpoLossType::Simpo, &x, &p);
        let mean = per_pair.clone().mean().into_scalar::<f32>() as f64;
        assert_all_close(
            &format!("{name} per_pair_loss"),
            &host(per_pair),
            &floats(&case["per_pair_loss"]),
        );
        assert_close(
            &format!("{name} loss"),
            mean,
            case["loss"].as_f64().unwrap(),
        );
        let sft = pair_loss(DpoLossType::Sft, &x, &p)
            .mean()
            .into_scalar::<f32>() as f64;
        assert_close(
            &format!("{name} nll_loss (cpo_alpha 1)"),
            sft,
            case["nll_loss_cpo_alpha_1"].as_f64().unwrap(),
        );
        assert_close(
            &format!("{name} loss (cpo_alpha 1)"),
            mean + sft,
            case["loss_cpo_alpha_1"].as_f64().unwrap(),
        );
    }
}

/// `pair_loss(Orpo)` against `ORPOTrainer`: the odds-ratio part per pair (with `sft_nll` 0 the
/// per-pair loss is `-odds_ratio_term`), and the total `nll - mean(beta log σ(log_odds))` when
/// `sft_nll` is ORPO's NLL (every attended chosen token, prompt included).
#[test]
fn reference_free_orpo_matches_trl() {
    let f = load();
    let device = Device::default();
    let orpo_nll = f.chosen_nll(&f.shift_attention_mask);
    let cases = f.json["orpo_cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let p = params(case["beta"].as_f64().unwrap(), 0.0, 0.0);
        let odds_only = host(pair_loss(
            DpoLossType::Orpo,
            &f.pair_logps(0.0, 0.0, &device),
            &p,
        ));
        let want_terms: Vec<f64> = floats(&case["odds_ratio_term"])
            .iter()
            .map(|t| -t)
            .collect();
        assert_all_close(&format!("{name} -odds_ratio_term"), &odds_only, &want_terms);
        let per_pair = pair_loss(DpoLossType::Orpo, &f.pair_logps(0.0, orpo_nll, &device), &p);
        let mean = per_pair.clone().mean().into_scalar::<f32>() as f64;
        assert_all_close(
            &format!("{name} per_pair_loss"),
            &host(per_pair),
            &floats(&case["per_pair_loss"]),
        );
        assert_close(
            &format!("{name} loss"),
            mean,
            case["loss"].as_f64().unwrap(),
        );
    }
}

/// The trainer feeds both NLLs: `sft` reads the completion-only one, ORPO the whole chosen
/// sequence's (TRL's ORPOTrainer scores the prompt tokens too); the fixture separates them, so
/// ORPO matching TRL with the completion NLL also present proves it reads the right one.
#[test]
fn reference_free_orpo_reads_the_full_sequence_nll() {
    let f = load();
    let d = &f.json["inputs"]["derived"];
    let (completion, full) = (
        d["completion_nll"].as_f64().unwrap(),
        d["orpo_nll"].as_f64().unwrap(),
    );
    assert!(
        (completion - full).abs() > 1e-2,
        "fixture should separate the two NLLs: {completion} vs {full}"
    );
    let device = Device::default();
    let x = f.pair_logps(
        f.chosen_nll(&f.shift_completion_mask),
        f.chosen_nll(&f.shift_attention_mask),
        &device,
    );
    for case in f.json["orpo_cases"].as_array().unwrap() {
        let p = params(case["beta"].as_f64().unwrap(), 0.0, 0.0);
        let mean = pair_loss(DpoLossType::Orpo, &x, &p)
            .mean()
            .into_scalar::<f32>() as f64;
        assert_close(
            case["name"].as_str().unwrap(),
            mean,
            case["loss"].as_f64().unwrap(),
        );
    }
}

/// What a SimPO or ORPO run logs: TRL's CPOTrainer and ORPOTrainer report `β` times the
/// length-averaged log-probs as rewards, the averages as `logps/*`, and (ORPO) the log odds.
#[test]
fn reference_free_logged_rewards_are_trls_averages() {
    let f = load();
    let device = Device::default();
    let x = f.pair_logps(0.0, 0.0, &device);
    for case in f.json["simpo_cases"]
        .as_array()
        .unwrap()
        .iter()
        .chain(f.json["orpo_cases"].as_array().unwrap())
    {
        let name = case["name"].as_str().unwrap();
        let beta = case["beta"].as_f64().unwrap();
        let logged = logged_rewards(&x, beta, true);
        let chosen_avg = floats(&case["chosen_avg_logps"]);
        let rejected_avg = floats(&case["rejected_avg_logps"]);
        let scaled = |v: &[f64]| v.iter().map(|l| l * beta).collect::<Vec<f64>>();
        assert_all_close(
            &format!("{name} logps/chosen"),
            &host(logged.chosen_logps),
            &chosen_avg,
        );
        assert_all_close(
            &format!("{name} logps/rejected"),
            &host(logged.rejected_logps),
            &rejected_avg,
        );
        assert_all_close(
            &format!("{name} rewards/chosen"),
            &host(logged.chosen),
            &scaled(&chosen_avg),
        );
        assert_all_close(
            &format!("{name} rewards/rejected"),
            &host(logged.rejected),
            &scaled(&rejected_avg),
        );
    }
    let orpo = &f.json["orpo_cases"][0];
    assert_all_close(
        "log_odds_chosen",
        &host(orpo_log_odds(&x)),
        &floats(&orpo["log_odds"]),
    );
    // DPO variants keep DPOTrainer's β (sum - reference sum)
    let dpo = logged_rewards(&x, 0.1, false);
    let sums = f.masked_sums(&f.shift_completion_mask);
    let want: Vec<f64> = sums[..f.pairs].iter().map(|s| s * 0.1).collect();
    assert_all_close("dpo rewards/chosen", &host(dpo.chosen), &want);
}
