//! Per-token log-probs and entropies of completion tokens, as TRL's
//! `_get_per_token_logps_and_entropies` computes them: prompts left-padded, completions
//! right-padded, positions `0..seq` (transformers' default when no `position_ids` are given),
//! logits divided by the sampling temperature, and only completion positions projected
//! through the LM head.

use burn::tensor::{Tensor, TensorData};
use trl_core::Result;
use trl_core::logprobs::{IGNORE_INDEX, head_label_log_probs};
use trl_core::model::{CausalLm, TokenBatch};

use crate::rollout::RolloutRow;

/// A padded prompt + completion batch.
pub struct CompletionBatch {
    pub tokens: TokenBatch,
    /// Width of the left-padded prompt block.
    pub prompt_width: usize,
    /// Width of the right-padded completion block.
    pub completion_width: usize,
    /// `[rows][completion_width]`: 1 where the loss counts a completion token.
    pub mask: Vec<f32>,
}

/// Pads `rows` into one batch (`pad_to_multiple_of` rounds each block up, as TRL pads).
pub fn collate(
    rows: &[&RolloutRow],
    pad_id: u32,
    pad_to_multiple_of: Option<usize>,
) -> CompletionBatch {
    let round = |n: usize| pad_to_multiple_of.map_or(n, |m| n.div_ceil(m.max(1)) * m.max(1));
    let prompt_width = round(rows.iter().map(|r| r.prompt_ids.len()).max().unwrap_or(0));
    let completion_width = round(
        rows.iter()
            .map(|r| r.completion_ids.len())
            .max()
            .unwrap_or(0)
            .max(1),
    );
    let width = prompt_width + completion_width;
    let mut input_ids = Vec::with_capacity(rows.len());
    let mut attention = Vec::with_capacity(rows.len());
    let mut mask = Vec::with_capacity(rows.len() * completion_width);
    for row in rows {
        let (p, c) = (row.prompt_ids.len(), row.completion_ids.len());
        let on = i64::from(row.trained);
        let mut ids = vec![pad_id; prompt_width - p];
        ids.extend(&row.prompt_ids);
        ids.extend(&row.completion_ids);
        ids.resize(width, pad_id);
        let mut att = vec![0i64; prompt_width - p];
        att.extend(std::iter::repeat_n(1, p));
        att.extend(std::iter::repeat_n(on, c));
        att.resize(width, 0);
        mask.extend((0..completion_width).map(|t| if t < c && row.trained { 1.0 } else { 0.0 }));
        input_ids.push(ids);
        attention.push(att);
    }
    let positions = vec![(0..width as i64).collect::<Vec<_>>(); rows.len()];
    CompletionBatch {
        tokens: TokenBatch::with_position_ids(input_ids, attention, positions),
        prompt_width,
        completion_width,
        mask,
    }
}

impl CompletionBatch {
    /// `[rows, completion_width]` loss mask on `device`.
    pub fn mask_tensor(&self, device: &burn::tensor::Device) -> Tensor<2> {
        let rows = self.tokens.input_ids.len();
        Tensor::from_data(
            TensorData::new(self.mask.clone(), [rows, self.completion_width]),
            device,
        )
    }
}

/// `(log-probs, entropies)`, both `[rows, completion_width]`: log p(token) of each completion
/// token (0 where masked) and the entropy of the distribution it was drawn from.
pub fn completion_logps(
    model: &CausalLm,
    batch: &CompletionBatch,
    temperature: f64,
) -> (Tensor<2>, Tensor<2>) {
    let (p, c) = (batch.prompt_width, batch.completion_width);
    // [rows, p + c, hidden] -> the c + 1 positions from the prompt's last token on: position
    // p - 1 predicts the first completion token (the last one predicts past the end).
    let hidden = model.decoder().forward(&batch.tokens);
    let start = p.saturating_sub(1);
    let hidden = hidden.narrow(1, start, p + c - start);
    let labels: Vec<Vec<i64>> = batch
        .tokens
        .input_ids
        .iter()
        .zip(&batch.tokens.attention_mask)
        .map(|(ids, att)| {
            let mut labels: Vec<i64> = ids[start..]
                .iter()
                .zip(&att[start..])
                .map(|(&id, &a)| if a == 1 { i64::from(id) } else { IGNORE_INDEX })
                .collect();
            // The first column is the prompt's last token: never a label (prompts are never
            // empty, so `start = p - 1` and the slice holds c + 1 columns).
            labels[0] = IGNORE_INDEX;
            labels
        })
        .collect();
    let label_logps = head_label_log_probs(model, hidden, &labels, temperature);
    // [rows, c]
    let width = label_logps.logps.dims()[1];
    let logps = label_logps.logps.clone().narrow(1, width - c, c);
    let entropies = label_logps.entropies().narrow(1, width - c, c);
    (logps, entropies)
}

/// `rows` of a `[rows, width]` tensor as host vectors, each cut to `lengths[i]` values.
pub fn host_rows(values: Tensor<2>, lengths: &[usize]) -> Result<Vec<Vec<f32>>> {
    let [_, width] = values.dims();
    let flat = trl_core::host::f32_values(values, "the completion log-probs")?;
    Ok(lengths
        .iter()
        .enumerate()
        .map(|(i, &len)| flat[i * width..i * width + len.min(width)].to_vec())
        .collect())
}

/// Host rows padded back into a `[rows, width]` tensor (zeros past each row's end).
pub fn rows_tensor(rows: &[&[f32]], width: usize, device: &burn::tensor::Device) -> Tensor<2> {
    let mut flat = Vec::with_capacity(rows.len() * width);
    for row in rows {
        flat.extend(row.iter().take(width));
        flat.extend(std::iter::repeat_n(0.0, width - row.len().min(width)));
    }
    Tensor::from_data(TensorData::new(flat, [rows.len(), width]), device)
}
