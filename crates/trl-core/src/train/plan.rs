//! The data schedule of a run, exactly as the HF Trainer counts it (transformers 5.x,
//! `Trainer.set_initial_training_values` and `_inner_training_loop`):
//!
//! - an epoch has `steps_in_epoch = ceil(epoch_len / per_device_train_batch_size)`
//!   micro-batches (the last one may be short: the dataloader does not drop it);
//! - it makes `ceil(steps_in_epoch / gradient_accumulation_steps)` optimizer steps; the last
//!   one takes the micro-batches left over (fewer than `gradient_accumulation_steps`);
//! - `max_steps` (when > 0) wins, else `ceil(num_train_epochs * steps_per_epoch)`, crossing
//!   epochs as needed;
//! - after each step `state.epoch = epoch + micro_batches_done_in_epoch / steps_in_epoch`.
//!
//! With several processes ([`Plan::for_rank`]) every rank draws the same epoch order and takes
//! its share as accelerate's `BatchSamplerShard` does (`split_batches=False`,
//! `even_batches=True`): the order is cut into batches of `per_device_train_batch_size`, global
//! batch `g` is batches `g * N .. (g + 1) * N` and rank `r` takes batch `g * N + r`; the last
//! global batch is completed with examples from the start of the epoch, so every rank gets
//! `ceil(epoch_len / (batch * N))` full batches.

use super::args::TrainingArguments;
use super::data_order::Sampler;

/// Which examples each micro-batch of each optimizer step holds.
#[derive(Debug, Clone)]
pub struct Plan {
    num_examples: usize,
    batch_size: usize,
    /// This process's rank and the number of processes sharing every global batch.
    rank: usize,
    world_size: usize,
    accumulation: usize,
    /// Micro-batches per epoch (transformers' `steps_in_epoch`).
    batches_per_epoch: usize,
    /// Optimizer steps per epoch (`num_update_steps_per_epoch`).
    pub steps_per_epoch: u64,
    /// Optimizer steps of the whole run (`max_steps`).
    pub total_steps: u64,
    /// Epochs the run touches (`num_train_epochs` in `trainer_state.json`).
    pub epochs: u64,
    sampler: Sampler,
    /// The last epoch's order, so a step does not redraw the permutation.
    cached: Option<(u64, Vec<usize>)>,
}

impl Plan {
    /// The schedule for `num_examples` examples under `args`, drawn in `sampler`'s order, in
    /// micro-batches of `per_device_train_batch_size`.
    pub fn new(args: &TrainingArguments, num_examples: usize, sampler: Sampler) -> Self {
        Self::with_batch_size(
            args,
            num_examples,
            sampler,
            args.per_device_train_batch_size,
        )
    }

    /// [`Plan::new`] with micro-batches of `batch_size` examples (the method's dataloader
    /// batch, see `Method::loader_batch_size`).
    pub fn with_batch_size(
        args: &TrainingArguments,
        num_examples: usize,
        sampler: Sampler,
        batch_size: usize,
    ) -> Self {
        Self::for_rank(args, num_examples, sampler, batch_size, 0, 1)
    }

    /// [`Plan::with_batch_size`] for rank `rank` of `world_size` processes: each rank's
    /// micro-batches are its share of the global batches (see the module's doc).
    pub fn for_rank(
        args: &TrainingArguments,
        num_examples: usize,
        sampler: Sampler,
        batch_size: usize,
        rank: usize,
        world_size: usize,
    ) -> Self {
        let batch_size = batch_size.max(1);
        let world_size = world_size.max(1);
        let accumulation = args.gradient_accumulation_steps.max(1);
        let batches_per_epoch = sampler
            .epoch_len(num_examples)
            .div_ceil(batch_size * world_size);
        let steps_per_epoch = batches_per_epoch.div_ceil(accumulation).max(1) as u64;
        let total_steps = if args.max_steps > 0 {
            args.max_steps as u64
        } else {
            (args.num_train_epochs * steps_per_epoch as f64).ceil() as u64
        };
        Plan {
            num_examples,
            batch_size,
            rank: rank.min(world_size - 1),
            world_size,
            accumulation,
            batches_per_epoch,
            steps_per_epoch,
            total_steps,
            epochs: total_steps.div_ceil(steps_per_epoch),
            sampler,
            cached: None,
        }
    }

