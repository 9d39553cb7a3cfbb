//! Entropy-based token selection ("Beyond the 80/20 Rule", Wang et al. 2025,
//! arXiv:2506.01939) and the static entropy bonus, on host values (entropies carry no gradient).

use trl_core::train::collective::Collective;
use trl_core::train::gather::all_gather_f64;

/// TRL's `get_high_entropy_mask`: `true` where the token counts (`mask`) and its entropy is
/// at least the `q`-quantile (linear interpolation, as `torch.quantile`) of the counted
/// tokens' entropies of every process of `world` (TRL gathers them across processes; every
/// rank calls this for the same micro-batch round). No counted token anywhere: all `false`.
/// Row-major `[B, T]` slices.
pub fn high_entropy_mask(
    world: &dyn Collective,
    entropies: &[f32],
    mask: &[f32],
    q: f64,
) -> Vec<bool> {
    let local: Vec<f32> = entropies
        .iter()
        .zip(mask)
        .filter(|&(_, &m)| m != 0.0)
        .map(|(&e, _)| e)
        .collect();
    let mut counted = gather_values(world, local);
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

/// Every process's `local` values in rank order (lengths may differ): the lengths, then the
/// values padded to the longest, in two all-gathers.
fn gather_values(world: &dyn Collective, local: Vec<f32>) -> Vec<f32> {
    if world.size() == 1 {
        return local;
    }
    let lengths: Vec<usize> = all_gather_f64(world, &[local.len() as f64])
        .into_iter()
        .map(|n| n as usize)
        .collect();
    let width = lengths.iter().copied().max().unwrap_or(0);
    let mut padded: Vec<f64> = local.iter().map(|&v| f64::from(v)).collect();
    padded.resize(width, 0.0);
    let all = all_gather_f64(world, &padded);
    all.chunks(width.max(1))
        .zip(&lengths)
        .flat_map(|(values, &n)| values[..n].iter().map(|&v| v as f32))
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
    use trl_core::train::collective::{ScriptedPeers, SingleProcess};

    #[test]
    fn the_threshold_is_the_quantile_over_every_rank() {
        // Alone, the median of [0.5, 1.0] (0.75) would keep the 1.0; rank 0's 2, 3, 4 raise
        // the global median to 2.0, so neither local token is kept.
        let world = ScriptedPeers::new(
            1,
            2,
            vec![vec![3.0, 0.0], vec![2.0, 3.0, 4.0, 0.0, 0.0, 0.0]],
        );
        let (entropies, mask) = ([0.5, 1.0, 9.0], [1.0, 1.0, 0.0]);
        assert_eq!(
            high_entropy_mask(&world, &entropies, &mask, 0.5),
            vec![false, false, false]
        );
        assert_eq!(
            high_entropy_mask(&SingleProcess, &entropies, &mask, 0.5),
            vec![false, true, false]
        );
    }

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
            high_entropy_mask(&SingleProcess, &entropies, &mask, 0.5),
            vec![false, true, true, false]
        );
        assert_eq!(
            high_entropy_mask(&SingleProcess, &entropies, &[0.0; 4], 0.5),
            vec![false; 4]
        );
    }
}
