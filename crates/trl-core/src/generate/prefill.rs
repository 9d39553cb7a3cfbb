//! The prompts' forward that fills a fresh KV cache. Rows that repeat another row (a prompt's
//! `num_return_sequences` copies, or GRPO's `num_generations` copies of a prompt) run once and
//! their cache rows and logits are copied: every row of the forward is computed on its own
//! (per-row matmul products, per-sequence attention, per-row norms), so a copy holds exactly
//! the numbers its own forward would, and the prefill costs one row per distinct prompt.

use std::collections::HashMap;

use burn::tensor::{Int, Tensor, TensorData};

use crate::model::{CausalLm, KvCache};

/// The prompts' forward into a fresh cache of `capacity` columns: last-position logits
/// `[rows, vocab]` and the cache of every row. Identical rows (a prompt's
/// `num_return_sequences` copies, or a prompt repeated by GRPO's sampler) run once and are
/// copied afterwards: every row's numbers are computed on their own, so the copies equal what
/// running each row would give, at a fraction of the prefill.
pub(super) fn prefill(
    model: &CausalLm,
    input_ids: &[Vec<u32>],
    attention_mask: &[Vec<i64>],
    capacity: usize,
) -> (Tensor<2>, KvCache) {
    let (distinct, copy_of) = distinct_rows(input_ids, attention_mask);
    let pick = |rows: &[usize]| -> (Vec<Vec<u32>>, Vec<Vec<i64>>) {
        rows.iter()
            .map(|&r| (input_ids[r].clone(), attention_mask[r].clone()))
            .unzip()
    };
    let (ids, mask) = pick(&distinct);
    let device = model.device();
    let mut cache = KvCache::new(model.config(), ids.len(), capacity, &device);
    let logits = model.last_logits_cached(&ids, &mask, &mut cache);
    if distinct.len() == input_ids.len() {
        return (logits, cache);
    }
    cache.copy_rows(&copy_of);
    let index: Vec<i64> = copy_of.iter().map(|&r| r as i64).collect();
    let index = Tensor::<1, Int>::from_data(TensorData::new(index, [copy_of.len()]), &device);
    (logits.select(0, index), cache)
}

/// `(first index of each distinct row, for every row the position of its row among the
/// distinct ones)`: rows are equal when both their ids and their mask are.
fn distinct_rows(input_ids: &[Vec<u32>], attention_mask: &[Vec<i64>]) -> (Vec<usize>, Vec<usize>) {
    let mut seen: HashMap<(&[u32], &[i64]), usize> = HashMap::new();
    let mut distinct = Vec::new();
    let copy_of = input_ids
        .iter()
        .zip(attention_mask)
        .enumerate()
        .map(|(row, (ids, mask))| {
            *seen
                .entry((ids.as_slice(), mask.as_slice()))
                .or_insert_with(|| {
                    distinct.push(row);
                    distinct.len() - 1
                })
        })
        .collect();
    (distinct, copy_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_rows_map_to_their_first_copy() {
        let ids = vec![vec![0, 5], vec![3, 4], vec![0, 5], vec![0, 5], vec![3, 4]];
        let mask = vec![vec![0, 1], vec![1, 1], vec![0, 1], vec![1, 1], vec![1, 1]];
        let (distinct, copy_of) = distinct_rows(&ids, &mask);
        // row 3 has row 0's ids but another mask: a row of its own
        assert_eq!(distinct, vec![0, 1, 3]);
        assert_eq!(copy_of, vec![0, 1, 0, 2, 1]);
    }
}
