//! SFT losses as pure functions of label log-probabilities.

use burn::tensor::Tensor;
use trl_core::logprobs::LabelLogProbs;

use crate::config::SftLossType;

/// Sum over label tokens of the per-token loss, divided by `items_in_step` (the label tokens
/// of the whole optimizer step, transformers' `num_items_in_batch`).
///
/// - `nll`: `-log p`.
/// - `dft` (Dynamic Fine-Tuning, Wu et al. 2025, arXiv:2508.05629): `-p.detach() * log p`.
pub fn sft_loss(
    label_logps: &LabelLogProbs,
    loss_type: SftLossType,
    items_in_step: f64,
) -> Tensor<1> {
    let total = match loss_type {
        SftLossType::Nll | SftLossType::ChunkedNll => label_logps.nll_sum(),
        SftLossType::Dft => {
            let weights = label_logps.logps.clone().detach().exp() * label_logps.mask.clone();
            (label_logps.logps.clone() * weights).sum().neg()
        }
    };
    total / items_in_step
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use trl_core::logprobs::label_log_probs;

    #[test]
    fn dft_weights_each_token_by_its_probability() {
        let device = Device::default();
        // vocab 2, uniform: every label has p = 0.5
        let logits = Tensor::<3>::zeros([1, 3, 2], &device);
        let lp = label_log_probs(logits, &[vec![0, 1, 0]]);
        let nll = sft_loss(&lp, SftLossType::Nll, 2.0).into_scalar::<f64>();
        let dft = sft_loss(&lp, SftLossType::Dft, 2.0).into_scalar::<f64>();
        assert!((nll - 2f64.ln()).abs() < 1e-6);
        assert!((dft - 0.5 * 2f64.ln()).abs() < 1e-6);
    }
}
