//! Response post-processing as TRL 1.12's PPOTrainer does it: truncation after the stop token,
//! sequence lengths from the first pad, and the two padding masks (`padding_mask` over the
//! response tokens, `padding_mask_p1` one position longer for the values).

/// TRL's `first_true_indices`: the index of the first true entry of each row, or the row's
/// length when there is none.
pub fn first_true_indices(bools: &[Vec<bool>]) -> Vec<usize> {
    bools
        .iter()
        .map(|row| row.iter().position(|&b| b).unwrap_or(row.len()))
        .collect()
}

/// TRL's `truncate_response`: every token after the first `stop_token_id` becomes
/// `pad_token_id` (the stop token itself is kept).
pub fn truncate_response(
    stop_token_id: u32,
    pad_token_id: u32,
    responses: &[Vec<u32>],
) -> Vec<Vec<u32>> {
    responses
        .iter()
        .map(|row| {
            let stop = row
                .iter()
                .position(|&t| t == stop_token_id)
                .unwrap_or(row.len());
            row.iter()
                .enumerate()
                .map(|(i, &t)| if i > stop { pad_token_id } else { t })
                .collect()
        })
        .collect()
}

/// `first_true_indices(responses == pad) - 1`: the index of the last real token of each
/// response, -1 when the response starts with a pad (then the pad-valued EOS counts as padding,
/// as in TRL when `pad_token_id == eos_token_id`).
pub fn sequence_lengths(postprocessed: &[Vec<u32>], pad_token_id: u32) -> Vec<i64> {
    let is_pad: Vec<Vec<bool>> = postprocessed
        .iter()
        .map(|row| row.iter().map(|&t| t == pad_token_id).collect())
        .collect();
    first_true_indices(&is_pad)
        .into_iter()
        .map(|i| i as i64 - 1)
        .collect()
}

/// `[rows][cols]`: true where `position > sequence_length + extra` (`padding_mask` with
/// `extra` 0, `padding_mask_p1` with `extra` 1).
pub fn padding_mask(sequence_lengths: &[i64], cols: usize, extra: i64) -> Vec<Vec<bool>> {
    sequence_lengths
        .iter()
        .map(|&len| (0..cols).map(|i| i as i64 > len + extra).collect())
        .collect()
}

/// Whether each response holds `eos_token_id` (TRL's `contain_eos_token`).
pub fn contains_eos(postprocessed: &[Vec<u32>], eos_token_id: Option<u32>) -> Vec<bool> {
    postprocessed
        .iter()
        .map(|row| eos_token_id.is_some_and(|eos| row.contains(&eos)))
        .collect()
}

/// Subtracts `penalty` from the score of every response without an EOS token.
pub fn apply_missing_eos_penalty(scores: &mut [f32], contain_eos: &[bool], penalty: Option<f64>) {
    let Some(penalty) = penalty else { return };
    for (score, &has_eos) in scores.iter_mut().zip(contain_eos) {
        if !has_eos {
            *score -= penalty as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_stop_token_and_pads_after_it() {
        let out = truncate_response(2, 0, &[vec![5, 2, 7, 2], vec![5, 6, 7, 8]]);
        assert_eq!(out, vec![vec![5, 2, 0, 0], vec![5, 6, 7, 8]]);
        assert_eq!(sequence_lengths(&out, 0), vec![1, 3]);
        assert_eq!(
            padding_mask(&[1, 3], 4, 1),
            vec![vec![false, false, false, true], vec![false; 4]]
        );
    }
}
