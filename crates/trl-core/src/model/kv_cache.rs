//! The key/value cache of incremental decoding: what each layer's attention computed for the
//! tokens seen so far, so a new token costs one position instead of the whole sequence.
//!
//! Every row of a batch advances by the same number of columns (left padding keeps rows
//! aligned), so one column index `len` says where the next keys go. The buffers are allocated
//! once at `capacity` columns and written in place (`slice_assign` on a uniquely owned flex
//! tensor does not copy); columns at or after `len` are masked out of attention.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use super::config::DecoderConfig;
use crate::kernels::SharedPrefix;

/// One layer's keys and values, each `[rows, kv_heads, capacity, head_dim]`. `Option` only so
/// they can be moved out and back for the in-place write.
#[derive(Debug)]
pub(crate) struct LayerKv {
    pub(crate) keys: Option<Tensor<4>>,
    pub(crate) values: Option<Tensor<4>>,
}

/// The cache of a batch of sequences, created empty by [`KvCache::new`] and filled by
/// [`super::CausalLm::forward_cached`].
#[derive(Debug)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    /// `[rows][capacity]`: true where a real (non-padding) token was written.
    key_mask: Vec<Vec<bool>>,
    /// `[rows]`: the position id the next real token of each row gets.
    next_position: Vec<i64>,
    len: usize,
    capacity: usize,
    sliding_window: Option<usize>,
    /// Rows that are copies of another row in their first columns (see [`KvCache::copy_rows`]).
    shared: SharedPrefix,
}

impl KvCache {
    /// An empty cache for `rows` sequences of at most `capacity` tokens (prompt + new tokens).
    pub fn new(config: &DecoderConfig, rows: usize, capacity: usize, device: &Device) -> Self {
        let dims = [rows, config.num_key_value_heads, capacity, config.head_dim];
        let layers = (0..config.num_hidden_layers)
            .map(|_| LayerKv {
                keys: Some(Tensor::zeros(dims, device)),
                values: Some(Tensor::zeros(dims, device)),
            })
            .collect();
        KvCache {
            layers,
            key_mask: vec![vec![false; capacity]; rows],
            next_position: vec![0; rows],
            len: 0,
            capacity,
            sliding_window: config.sliding_window,
            shared: SharedPrefix::default(),
        }
    }

    /// Fills the cache's rows with copies of its current rows (`copy_of[i]` becomes row `i`),
    /// remembering which rows are copies of one another: their columns written so far hold the
    /// same numbers, which the decoding attention then reads from one of them.
    pub fn copy_rows(&mut self, copy_of: &[usize]) {
        self.keep_rows(copy_of);
        let first: Vec<usize> = copy_of
            .iter()
            .map(|original| copy_of.iter().position(|o| o == original).expect("present"))
            .collect();
        self.shared = SharedPrefix {
            source: first,
            columns: self.len,
        };
    }

    /// Which rows may read their first columns from another row.
    pub fn shared_prefix(&self) -> &SharedPrefix {
        &self.shared
    }

    /// Columns written so far (the padded length of every row).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first forward.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most columns this cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sequences in the cache.
    pub fn rows(&self) -> usize {
        self.next_position.len()
    }

    /// Keeps only the rows `keep` (indices into the current rows, in the order given), so
    /// finished sequences stop costing compute.
    pub fn keep_rows(&mut self, keep: &[usize]) {
        if keep.len() == self.rows() && keep.iter().enumerate().all(|(i, &r)| i == r) {
            return;
        }
        let select = |t: Option<Tensor<4>>| {
            let t = t.expect("cache tensors are only absent during a write");
            let index: Vec<i64> = keep.iter().map(|&r| r as i64).collect();
            let index =
                Tensor::<1, Int>::from_data(TensorData::new(index, [keep.len()]), &t.device());
            // A fresh contiguous tensor, so the next in-place write owns its buffer.
            Some(t.select(0, index))
        };
        for layer in &mut self.layers {
            layer.keys = select(layer.keys.take());
            layer.values = select(layer.values.take());
        }
        self.key_mask = keep.iter().map(|&r| self.key_mask[r].clone()).collect();
        self.next_position = keep.iter().map(|&r| self.next_position[r]).collect();
        self.shared.source = kept_sources(&self.shared.source, keep);
    }

