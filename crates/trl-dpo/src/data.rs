//! Preference rows -> token ids with TRL's DPO preparation, and pairs -> one concatenated batch.
//!
//! Preparation (TRL `DPOTrainer._prepare_dataset`): an implicit prompt is split off, EOS is
//! appended to standard completions, `prompt`, `prompt + chosen` and `prompt + rejected` are
//! tokenized (chat template for conversations), and the completions start where the tokenized
//! prompt and prompt+completion stop agreeing. Rows whose prompt alone fills `max_length` are
//! dropped (with `keep_start`).

use serde_json::{Map, Value};
use trl_core::data::maybe_extract_prompt;
use trl_core::logprobs::IGNORE_INDEX;
use trl_core::model::TokenBatch;
use trl_core::tokenizer::{RenderOptions, Tokenizer};

/// One tokenized preference pair.
#[derive(Debug, Clone, PartialEq)]
pub struct DpoExample {
    pub prompt_ids: Vec<u32>,
    pub chosen_ids: Vec<u32>,
    pub rejected_ids: Vec<u32>,
    /// Reference log-probs `(chosen, rejected)` when precomputed.
    pub ref_logps: Option<(f64, f64)>,
}

/// Which end of a too-long `prompt + completion` survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TruncationMode {
    KeepStart,
    KeepEnd,
}

fn is_conversation(value: &Value) -> bool {
    value.get(0).is_some_and(|first| first.get("role").is_some())
}

/// Tokenizes every row as TRL does. Errors carry the 0-based row index.
pub fn prepare_examples(
    rows: &[Map<String, Value>],
    tokenizer: &Tokenizer,
    max_length: Option<usize>,
    truncation_mode: TruncationMode,
) -> Result<Vec<DpoExample>, (usize, String)> {
    let eos = tokenizer.eos_token().unwrap_or_default().to_string();
    let mut examples = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        let mut row = row.clone();
        if !row.contains_key("prompt") && !maybe_extract_prompt(&mut row) {
            return Err((index, "chosen and rejected share no prompt that can be extracted".into()));
        }
        let fail = |e: trl_core::Error| (index, e.to_string());
        let (Some(prompt), Some(chosen), Some(rejected)) = (row.get("prompt"), row.get("chosen"), row.get("rejected"))
        else {
            return Err((index, "expected prompt, chosen and rejected".into()));
        };
        let (prompt_ids, chosen_full, rejected_full) = if is_conversation(prompt) {
            let options = |generation_prompt: bool| RenderOptions {
                add_generation_prompt: generation_prompt,
                tools: row.get("tools").cloned().filter(|t| !t.is_null()),
                ..RenderOptions::default()
            };
            let joined = |completion: &Value| {
                let mut messages = prompt.as_array().cloned().unwrap_or_default();
                messages.extend(completion.as_array().cloned().unwrap_or_default());
                Value::Array(messages)
            };
            (
                tokenizer.apply_chat_template_ids(prompt, &options(true)).map_err(fail)?,
                tokenizer.apply_chat_template_ids(&joined(chosen), &options(false)).map_err(fail)?,
                tokenizer.apply_chat_template_ids(&joined(rejected), &options(false)).map_err(fail)?,
            )
        } else {
            let (Some(prompt), Some(chosen), Some(rejected)) = (prompt.as_str(), chosen.as_str(), rejected.as_str())
            else {
                return Err((index, "prompt, chosen and rejected must all be strings or all be conversations".into()));
            };
            let with_eos = |text: &str| if text.ends_with(&eos) { text.to_string() } else { format!("{text}{eos}") };
            (
                tokenizer.encode(prompt, true).map_err(fail)?,
                tokenizer.encode(&format!("{prompt}{}", with_eos(chosen)), true).map_err(fail)?,
                tokenizer.encode(&format!("{prompt}{}", with_eos(rejected)), true).map_err(fail)?,
            )
        };
        let common = |full: &[u32]| prompt_ids.iter().zip(full).take_while(|(a, b)| a == b).count();
        let prompt_len = common(&chosen_full).min(common(&rejected_full));
        if let (Some(max), TruncationMode::KeepStart) = (max_length, truncation_mode)
            && prompt_len >= max
        {
            continue;
        }
        examples.push(DpoExample {
            prompt_ids: prompt_ids[..prompt_len].to_vec(),
            chosen_ids: chosen_full[prompt_len..].to_vec(),
            rejected_ids: rejected_full[prompt_len..].to_vec(),
            ref_logps: None,
        });
    }
    Ok(examples)
}

