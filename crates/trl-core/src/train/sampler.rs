//! The order in which the HF Trainer visits the training set with `train_sampling_strategy =
//! "random"` (the default), reproduced bit for bit so a run matches TRL step for step.
//!
//! accelerate replaces the Trainer's `RandomSampler` with `SeedableRandomSampler`
//! (`accelerate/data_loader.py:73-107`, swapped in at :1196-1210), and the Trainer calls
//! `set_epoch(epoch)` before every epoch (`transformers/trainer.py:1851-1858`). Epoch `e` therefore
//! visits `torch.randperm(N, generator=torch.Generator().manual_seed(S + e))`, where
//! `S = data_seed` if set, else `torch.initial_seed()`, which `Trainer.__init__` set to `args.seed`
//! (`transformers/trainer.py:419, 839`).
//!
//! `torch.randperm` on CPU (`randperm_cpu`, `aten/src/ATen/native/TensorFactories.cpp`) is a
//! Fisher–Yates shuffle driven by torch's own MT19937 (`ATen/core/MT19937RNGEngine.h`). Both are
//! written out here because only torch's exact sequence of draws reproduces TRL's order: no crate
//! implements `randperm_cpu`'s reduction (`random() % (n - i)` swapped forward from `i = 0`, and the
//! `random64()` inside-out variant for huge `n`), `rand`'s shuffles draw differently, and the plain
//! MT19937 underneath (also in `rand_mt`) is ~40 lines, not worth a dependency.
//! `reference/sampler_reference.py` records the expected permutations and a real Trainer's batches
//! in `fixtures/expected/sampler.json`.

/// `randperm_cpu` keeps its original 32-bit Fisher–Yates for `n < UINT32_MAX / 20` and switches to
/// an inside-out shuffle over 64-bit draws above it (to limit modulo bias).
const SMALL_N_LIMIT: u64 = u32::MAX as u64 / 20;

const STATE_LEN: usize = 624;
const SHIFT_LEN: usize = 397;

/// MT19937 exactly as torch's CPU generator runs it (`at::mt19937`): seeded by the classic
/// `init_genrand` with the low 32 bits of the 64-bit seed, one tempered `u32` per `random()`.
struct Mt19937 {
    state: [u32; STATE_LEN],
    next: usize,
}

impl Mt19937 {
    fn new(seed: u64) -> Self {
        let mut state = [0u32; STATE_LEN];
        state[0] = seed as u32; // torch: `seed & 0xffffffff`
        for j in 1..STATE_LEN {
            let prev = state[j - 1];
            state[j] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(j as u32);
        }
        // torch starts with `left_ = 1`: the first draw regenerates the whole state.
        Self {
            state,
            next: STATE_LEN,
        }
    }