    /// Registers `attention_mask` `[rows][new]` as the next columns and returns their position
    /// ids `[rows][new]` (transformers' `cumsum(mask) - 1`, continued from the cached tokens).
    pub(crate) fn append(&mut self, attention_mask: &[Vec<i64>]) -> Vec<Vec<i64>> {
        let new = attention_mask.first().map_or(0, Vec::len);
        assert!(
            self.len + new <= self.capacity,
            "KV cache holds {} columns; {} + {new} asked",
            self.capacity,
            self.len
        );
        let mut positions = Vec::with_capacity(attention_mask.len());
        for (row, mask) in attention_mask.iter().enumerate() {
            let mut next = self.next_position[row];
            let mut row_positions = Vec::with_capacity(new);
            for (i, &m) in mask.iter().enumerate() {
                let real = m != 0;
                self.key_mask[row][self.len + i] = real;
                row_positions.push(if real { next } else { (next - 1).max(0) });
                next += real as i64;
            }
            self.next_position[row] = next;
            positions.push(row_positions);
        }
        positions
    }

    /// Moves the write cursor past `new` columns (after every layer wrote them).
    pub(crate) fn advance(&mut self, new: usize) {
        self.len += new;
    }

    /// `[rows, 1, new, capacity]` (`true` = blocked) for `new` queries at columns
    /// `len..len + new`: causal, padding keys and unwritten columns blocked, sliding window
    /// applied; a query always sees its own column.
    pub(crate) fn block_mask(&self, new: usize, device: &Device) -> Tensor<4, Bool> {
        let (rows, cap) = (self.rows(), self.capacity);
        let mut data = vec![true; rows * new * cap];
        for (row, keys) in self.key_mask.iter().enumerate() {
            for q in 0..new {
                let column = self.len + q;
                let out = &mut data[(row * new + q) * cap..][..cap];
                for (k, blocked) in out.iter_mut().enumerate().take(column + 1) {
                    let outside = self.sliding_window.is_some_and(|w| column - k >= w);
                    *blocked = !((keys[k] && !outside) || k == column);
                }
            }
        }
        Tensor::from_data(TensorData::new(data, [rows, 1, new, cap]), device)
    }
}

/// The shared-prefix sources after keeping rows `keep`: each kept row reads from the first kept
/// row that read from the same source before (itself when it is the first), so a removed
/// source hands its role to a remaining copy.
fn kept_sources(source: &[usize], keep: &[usize]) -> Vec<usize> {
    if source.is_empty() {
        return Vec::new();
    }
    let old: Vec<usize> = keep.iter().map(|&r| source[r]).collect();
    old.iter()
        .map(|s| old.iter().position(|o| o == s).expect("present"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_keep_a_source_row_when_rows_are_dropped() {
        // rows 0-2 copy prompt A, 3-4 prompt B
        let source = vec![0, 0, 0, 3, 3];
        assert_eq!(kept_sources(&source, &[0, 1, 2, 3, 4]), [0, 0, 0, 3, 3]);
        // the source of A (row 0) finished: row 1 (now 0) takes over
        assert_eq!(kept_sources(&source, &[1, 2, 4]), [0, 0, 2]);
        assert_eq!(kept_sources(&[], &[1, 2]), Vec::<usize>::new());
    }

    fn cache(rows: usize, capacity: usize) -> KvCache {
        KvCache {
            layers: Vec::new(),
            key_mask: vec![vec![false; capacity]; rows],
            next_position: vec![0; rows],
            len: 0,
            capacity,
            sliding_window: None,
            shared: SharedPrefix::default(),
        }
    }

    #[test]
    fn positions_continue_across_steps_and_skip_left_padding() {
        let mut c = cache(2, 6);
        let first = c.append(&[vec![0, 0, 1], vec![1, 1, 1]]);
        assert_eq!(first, vec![vec![0, 0, 0], vec![0, 1, 2]]);
        c.advance(3);
        let second = c.append(&[vec![1], vec![1]]);
        assert_eq!(second, vec![vec![1], vec![3]]);
    }

    #[test]
    fn a_new_token_sees_real_cached_keys_and_itself_only() {
        let mut c = cache(1, 5);
        c.append(&[vec![0, 1, 1]]);
        c.advance(3);
        c.append(&[vec![1]]);
        let device = Default::default();
        let mask: Vec<bool> = c.block_mask(1, &device).into_data().try_to_vec().unwrap();
        assert_eq!(mask, vec![true, false, false, false, true]);
    }

    #[test]
    fn kept_rows_carry_their_masks_and_positions() {
        let mut c = cache(3, 4);
        c.append(&[vec![1, 1], vec![0, 1], vec![0, 0]]);
        c.advance(2);
        c.keep_rows(&[1]);
        assert_eq!(c.rows(), 1);
        assert_eq!(c.append(&[vec![1]]), vec![vec![1]]);
    }
}