/// `[prompt+chosen rows..., prompt+rejected rows...]`, right-padded, with labels set only on
/// completion tokens: one forward pass scores both sides.
#[derive(Debug, Clone, PartialEq)]
pub struct PairBatch {
    pub tokens: TokenBatch,
    /// `[2 * pairs][seq]`, `-100` outside completions.
    pub labels: Vec<Vec<i64>>,
    /// `[2 * pairs][seq]`, 1 on completion tokens (TRL's `completion_mask`).
    pub completion_mask: Vec<Vec<i64>>,
    pub pairs: usize,
    /// Non-padding tokens (TRL's `num_tokens`).
    pub num_tokens: f64,
}

/// TRL's `DataCollatorForPreference`: truncate each sequence, pad on the right.
pub fn collate(
    examples: &[&DpoExample],
    pad_id: u32,
    max_length: Option<usize>,
    truncation_mode: TruncationMode,
    pad_to_multiple_of: Option<usize>,
) -> PairBatch {
    let mut sequences: Vec<(Vec<u32>, Vec<i64>)> = Vec::with_capacity(2 * examples.len());
    for side in 0..2 {
        for example in examples {
            let completion = if side == 0 { &example.chosen_ids } else { &example.rejected_ids };
            let mut ids = example.prompt_ids.clone();
            ids.extend(completion);
            let mut mask = vec![0i64; example.prompt_ids.len()];
            mask.extend(std::iter::repeat_n(1, completion.len()));
            if let Some(max) = max_length
                && ids.len() > max
            {
                match truncation_mode {
                    TruncationMode::KeepStart => {
                        ids.truncate(max);
                        mask.truncate(max);
                    }
                    TruncationMode::KeepEnd => {
                        ids.drain(..ids.len() - max);
                        mask.drain(..mask.len() - max);
                    }
                }
            }
            sequences.push((ids, mask));
        }
    }
    let longest = sequences.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
    let width = match pad_to_multiple_of {
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
        let mut row_labels: Vec<i64> =
            ids.iter().zip(&mask).map(|(&id, &m)| if m == 1 { id as i64 } else { IGNORE_INDEX }).collect();
        row_labels.resize(width, IGNORE_INDEX);
        let mut row_ids = ids;
        row_ids.resize(width, pad_id);
        let mut row_mask = mask;
        row_mask.resize(width, 0);
        let mut row_attention = vec![1i64; len];
        row_attention.resize(width, 0);
        input_ids.push(row_ids);
        attention.push(row_attention);
        labels.push(row_labels);
        completion_mask.push(row_mask);
    }
    PairBatch {
        tokens: TokenBatch::new(input_ids, attention),
        labels,
        completion_mask,
        pairs: examples.len(),
        num_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TRL's own docstring example of `DataCollatorForPreference`.
    #[test]
    fn collates_like_trl_docstring() {
        let a = DpoExample { prompt_ids: vec![1, 2, 3], chosen_ids: vec![4, 5], rejected_ids: vec![6], ref_logps: None };
        let b = DpoExample { prompt_ids: vec![7, 8], chosen_ids: vec![9], rejected_ids: vec![10, 11], ref_logps: None };
        let batch = collate(&[&a, &b], 0, None, TruncationMode::KeepStart, None);
        assert_eq!(
            batch.tokens.input_ids,
            vec![vec![1, 2, 3, 4, 5], vec![7, 8, 9, 0, 0], vec![1, 2, 3, 6, 0], vec![7, 8, 10, 11, 0]]
        );
        assert_eq!(
            batch.completion_mask,
            vec![vec![0, 0, 0, 1, 1], vec![0, 0, 1, 0, 0], vec![0, 0, 0, 1, 0], vec![0, 0, 1, 1, 0]]
        );
        assert_eq!(batch.tokens.attention_mask[1], vec![1, 1, 1, 0, 0]);
        assert_eq!(batch.labels[3], vec![IGNORE_INDEX, IGNORE_INDEX, 10, 11, IGNORE_INDEX]);
    }
}
