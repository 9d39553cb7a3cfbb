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

use super::args::TrainingArguments;
use super::data_order::Sampler;

/// Which examples each micro-batch of each optimizer step holds.
#[derive(Debug, Clone)]
pub struct Plan {
    num_examples: usize,
    batch_size: usize,
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
        let batch_size = batch_size.max(1);
        let accumulation = args.gradient_accumulation_steps.max(1);
        let batches_per_epoch = sampler.epoch_len(num_examples).div_ceil(batch_size);
        let steps_per_epoch = batches_per_epoch.div_ceil(accumulation).max(1) as u64;
        let total_steps = if args.max_steps > 0 {
            args.max_steps as u64
        } else {
            (args.num_train_epochs * steps_per_epoch as f64).ceil() as u64
        };
        Plan {
            num_examples,
            batch_size,
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
        let batch_size = self.batch_size;
        let order = self.epoch_order(epoch);
        (first..last)
            .map(|b| order[b * batch_size..((b + 1) * batch_size).min(order.len())].to_vec())
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
}
