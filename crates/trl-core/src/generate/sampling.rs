//! Choosing the next token from a processed row of logits: the most likely one (greedy), or a
//! draw from its softmax with a seeded generator of our own (one stream per sequence, so a
//! sequence's tokens do not depend on which others share its batch).

/// xoshiro256** seeded through splitmix64: small, fast and the same on every platform.
#[derive(Debug, Clone)]
pub struct Rng {
    state: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// The stream of sequence `sequence` under `seed`.
    pub fn for_sequence(seed: u64, sequence: u64) -> Self {
        let mut sequence_state = sequence;
        let mut mix = seed ^ splitmix64(&mut sequence_state);
        Rng {
            state: std::array::from_fn(|_| splitmix64(&mut mix)),
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The index of the largest logit (the first one on ties, as `torch.argmax`).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &logit) in row.iter().enumerate() {
        if logit > row[best] {
            best = i;
        }
    }
    best
}

/// A draw from `softmax(row)`: one pass for the maximum, one for the normaliser, one to find
/// where the uniform draw falls (filtered `-inf` entries have probability 0). No sort.
pub fn sample(row: &[f32], rng: &mut Rng) -> usize {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return argmax(row);
    }
    let total: f64 = row.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let target = rng.next_f64() * total;
    let mut cumulative = 0.0f64;
    let mut last_possible = argmax(row);
    for (i, &logit) in row.iter().enumerate() {
        if logit == f32::NEG_INFINITY {
            continue;
        }
        cumulative += ((logit - max) as f64).exp();
        last_possible = i;
        if cumulative > target {
            return i;
        }
    }
    last_possible
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_distribution_and_skip_filtered_tokens() {
        // probabilities 0.25, 0, 0.75
        let row = [0.25f32.ln(), f32::NEG_INFINITY, 0.75f32.ln()];
        let mut rng = Rng::for_sequence(1, 0);
        let draws: Vec<usize> = (0..4000).map(|_| sample(&row, &mut rng)).collect();
        assert!(!draws.contains(&1));
        let share = draws.iter().filter(|&&d| d == 2).count() as f64 / 4000.0;
        assert!((share - 0.75).abs() < 0.03, "{share}");
    }

    #[test]
    fn streams_differ_by_seed_and_sequence() {
        let first = |seed, seq| Rng::for_sequence(seed, seq).next_u64();
        assert_eq!(first(3, 1), first(3, 1));
        assert_ne!(first(3, 1), first(4, 1));
        assert_ne!(first(3, 1), first(3, 2));
    }
}