    /// Example indices of every micro-batch of optimizer step `step` (0-based).
    pub fn micro_batches(&mut self, step: u64) -> Vec<Vec<usize>> {
        let epoch = step / self.steps_per_epoch;
        let (first, last) = self.batch_range(step);
        let (batch_size, rank, world_size) = (self.batch_size, self.rank, self.world_size);
        let order = self.epoch_order(epoch);
        if world_size == 1 {
            return (first..last)
                .map(|b| order[b * batch_size..((b + 1) * batch_size).min(order.len())].to_vec())
                .collect();
        }
        (first..last)
            .map(|b| rank_batch(order, batch_size, world_size, b * world_size + rank))
            .collect()
    }

    /// `state.epoch` after `steps_done` optimizer steps (transformers:
    /// `epoch + (step + 1) / steps_in_epoch`, with `step` the micro-batch index in the epoch).
    pub fn epoch_after(&self, steps_done: u64) -> f64 {
        if steps_done == 0 {
            return 0.0;
        }
        let last = steps_done - 1;
        let epoch = last / self.steps_per_epoch;
        let (_, batches_done) = self.batch_range(last);
        epoch as f64 + batches_done as f64 / self.batches_per_epoch.max(1) as f64
    }

    /// Whether step `steps_done` (1-based count) closes an epoch.
    pub fn ends_epoch(&self, steps_done: u64) -> bool {
        steps_done.is_multiple_of(self.steps_per_epoch)
    }

    /// Micro-batch indices `first..last` within its epoch of optimizer step `step` (0-based).
    fn batch_range(&self, step: u64) -> (usize, usize) {
        let step_in_epoch = (step % self.steps_per_epoch) as usize;
        let first = step_in_epoch * self.accumulation;
        let last = (first + self.accumulation).min(self.batches_per_epoch);
        (first.min(last), last)
    }

    fn epoch_order(&mut self, epoch: u64) -> &[usize] {
        if self.cached.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let order = self.sampler.epoch_order(self.num_examples, epoch);
            self.cached = Some((epoch, order));
        }
        self.cached
            .as_ref()
            .map_or(&[], |(_, order)| order.as_slice())
    }
}

