//! KTO's loss as a pure function (TRL 1.16 `KTOTrainer._compute_loss`).

use burn::tensor::Tensor;
use burn::tensor::activation::sigmoid;
use serde::{Deserialize, Serialize};

/// `loss_type` values of TRL's `KTOConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KtoLossType {
    /// KTO (Ethayarajh et al. 2024, arXiv:2402.01306, eq. 7) with the in-batch KL baseline.
    Kto,
    /// Unpaired APO-zero (D'Oosterlinck et al. 2024, arXiv:2408.06266): no KL baseline.
    ApoZeroUnpaired,
}

impl KtoLossType {
    /// Whether the variant estimates the KL baseline from mismatched pairs.
    pub fn uses_kl(self) -> bool {
        self == KtoLossType::Kto
    }
}

/// Per-example losses: desirable examples first (`[chosen]`), then undesirable (`[rejected]`),
/// each already multiplied by its weight. `kl` is the detached, clamped baseline `[1]`.
pub fn kto_losses(
    kind: KtoLossType,
    chosen_logratios: Option<Tensor<1>>,
    rejected_logratios: Option<Tensor<1>>,
    kl: Tensor<1>,
    beta: f64,
    desirable_weight: f64,
    undesirable_weight: f64,
) -> Vec<Tensor<1>> {
    let mut parts = Vec::new();
    if let Some(c) = chosen_logratios {
        let n = c.dims()[0];
        let loss = match kind {
            KtoLossType::Kto => sigmoid((c - kl.clone().expand([n])) * beta).neg() + 1.0,
            KtoLossType::ApoZeroUnpaired => sigmoid(c * beta).neg() + 1.0,
        };
        parts.push(loss * desirable_weight);
    }
    if let Some(r) = rejected_logratios {
        let n = r.dims()[0];
        let loss = match kind {
            KtoLossType::Kto => sigmoid((kl.expand([n]) - r) * beta).neg() + 1.0,
            KtoLossType::ApoZeroUnpaired => sigmoid(r * beta),
        };
        parts.push(loss * undesirable_weight);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn kto_at_zero_margin_is_half() {
        let device = Device::default();
        let t =
            |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), &device);
        let parts = kto_losses(
            KtoLossType::Kto,
            Some(t(vec![0.0])),
            Some(t(vec![0.0])),
            t(vec![0.0]),
            0.1,
            1.0,
            2.0,
        );
        let values: Vec<f32> = parts
            .into_iter()
            .flat_map(|p| p.into_data().try_to_vec::<f32>().unwrap())
            .collect();
        assert!(
            (values[0] - 0.5).abs() < 1e-6 && (values[1] - 1.0).abs() < 1e-6,
            "{values:?}"
        );
    }
}
