//! Rotary position embeddings, computed from explicit position ids so that left padding and
//! packed samples (positions restarting at 0) get the same rotations transformers gives them.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::RopeScaling;

/// Inverse frequencies `[head_dim / 2]`, rescaled as transformers' rope init functions do.
pub fn inverse_frequencies(head_dim: usize, theta: f64, scaling: &RopeScaling) -> Vec<f32> {
    let base: Vec<f64> = (0..head_dim / 2)
        .map(|i| 1.0 / theta.powf((2 * i) as f64 / head_dim as f64))
        .collect();
    let scaled: Vec<f64> = match *scaling {
        RopeScaling::None => base,
        RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: old_len,
        } => {
            let low_freq_wavelen = old_len / low_freq_factor;
            let high_freq_wavelen = old_len / high_freq_factor;
            base.iter()
                .map(|&freq| {
                    let wavelen = 2.0 * std::f64::consts::PI / freq;
                    if wavelen < high_freq_wavelen {
                        freq
                    } else if wavelen > low_freq_wavelen {
                        freq / factor
                    } else {
                        let smooth = (old_len / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * freq / factor + smooth * freq
                    }
                })
                .collect()
        }
    };
    scaled.into_iter().map(|f| f as f32).collect()
}

/// The cos/sin tables for one forward pass, shared by every layer.
#[derive(Debug, Clone)]
pub struct RotaryTables {
    /// `[batch, 1, seq, head_dim]`
    cos: Tensor<4>,
    /// `[batch, 1, seq, head_dim]`
    sin: Tensor<4>,
}

impl RotaryTables {
    /// Builds the tables for `position_ids` `[batch, seq]`.
    pub fn new(position_ids: &Tensor<2, Int>, inv_freq: &[f32], device: &Device) -> Self {
        let [batch, seq] = position_ids.dims();
        let half = inv_freq.len();
        // [batch, seq, 1] * [1, 1, half] -> [batch, seq, half]
        let positions = position_ids.clone().float().reshape([batch, seq, 1]);
        let inv = Tensor::<3>::from_data(TensorData::new(inv_freq.to_vec(), [1, 1, half]), device);
        let freqs = positions * inv;
        // transformers concatenates the frequencies with themselves: [batch, seq, head_dim]
        let emb = Tensor::cat(vec![freqs.clone(), freqs], 2);
        let emb = emb.reshape([batch, 1, seq, 2 * half]);
        RotaryTables {
            cos: emb.clone().cos(),
            sin: emb.sin(),
        }
    }

    /// `(cos, sin)`, each `[batch, 1, seq, head_dim]` (benchmarks compare the kernels on them).
    pub fn tables(&self) -> (&Tensor<4>, &Tensor<4>) {
        (&self.cos, &self.sin)
    }

    /// Rotates `x` `[batch, heads, seq, head_dim]`: `x * cos + rotate_half(x) * sin`.
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        crate::kernels::rope(x, &self.cos, &self.sin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_keeps_high_and_divides_low_frequencies() {
        let scaling = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192.0,
        };
        let plain = inverse_frequencies(128, 500000.0, &RopeScaling::None);
        let scaled = inverse_frequencies(128, 500000.0, &scaling);
        assert_eq!(plain[0], scaled[0]);
        let last = plain.len() - 1;
        assert!((scaled[last] - plain[last] / 8.0).abs() < 1e-12);
    }

    #[test]
    fn linear_divides_every_frequency() {
        let plain = inverse_frequencies(8, 10000.0, &RopeScaling::None);
        let scaled = inverse_frequencies(8, 10000.0, &RopeScaling::Linear { factor: 2.0 });
        for (p, s) in plain.iter().zip(&scaled) {
            assert!((p / 2.0 - s).abs() < 1e-9);
        }
    }
}