/// Batch `index` of the epoch `order` cut into batches of `batch_size`, the order extended
/// (as accelerate's `even_batches`) by its first `world_size * batch_size` examples, cycled,
/// until every rank has a full batch.
pub(super) fn rank_batch(
    order: &[usize],
    batch_size: usize,
    world_size: usize,
    index: usize,
) -> Vec<usize> {
    let start = index * batch_size;
    let initial = &order[..order.len().min(batch_size * world_size)];
    (start..start + batch_size)
        .map(|i| match order.get(i) {
            Some(&example) => example,
            None => initial[(i - order.len()) % initial.len()],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(batch: usize, accumulation: usize, epochs: f64, max_steps: i64) -> TrainingArguments {
        TrainingArguments {
            per_device_train_batch_size: batch,
            gradient_accumulation_steps: accumulation,
            num_train_epochs: epochs,
            max_steps,
            ..TrainingArguments::default()
        }
    }

    #[test]
    fn an_epoch_covers_every_example_once() {
        let mut plan = Plan::new(&args(2, 2, 1.0, -1), 9, Sampler::Random { seed: 42 });
        // 5 micro-batches, GA 2 -> ceil(5 / 2) = 3 steps, the last with one micro-batch.
        assert_eq!(plan.total_steps, 3);
        assert_eq!(plan.micro_batches(2).len(), 1);
        let mut seen: Vec<usize> = (0..3)
            .flat_map(|s| plan.micro_batches(s))
            .flatten()
            .collect();
        seen.sort();
        assert_eq!(seen, (0..9).collect::<Vec<_>>());
    }

    #[test]
    fn remainder_steps_follow_the_hf_trainer() {
        // 7 micro-batches of 1, GA 2: steps of 2, 2, 2, 1 micro-batches; epoch 2/7, 4/7, 6/7, 1.
        let mut plan = Plan::new(&args(1, 2, 2.0, -1), 7, Sampler::Sequential);
        assert_eq!(
            (plan.steps_per_epoch, plan.total_steps, plan.epochs),
            (4, 8, 2)
        );
        let sizes: Vec<usize> = (0..8).map(|s| plan.micro_batches(s).len()).collect();
        assert_eq!(sizes, [2, 2, 2, 1, 2, 2, 2, 1]);
        assert_eq!(plan.micro_batches(3), vec![vec![6]]);
        assert_eq!(plan.micro_batches(4), vec![vec![0], vec![1]]);
        let epochs: Vec<f64> = (1..=5).map(|s| plan.epoch_after(s)).collect();
        assert_eq!(
            epochs,
            [2.0 / 7.0, 4.0 / 7.0, 6.0 / 7.0, 1.0, 1.0 + 2.0 / 7.0]
        );
        assert!(plan.ends_epoch(4) && !plan.ends_epoch(3));
    }

    #[test]
    fn max_steps_crosses_epochs_and_fractional_epochs_round_up() {
        let plan = Plan::new(&args(2, 2, 3.0, 5), 9, Sampler::Sequential);
        assert_eq!(
            (plan.steps_per_epoch, plan.total_steps, plan.epochs),
            (3, 5, 2)
        );
        let plan = Plan::new(&args(2, 1, 1.5, -1), 8, Sampler::Sequential);
        assert_eq!((plan.total_steps, plan.epochs), (6, 2));
    }

    #[test]
    fn a_partial_last_batch_is_kept() {
        let mut plan = Plan::new(&args(4, 1, 1.0, -1), 6, Sampler::Sequential);
        assert_eq!(plan.total_steps, 2);
        assert_eq!(plan.micro_batches(1), vec![vec![4, 5]]);
    }

    #[test]
    fn sequential_order_is_the_file_order() {
        let mut plan = Plan::new(&args(2, 1, 1.0, 3), 4, Sampler::Sequential);
        assert_eq!(plan.micro_batches(0), vec![vec![0, 1]]);
        assert_eq!(plan.micro_batches(2), vec![vec![0, 1]]);
    }

    #[derive(serde::Deserialize)]
    struct ShardCase {
        num_examples: usize,
        batch_size: usize,
        num_processes: usize,
        ranks: Vec<Vec<Vec<usize>>>,
    }

    #[test]
    fn ranks_take_accelerates_shards() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/expected/shards.json"
        );
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e}; run reference/shard_reference.py"));
        let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
        let cases: Vec<ShardCase> = serde_json::from_value(fixture["cases"].clone()).unwrap();
        for case in cases {
            for (rank, expected) in case.ranks.iter().enumerate() {
                let args = args(case.batch_size, 1, 1.0, -1);
                let (n, size) = (case.num_examples, case.num_processes);
                let mut plan =
                    Plan::for_rank(&args, n, Sampler::Sequential, case.batch_size, rank, size);
                let got: Vec<Vec<usize>> = (0..plan.total_steps)
                    .flat_map(|s| plan.micro_batches(s))
                    .collect();
                assert_eq!(
                    &got, expected,
                    "{n} examples, batch {}, rank {rank} of {size}",
                    case.batch_size
                );
            }
        }
    }

    #[test]
    fn two_ranks_split_the_global_batch_of_one_process() {
        // 1 process x batch 4 x GA 2 versus 2 ranks x batch 2 x GA 2, random order, 16 rows.
        let random = Sampler::Random { seed: 7 };
        let mut whole = Plan::new(&args(4, 2, 2.0, -1), 16, random.clone());
        let mut ranks: Vec<Plan> = (0..2)
            .map(|r| Plan::for_rank(&args(2, 2, 2.0, -1), 16, random.clone(), 2, r, 2))
            .collect();
        assert_eq!(ranks[0].total_steps, whole.total_steps);
        for step in 0..whole.total_steps {
            let shares: Vec<Vec<Vec<usize>>> =
                ranks.iter_mut().map(|p| p.micro_batches(step)).collect();
            for (micro, batch) in whole.micro_batches(step).iter().enumerate() {
                assert_eq!(batch[..2], shares[0][micro][..], "step {step}");
                assert_eq!(batch[2..], shares[1][micro][..], "step {step}");
            }
            assert_eq!(ranks[1].epoch_after(step + 1), whole.epoch_after(step + 1));
        }
    }
}
