//! Which key each query may attend to: causal, padding, packed-sample boundaries and sliding
//! windows, combined once per forward pass and shared by every layer.
//!
//! Built on the host: it is `batch * seq * seq` booleans computed from integer ids, cheaper
//! than a chain of device ops and exact by construction.

use burn::tensor::{Bool, Device, Tensor, TensorData};

/// Position ids transformers would use for a padded batch: `cumsum(mask) - 1`, clamped at 0.
/// Right padding gives `0..n` on real tokens; left padding starts real tokens at 0 too.
pub fn position_ids_from_mask(attention_mask: &[Vec<i64>]) -> Vec<Vec<i64>> {
    attention_mask
        .iter()
        .map(|row| {
            let mut seen = 0i64;
            row.iter()
                .map(|&m| {
                    seen += (m != 0) as i64;
                    (seen - 1).max(0)
                })
                .collect()
        })
        .collect()
}

/// Segment index of every token: a new segment starts wherever the position id does not
/// follow its predecessor by one (transformers' `find_packed_sequence_indices`), so packed
/// samples whose positions restart at 0 never see each other.
fn segments(position_ids: &[i64]) -> Vec<usize> {
    let mut segment = 0usize;
    position_ids
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            if i > 0 && p != position_ids[i - 1] + 1 {
                segment += 1;
            }
            segment
        })
        .collect()
}

/// `true` where query `q` must not see key `k`, for one row: keys after the query, padding
/// keys, keys of another packed sample, keys outside the sliding window. A query always sees
/// itself so that padded rows stay finite (their outputs are never used).
pub fn blocked_keys(
    attention_mask: &[i64],
    position_ids: &[i64],
    sliding_window: Option<usize>,
) -> Vec<bool> {
    let seq = attention_mask.len();
    let segment = segments(position_ids);
    let mut blocked = vec![true; seq * seq];
    for q in 0..seq {
        for k in 0..=q {
            let outside_window = sliding_window.is_some_and(|w| q - k >= w);
            let visible = attention_mask[k] != 0 && segment[k] == segment[q] && !outside_window;
            blocked[q * seq + k] = !(visible || k == q);
        }
    }
    blocked
}

/// The mask tensor `[batch, 1, seq, seq]` (`true` = blocked) for a batch.
pub fn attention_block_mask(
    attention_mask: &[Vec<i64>],
    position_ids: &[Vec<i64>],
    sliding_window: Option<usize>,
    device: &Device,
) -> Tensor<4, Bool> {
    let batch = attention_mask.len();
    let seq = attention_mask.first().map_or(0, Vec::len);
    let mut data = Vec::with_capacity(batch * seq * seq);
    for (mask_row, pos_row) in attention_mask.iter().zip(position_ids) {
        data.extend(blocked_keys(mask_row, pos_row, sliding_window));
    }
    Tensor::from_data(TensorData::new(data, [batch, 1, seq, seq]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_padding_positions_start_at_zero() {
        let pos = position_ids_from_mask(&[vec![0, 0, 1, 1, 1], vec![1, 1, 1, 0, 0]]);
        assert_eq!(pos, vec![vec![0, 0, 0, 1, 2], vec![0, 1, 2, 2, 2]]);
    }

    #[test]
    fn packed_samples_do_not_see_each_other() {
        // two samples of length 2 and 3 packed in one row
        let blocked = blocked_keys(&[1, 1, 1, 1, 1], &[0, 1, 0, 1, 2], None);
        let row = |q: usize| (0..5).map(|k| !blocked[q * 5 + k]).collect::<Vec<_>>();
        assert_eq!(row(1), [true, true, false, false, false]);
        assert_eq!(row(4), [false, false, true, true, true]);
    }

    #[test]
    fn padding_keys_are_blocked_but_a_pad_query_sees_itself() {
        let blocked = blocked_keys(&[0, 1, 1], &[0, 0, 1], None);
        assert_eq!(&blocked[0..3], &[false, true, true]);
        assert_eq!(&blocked[6..9], &[true, false, false]);
    }

    #[test]
    fn sliding_window_limits_lookback() {
        let blocked = blocked_keys(&[1; 4], &[0, 1, 2, 3], Some(2));
        assert_eq!(&blocked[12..16], &[true, true, false, false]);
    }
}
