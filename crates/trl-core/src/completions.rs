//! Batches of `prompt + completion` sequences, the input of every preference method (DPO's
//! pairs, KTO's examples and KL pairs): truncated, right-padded, labelled on the completion.

use serde::{Deserialize, Serialize};

use crate::logprobs::IGNORE_INDEX;
use crate::model::TokenBatch;

/// Which end of a too-long sequence survives (`truncation_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TruncationMode {
    KeepStart,
    KeepEnd,
}

/// How sequences are cut and padded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaddingOptions {
    pub pad_token_id: u32,
    pub max_length: Option<usize>,
    pub truncation_mode: TruncationMode,
    pub pad_to_multiple_of: Option<usize>,
}

/// A right-padded batch of `prompt + completion` rows.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionBatch {
    pub tokens: TokenBatch,
    /// `[rows][seq]`: token ids on completion tokens, `-100` elsewhere.
    pub labels: Vec<Vec<i64>>,
    /// `[rows][seq]`: 1 on completion tokens (TRL's `completion_mask`).
    pub completion_mask: Vec<Vec<i64>>,
    /// Non-padding tokens (TRL's `num_tokens`).
    pub num_tokens: f64,
}

/// Concatenates each `(prompt, completion)`, truncates it per sequence, pads on the right
/// (TRL's `DataCollatorForPreference` / `DataCollatorForUnpairedPreference`).
pub fn collate_completions(rows: &[(&[u32], &[u32])], options: &PaddingOptions) -> CompletionBatch {
    let sequences: Vec<(Vec<u32>, Vec<i64>)> = rows
        .iter()
        .map(|(prompt, completion)| {
            let mut ids = prompt.to_vec();
            ids.extend_from_slice(completion);
            let mut mask = vec![0i64; prompt.len()];
            mask.extend(std::iter::repeat_n(1, completion.len()));
            if let Some(max) = options.max_length
                && ids.len() > max
            {
                let cut = ids.len() - max;
                match options.truncation_mode {
                    TruncationMode::KeepStart => {
                        ids.truncate(max);
                        mask.truncate(max);
                    }
                    TruncationMode::KeepEnd => {
                        ids.drain(..cut);
                        mask.drain(..cut);
                    }
                }
            }
            (ids, mask)
        })
        .collect();
    let longest = sequences
        .iter()
        .map(|(ids, _)| ids.len())
        .max()
        .unwrap_or(0);
    let width = match options.pad_to_multiple_of {
        Some(m) if m > 0 => longest.div_ceil(m) * m,
        _ => longest,
    };
    let mut input_ids = Vec::with_capacity(sequences.len());
    let mut attention = Vec::with_capacity(sequences.len());
    let mut labels = Vec::with_capacity(sequences.len());
    let mut completion_mask = Vec::with_capacity(sequences.len());
    let mut num_tokens = 0.0;
    for (ids, mask) in sequences {
        let len = ids.len();
        num_tokens += len as f64;
        let mut row_labels: Vec<i64> = ids
            .iter()
            .zip(&mask)
            .map(|(&id, &m)| if m == 1 { id as i64 } else { IGNORE_INDEX })
            .collect();
        row_labels.resize(width, IGNORE_INDEX);
        let mut row_ids = ids;
        row_ids.resize(width, options.pad_token_id);
        let mut row_mask = mask;
        row_mask.resize(width, 0);
        let mut row_attention = vec![1i64; len];
        row_attention.resize(width, 0);
        input_ids.push(row_ids);
        attention.push(row_attention);
        labels.push(row_labels);
        completion_mask.push(row_mask);
    }
    CompletionBatch {
        tokens: TokenBatch::new(input_ids, attention),
        labels,
        completion_mask,
        num_tokens,
    }
}

/// The rows of a padded batch concatenated into one row without padding (positions restart
/// at every sequence, so attention never crosses sequences), and for every padded position
/// `(row, column)` the flat position it came from (padding maps to 0; its label is ignored).
///
/// The transformer then runs on real tokens only; gathering its output back with `index`
/// restores the padded layout the losses and metrics read.
pub fn flatten_padding(batch: &TokenBatch) -> (TokenBatch, Vec<i64>) {
    let [rows, width] = batch.dims();
    let mut ids = Vec::new();
    let mut positions = Vec::new();
    let mut index = vec![0i64; rows * width];
    for (r, (row, mask)) in batch
        .input_ids
        .iter()
        .zip(&batch.attention_mask)
        .enumerate()
    {
        let mut position = 0;
        for (c, (&id, &m)) in row.iter().zip(mask).enumerate() {
            if m != 0 {
                index[r * width + c] = ids.len() as i64;
                ids.push(id);
                positions.push(position);
                position += 1;
            }
        }
    }
    let total = ids.len();
    (
        TokenBatch::with_position_ids(vec![ids], vec![vec![1; total]], vec![positions]),
        index,
    )
}

