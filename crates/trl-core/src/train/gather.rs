//! All-gathers over a [`Collective`]: every rank's values, concatenated in rank order, on
//! every rank (accelerate's `gather` / `gather_object`). Online methods need them: GRPO and
//! RLOO gather every rank's rewards to compute group advantages over the global generation
//! batch, and their completions so that rank 0 logs all of them.
//!
//! Both are built on [`Collective::all_reduce_sum_f64`] of a zero-padded buffer: each rank
//! writes its values into its own slot and zeros elsewhere, so the sum is exact (`x + 0 = x`,
//! NaN and infinities included) and needs nothing more from the MPI binding.

use super::collective::Collective;

/// Every rank's `local` values in rank order (`size * local.len()` values). Every rank must
/// pass the same number of values (use [`all_gather_bytes`] for lengths that differ).
pub fn all_gather_f64(world: &dyn Collective, local: &[f64]) -> Vec<f64> {
    let size = world.size();
    if size == 1 {
        return local.to_vec();
    }
    let width = local.len();
    let mut buffer = vec![0.0; width * size];
    let start = world.rank() * width;
    buffer[start..start + width].copy_from_slice(local);
    world.all_reduce_sum_f64(&mut buffer);
    buffer
}

/// Every rank's `local` bytes in rank order; lengths may differ between ranks. The bytes
/// travel four to an `f64` (a `u32` is exact in an `f64`).
pub fn all_gather_bytes(world: &dyn Collective, local: &[u8]) -> Vec<Vec<u8>> {
    if world.size() == 1 {
        return vec![local.to_vec()];
    }
    let lengths: Vec<usize> = all_gather_f64(world, &[local.len() as f64])
        .into_iter()
        .map(|n| n as usize)
        .collect();
    let words = lengths.iter().max().map_or(0, |&n| n.div_ceil(4));
    let mut packed: Vec<f64> = local
        .chunks(4)
        .map(|chunk| {
            let mut word = [0u8; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            f64::from(u32::from_le_bytes(word))
        })
        .collect();
    packed.resize(words, 0.0);
    let gathered = all_gather_f64(world, &packed);
    gathered
        .chunks(words.max(1))
        .zip(&lengths)
        .map(|(words, &length)| {
            let mut bytes: Vec<u8> = words
                .iter()
                .flat_map(|&w| (w as u32).to_le_bytes())
                .collect();
            bytes.truncate(length);
            bytes
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::train::collective::ScriptedPeers;

    #[test]
    fn a_rank_places_its_values_after_the_lower_ranks() {
        let world = ScriptedPeers::new(1, 2, vec![vec![1.0, f64::NAN, 0.0, 0.0]]);
        let got = all_gather_f64(&world, &[3.0, -4.0]);
        assert_eq!((got[0], got[2], got[3]), (1.0, 3.0, -4.0));
        assert!(got[1].is_nan());
    }

    #[test]
    fn bytes_of_different_lengths_come_back_whole() {
        // Rank 0 sent b"hello" (5 bytes: two words), rank 1 (us) sends b"ok".
        let hello: Vec<f64> = [*b"hell", [b'o', 0, 0, 0]]
            .iter()
            .map(|w| f64::from(u32::from_le_bytes(*w)))
            .collect();
        let world = ScriptedPeers::new(
            1,
            2,
            vec![vec![5.0, 0.0], vec![hello[0], hello[1], 0.0, 0.0]],
        );
        let got = all_gather_bytes(&world, b"ok");
        assert_eq!(got, vec![b"hello".to_vec(), b"ok".to_vec()]);
        let alone = all_gather_bytes(&crate::train::collective::SingleProcess, b"x");
        assert_eq!(alone, vec![b"x".to_vec()]);
    }
}
