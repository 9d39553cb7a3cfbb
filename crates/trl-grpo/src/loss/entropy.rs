//! Entropy-based token selection ("Beyond the 80/20 Rule", Wang et al. 2025,
//! arXiv:2506.01939) and the static entropy bonus, on host values (entropies carry no gradient).

/// TRL's `get_high_entropy_mask` on one process: `true` where the token counts (`mask`) and
/// its entropy is at least the `q`-quantile (linear interpolation, as `torch.quantile`) of
/// the counted tokens' entropies. No counted token: all `false`. Row-major `[B, T]` slices.
pub fn high_entropy_mask(entropies: &[f32], mask: &[f32], q: f64) -> Vec<bool> {
    let mut counted: Vec<f32> = entropies
        .iter()
        .zip(mask)
        .filter(|&(_, &m)| m != 0.0)
        .map(|(&e, _)| e)
        .collect();
    if counted.is_empty() {
        return vec![false; entropies.len()];
    }
    counted.sort_by(f32::total_cmp);
    let threshold = quantile_sorted(&counted, q as f32);
    entropies
        .iter()
        .zip(mask)
        .map(|(&e, &m)| m != 0.0 && e * m >= threshold)
        .collect()
}

/// `torch.quantile(sorted, q)` with linear interpolation, in f32 as torch computes it:
/// rank `q (n - 1)`, then `lerp(below, above, rank - floor(rank))`.
fn quantile_sorted(sorted: &[f32], q: f32) -> f32 {
    let rank = q * (sorted.len() - 1) as f32;
    let below = rank.floor();
    let weight = rank - below;
    let low = sorted[below as usize];
    let high = sorted[(rank.ceil() as usize).min(sorted.len() - 1)];
    // ATen's CPU lerp.
    if weight < 0.5 {
        low + weight * (high - low)
    } else {
        high - (high - low) * (1.0 - weight)
    }
}

/// Mean entropy over the tokens the bonus acts on (`mask`, narrowed by `keep` when the
/// high-entropy mask is on), `/ max(count, 1)`.
pub fn mean_entropy(entropies: &[f32], mask: &[f32], keep: Option<&[bool]>) -> f64 {
    let (mut sum, mut count) = (0.0f64, 0.0f64);
    for (i, (&e, &m)) in entropies.iter().zip(mask).enumerate() {
        let weight = if keep.is_none_or(|k| k[i]) {
            m as f64
        } else {
            0.0
        };
        sum += e as f64 * weight;
        count += weight;
    }
    sum / count.max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_linearly_between_neighbours() {
        let sorted = [1.0f32, 2.0, 4.0, 8.0];
        assert_eq!(quantile_sorted(&sorted, 0.0), 1.0);
        assert_eq!(quantile_sorted(&sorted, 1.0), 8.0);
        // rank 1.5: halfway between 2 and 4
        assert_eq!(quantile_sorted(&sorted, 0.5), 3.0);
    }

    #[test]
    fn padding_never_enters_the_mask_or_the_threshold() {
        // The padded 100.0 would raise the median if it counted.
        let entropies = [0.5, 1.0, 2.0, 100.0];
        let mask = [1.0, 1.0, 1.0, 0.0];
        assert_eq!(
            high_entropy_mask(&entropies, &mask, 0.5),
            vec![false, true, true, false]
        );
        assert_eq!(
            high_entropy_mask(&entropies, &[0.0; 4], 0.5),
            vec![false; 4]
        );
    }
}