/// Length of the longest common prefix: TRL's `common_prefix_length`, where a completion
/// starts when the tokenized prompt is not a prefix of the tokenized prompt + completion.
pub fn common_prefix_length(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// How many completion tokens of `prompt + completion` are trained on (have a label: every
/// position but the first predicts one) once the sequence is cut to `max_length` the way
/// [`collate_completions`] cuts it. Zero where truncation leaves no completion token, which
/// the caller must refuse (an empty row would leave nothing to shift labels against).
pub fn trained_completion_tokens(
    prompt_len: usize,
    completion_len: usize,
    max_length: Option<usize>,
    truncation_mode: TruncationMode,
) -> usize {
    let total = prompt_len + completion_len;
    // The window [start, end) of the original sequence that survives.
    let (start, end) = match max_length {
        Some(max) if total > max => match truncation_mode {
            TruncationMode::KeepStart => (0, max),
            TruncationMode::KeepEnd => (total - max, total),
        },
        _ => (0, total),
    };
    end.saturating_sub(prompt_len.max(start + 1))
}

/// An error message when `max_length` and `truncation_mode` cut away every trained token of a
/// completion that has some without truncation; `what` names the completion (`chosen`, ...).
pub fn check_completion_survives(
    prompt_len: usize,
    completion_len: usize,
    max_length: Option<usize>,
    truncation_mode: TruncationMode,
    what: &str,
) -> Result<(), String> {
    let before = trained_completion_tokens(prompt_len, completion_len, None, truncation_mode);
    let after = trained_completion_tokens(prompt_len, completion_len, max_length, truncation_mode);
    match max_length {
        Some(max) if before > 0 && after == 0 => Err(format!(
            "max_length {max} with truncation_mode {} leaves no token of the {what} to train on \
             (prompt {prompt_len} tokens, {what} {completion_len}); raise max_length",
            match truncation_mode {
                TruncationMode::KeepStart => "keep_start",
                TruncationMode::KeepEnd => "keep_end",
            }
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_that_leaves_no_completion_token_is_refused() {
        let keep_end = TruncationMode::KeepEnd;
        let keep_start = TruncationMode::KeepStart;
        // prompt 3 + completion 2: positions 3 and 4 are trained on
        assert_eq!(trained_completion_tokens(3, 2, None, keep_start), 2);
        assert_eq!(trained_completion_tokens(3, 2, Some(4), keep_start), 1);
        assert_eq!(trained_completion_tokens(3, 2, Some(3), keep_start), 0);
        assert_eq!(trained_completion_tokens(3, 2, Some(2), keep_end), 1);
        // keep_end with one token left: it is the first position, so no label
        assert_eq!(trained_completion_tokens(3, 2, Some(1), keep_end), 0);
        assert_eq!(trained_completion_tokens(3, 2, Some(0), keep_end), 0);
        let err = check_completion_survives(3, 2, Some(0), keep_end, "chosen").unwrap_err();
        assert!(
            err.contains("max_length 0") && err.contains("chosen"),
            "{err}"
        );
        assert!(check_completion_survives(3, 2, Some(2), keep_end, "chosen").is_ok());
        // nothing to lose: an empty completion is not truncation's fault
        assert!(check_completion_survives(3, 0, Some(1), keep_end, "chosen").is_ok());
    }

    #[test]
    fn flattening_drops_padding_and_restarts_positions() {
        let batch = TokenBatch::new(
            vec![vec![1, 2, 0], vec![3, 4, 5]],
            vec![vec![1, 1, 0], vec![1, 1, 1]],
        );
        let (flat, index) = flatten_padding(&batch);
        assert_eq!(flat.input_ids, vec![vec![1, 2, 3, 4, 5]]);
        assert_eq!(flat.position_ids, vec![vec![0, 1, 0, 1, 2]]);
        assert_eq!(index, vec![0, 1, 0, 2, 3, 4]);
    }

    #[test]
    fn truncates_then_pads_on_the_right() {
        let options = PaddingOptions {
            pad_token_id: 0,
            max_length: Some(4),
            truncation_mode: TruncationMode::KeepStart,
            pad_to_multiple_of: None,
        };
        let batch = collate_completions(&[(&[1, 2, 3], &[4, 5]), (&[7], &[8])], &options);
        assert_eq!(
            batch.tokens.input_ids,
            vec![vec![1, 2, 3, 4], vec![7, 8, 0, 0]]
        );
        assert_eq!(
            batch.completion_mask,
            vec![vec![0, 0, 0, 1], vec![0, 1, 0, 0]]
        );
        assert_eq!(
            batch.labels[1],
            vec![IGNORE_INDEX, 8, IGNORE_INDEX, IGNORE_INDEX]
        );
        assert_eq!(batch.num_tokens, 6.0);
    }
}