    /// `CPUGeneratorImpl::random()`.
    fn next_u32(&mut self) -> u32 {
        if self.next == STATE_LEN {
            self.regenerate();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `CPUGeneratorImpl::random64()`: the first draw is the high half.
    fn next_u64(&mut self) -> u64 {
        let high = u64::from(self.next_u32());
        let low = u64::from(self.next_u32());
        (high << 32) | low
    }

    fn regenerate(&mut self) {
        for i in 0..STATE_LEN {
            let following = self.state[(i + 1) % STATE_LEN];
            let mixed = (self.state[i] & 0x8000_0000) | (following & 0x7fff_ffff);
            let twisted = (mixed >> 1) ^ if following & 1 == 1 { 0x9908_b0df } else { 0 };
            self.state[i] = self.state[(i + SHIFT_LEN) % STATE_LEN] ^ twisted;
        }
        self.next = 0;
    }
}

/// A seed derived from a run's `seed` for item `index` (a step, a generation batch) of random
/// stream `stream` (SplitMix64's finaliser over the mixed inputs): what online methods and
/// LoRA dropout seed each step with, so a resumed run draws the same numbers without saving
/// any RNG state.
pub fn derived_seed(seed: u64, index: u64, stream: u64) -> u64 {
    let mut z = seed
        ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `torch.randperm(n, generator=torch.Generator().manual_seed(seed))` on CPU, element for element.
///
/// Only the low 32 bits of `seed` matter (torch seeds MT19937 with `seed & 0xffffffff`).
pub fn torch_randperm(n: usize, seed: u64) -> Vec<usize> {
    randperm_from(&mut Mt19937::new(seed), n)
}

/// The `index`-th (0-based) `torch.randperm(n, generator=g)` drawn from one generator `g`
/// seeded once with `seed`: what a sampler holding its own generator (TRL's `RepeatSampler`)
/// yields in epoch `index`, since each epoch continues the generator where the last one left it.
pub fn torch_randperm_nth(n: usize, seed: u64, index: u64) -> Vec<usize> {
    let mut rng = Mt19937::new(seed);
    for _ in 0..index {
        randperm_from(&mut rng, n);
    }
    randperm_from(&mut rng, n)
}

/// `randperm_cpu` drawing from `rng`.
fn randperm_from(rng: &mut Mt19937, n: usize) -> Vec<usize> {
    if (n as u64) < SMALL_N_LIMIT {
        // for i in 0..n-1: z = random() % (n - i); swap(r[i], r[i + z])
        let mut perm: Vec<usize> = (0..n).collect();
        for i in 0..n.saturating_sub(1) {
            let offset = rng.next_u32() as usize % (n - i);
            perm.swap(i, i + offset);
        }
        perm
    } else {
        // Inside-out Fisher–Yates: for i in 0..n: z = random64() % (i + 1); r[i] = r[z]; r[z] = i
        let mut perm = vec![0usize; n];
        for i in 0..n {
            let z = (rng.next_u64() % (i as u64 + 1)) as usize;
            perm[i] = perm[z];
            perm[z] = i;
        }
        perm
    }
}

/// The seed `SeedableRandomSampler` starts from: `data_seed` when the user gave one, else `seed`.
pub fn sampler_seed(seed: u64, data_seed: Option<u64>) -> u64 {
    data_seed.unwrap_or(seed)
}

/// Row indices in the order the HF Trainer visits a training set of `n` rows in epoch `epoch`
/// (0-based) under `train_sampling_strategy = "random"`; `seed` comes from [`sampler_seed`].
///
/// Micro-batches are consecutive chunks of this order (the last one may be short), and a resumed
/// run gets the same order for the same epoch: the sampler is reseeded from `seed + epoch` each
/// epoch, never from the state left by the previous one. Python adds without wrapping and torch
/// rejects seeds past `u64::MAX`; wrapping here changes nothing in the low 32 bits that are used.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    torch_randperm(n, seed.wrapping_add(epoch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Fixture {
        randperm: Vec<SmallCase>,
        randperm_large: Vec<LargeCase>,
        trainer: Vec<TrainerCase>,
    }

    #[derive(Deserialize)]
    struct SmallCase {
        n: usize,
        seed: u64,
        perm: Vec<usize>,
    }

    #[derive(Deserialize)]
    struct LargeCase {
        n: usize,
        seed: u64,
        head: Vec<usize>,
        tail: Vec<usize>,
        weighted_sum: u64,
    }

    #[derive(Deserialize)]
    struct TrainerCase {
        num_rows: usize,
        per_device_train_batch_size: usize,
        seed: u64,
        data_seed: Option<u64>,
        /// Per epoch, the micro-batches (row indices) the model received.
        epochs: Vec<Vec<Vec<usize>>>,
    }

    fn fixture() -> Fixture {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/expected/sampler.json"
        );
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e}; run reference/sampler_reference.py"));
        serde_json::from_str(&text).expect("sampler.json matches the schema in its script")
    }

    #[test]
    fn mt19937_matches_reference_stream() {
        // The 10 000th output of MT19937 seeded with 5489 is 4123659995 (C++ [rand.predef]).
        let mut rng = Mt19937::new(5489);
        let last = (0..10_000).map(|_| rng.next_u32()).last();
        assert_eq!(last, Some(4_123_659_995));
    }

    #[test]
    fn randperm_matches_torch_for_small_n() {
        let cases = fixture().randperm;
        assert!(cases.len() >= 20);
        for case in cases {
            assert_eq!(
                torch_randperm(case.n, case.seed),
                case.perm,
                "n={} seed={}",
                case.n,
                case.seed
            );
        }
    }

    #[test]
    fn only_low_32_bits_of_the_seed_matter() {
        assert_eq!(torch_randperm(1000, (1 << 32) + 5), torch_randperm(1000, 5));
    }

    #[test]
    fn epoch_order_matches_a_real_trainer() {
        let cases = fixture().trainer;
        assert_eq!(cases.len(), 3);
        for case in cases {
            let seed = sampler_seed(case.seed, case.data_seed);
            for (epoch, batches) in case.epochs.iter().enumerate() {
                let order = epoch_order(case.num_rows, seed, epoch as u64);
                let expected: Vec<Vec<usize>> = order
                    .chunks(case.per_device_train_batch_size)
                    .map(<[usize]>::to_vec)
                    .collect();
                assert_eq!(&expected, batches, "rows={} epoch={epoch}", case.num_rows);
            }
        }
    }

    /// n at and just below `UINT32_MAX / 20`, where torch switches shuffles. Needs ~1.7 GB per
    /// permutation and ~40 s, hence ignored by default:
    /// `cargo test -p trl-core --lib sampler -- --ignored`.
    #[test]
    #[ignore = "allocates 1.7 GB; run with --ignored"]
    fn randperm_matches_torch_around_the_64_bit_switch() {
        let cases = fixture().randperm_large;
        assert_eq!(
            cases.len(),
            3,
            "regenerate sampler.json without --skip-large"
        );
        for case in cases {
            let perm = torch_randperm(case.n, case.seed);
            let weighted_sum = perm.iter().enumerate().fold(0u64, |acc, (i, &p)| {
                acc.wrapping_add((i as u64 + 1).wrapping_mul(p as u64))
            });
            assert_eq!(perm[..16], case.head[..], "n={} seed={}", case.n, case.seed);
            assert_eq!(perm[case.n - 16..], case.tail[..], "n={}", case.n);
            assert_eq!(weighted_sum, case.weighted_sum, "n={}", case.n);
        }
    }
}
