//! Which eval batches a data-parallel rank evaluates, and how much each counts, as
//! accelerate's prepared eval dataloader and `gather_for_metrics` decide it: the eval order
//! is cut into `per_device_eval_batch_size` batches, round `g` gives batch `g * N + r` to rank
//! `r` (the last round completed with examples from the start, `even_batches`), and at the
//! end the gathered losses are cut to the dataset's length, so a batch of padding counts
//! nothing. With one process: every batch in order, the last one short, as before.

use super::plan::rank_batch;

/// One eval batch of this rank: the round it belongs to (every rank evaluates round `g`
/// together, so an online method's gathers line up), its example indices, and how many of
/// `eval_loss`'s per-row entries it contributes.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalShard {
    pub round: usize,
    pub indices: Vec<usize>,
    pub weight: usize,
}

/// Rank `rank` of `world_size`'s eval batches over `order` (the eval sampler's order of a
/// dataset of `dataset_len` examples) in batches of `batch_size`.
pub fn eval_shards(
    order: &[usize],
    dataset_len: usize,
    batch_size: usize,
    rank: usize,
    world_size: usize,
) -> Vec<EvalShard> {
    let batch_size = batch_size.max(1);
    let batches = order.len().div_ceil(batch_size);
    if world_size <= 1 {
        let weights = super::eval::batch_loss_weights(dataset_len, batches, batch_size);
        return order
            .chunks(batch_size)
            .zip(weights)
            .enumerate()
            .map(|(round, (indices, weight))| EvalShard {
                round,
                indices: indices.to_vec(),
                weight,
            })
            .collect();
    }
    let rounds = batches.div_ceil(world_size);
    // accelerate's `remainder`: the dataset's length modulo the global batch, kept from the
    // last round's gathered copies in rank order.
    let remainder = dataset_len % (batch_size * world_size);
    (0..rounds)
        .map(|round| {
            let weight = if round + 1 == rounds && remainder > 0 {
                remainder.saturating_sub(rank * batch_size).min(batch_size)
            } else {
                batch_size
            };
            let index = round * world_size + rank;
            EvalShard {
                round,
                indices: rank_batch(order, batch_size, world_size, index),
                weight,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_takes_every_batch_and_a_short_last_one() {
        let order: Vec<usize> = (0..5).collect();
        let shards = eval_shards(&order, 5, 2, 0, 1);
        let got: Vec<(Vec<usize>, usize)> =
            shards.into_iter().map(|s| (s.indices, s.weight)).collect();
        assert_eq!(got, vec![(vec![0, 1], 2), (vec![2, 3], 2), (vec![4], 1)]);
    }

    #[test]
    fn ranks_share_rounds_and_padding_counts_nothing() {
        // 5 rows, batches of 2, 2 ranks: rank 0 takes [0, 1], [4, 0]; rank 1 [2, 3], [1, 2].
        let order: Vec<usize> = (0..5).collect();
        let zero = eval_shards(&order, 5, 2, 0, 2);
        let one = eval_shards(&order, 5, 2, 1, 2);
        assert_eq!(zero[1].indices, vec![4, 0]);
        assert_eq!(one[1].indices, vec![1, 2]);
        // remainder 5 % 4 = 1: rank 0's last batch counts once, rank 1's not at all.
        let weights = |s: &[EvalShard]| s.iter().map(|s| s.weight).collect::<Vec<_>>();
        assert_eq!((weights(&zero), weights(&one)), (vec![2, 1], vec![2, 0]));
        assert_eq!(one[1].round, 1);
    }
}
