//! Which examples an epoch visits, in which order: the samplers a method can choose.
//!
//! The loop cuts an epoch's order into micro-batches of `per_device_train_batch_size`
//! consecutive entries (see [`super::plan::Plan`]); a sampler only decides the order, and may
//! repeat an example (TRL's `RepeatSampler`, which GRPO and RLOO use to put every prompt's
//! generations side by side).

use super::args::{SamplingStrategy, TrainingArguments};
use super::sampler::{epoch_order, sampler_seed, torch_randperm_nth};

/// The order of the examples within each epoch.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    /// The file order, every epoch (`train_sampling_strategy sequential`).
    Sequential,
    /// The HF Trainer's default: `torch.randperm(n)` reseeded with `seed + epoch` each epoch.
    Random { seed: u64 },
    /// TRL's `RepeatSampler` (`trl/trainer/utils.py`).
    Repeat(RepeatSampler),
}

/// TRL's `RepeatSampler`: shuffle once per epoch with its own generator, cut into chunks of
/// `batch_size` unique indices (dropping a short last chunk), then yield each chunk
/// `repeat_count` times with every index repeated `mini_repeat_count` times in a row.
#[derive(Debug, Clone, PartialEq)]
pub struct RepeatSampler {
    /// Consecutive copies of each index (GRPO: `num_generations`).
    pub mini_repeat_count: usize,
    /// Unique indices per chunk (GRPO: `generation_batch_size / num_generations`).
    pub batch_size: usize,
    /// How often each chunk is replayed (GRPO: `num_iterations * steps_per_generation`).
    pub repeat_count: usize,
    /// `false` keeps the file order.
    pub shuffle: bool,
    /// Seeds the sampler's own generator once; epoch `e` takes its `e`-th permutation.
    pub seed: u64,
}

impl Sampler {
    /// The sampler `train_sampling_strategy`, `seed` and `data_seed` ask for.
    pub fn from_args(args: &TrainingArguments) -> Self {
        match args.train_sampling_strategy {
            SamplingStrategy::Sequential => Sampler::Sequential,
            SamplingStrategy::Random => Sampler::Random {
                seed: sampler_seed(args.seed, args.data_seed),
            },
        }
    }

    /// Length of one epoch's order for a dataset of `n` examples (`len(sampler)`).
    pub fn epoch_len(&self, n: usize) -> usize {
        match self {
            Sampler::Sequential | Sampler::Random { .. } => n,
            Sampler::Repeat(r) => {
                let chunk = r.batch_size.max(1);
                (n / chunk) * chunk * r.mini_repeat_count * r.repeat_count
            }
        }
    }

    /// Example indices of epoch `epoch` (0-based) in visiting order; `epoch_len(n)` long.
    pub fn epoch_order(&self, n: usize, epoch: u64) -> Vec<usize> {
        match self {
            Sampler::Sequential => (0..n).collect(),
            Sampler::Random { seed } => epoch_order(n, *seed, epoch),
            Sampler::Repeat(r) => r.epoch_order(n, epoch),
        }
    }
}

impl RepeatSampler {
    fn epoch_order(&self, n: usize, epoch: u64) -> Vec<usize> {
        let indexes = if self.shuffle {
            torch_randperm_nth(n, self.seed, epoch)
        } else {
            (0..n).collect()
        };
        let chunk = self.batch_size.max(1);
        let mut order = Vec::with_capacity(n * self.mini_repeat_count * self.repeat_count);
        for chunk in indexes.chunks_exact(chunk) {
            for _ in 0..self.repeat_count {
                for &index in chunk {
                    order.extend(std::iter::repeat_n(index, self.mini_repeat_count));
                }
            }
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::sampler::torch_randperm;

    fn repeat(shuffle: bool) -> Sampler {
        Sampler::Repeat(RepeatSampler {
            mini_repeat_count: 2,
            batch_size: 3,
            repeat_count: 4,
            shuffle,
            seed: 42,
        })
    }

    #[test]
    fn repeat_sampler_drops_the_short_chunk_and_repeats_as_trl_documents() {
        // TRL's docstring layout, on the file order: chunks [0,1,2] and [3,4,5]; 6 is dropped.
        let order = repeat(false).epoch_order(7, 0);
        assert_eq!(order.len(), repeat(false).epoch_len(7));
        let first_chunk = [0, 0, 1, 1, 2, 2];
        let second_chunk = [3, 3, 4, 4, 5, 5];
        let expected: Vec<usize> = std::iter::repeat_n(first_chunk, 4)
            .chain(std::iter::repeat_n(second_chunk, 4))
            .flatten()
            .collect();
        assert_eq!(order, expected);
    }

    #[test]
    fn repeat_sampler_shuffles_with_one_generator_across_epochs() {
        let sampler = repeat(true);
        let first = sampler.epoch_order(7, 0);
        let second = sampler.epoch_order(7, 1);
        // Epoch 0 is the generator's first randperm; epoch 1 continues it (not reseeded).
        let perm = torch_randperm(7, 42);
        assert_eq!(
            first[..6],
            [perm[0], perm[0], perm[1], perm[1], perm[2], perm[2]]
        );
        assert_ne!(first, second);
        let next = torch_randperm_nth(7, 42, 1);
        assert_eq!(second[0], next[0]);
        assert_ne!(next, perm);
    }

    #[test]
    fn random_sampler_is_the_trainers_epoch_order() {
        let sampler = Sampler::Random { seed: 3 };
        assert_eq!(sampler.epoch_order(10, 2), epoch_order(10, 3, 2));
        assert_eq!(Sampler::Sequential.epoch_order(3, 5), vec![0, 1, 2]);
    }
}
