//! Rows -> training examples with TRL's SFT preparation, and examples -> model batches.
//!
//! Preparation (TRL `SFTTrainer._prepare_dataset`): EOS appended to standard text and
//! completions, chat templates for conversations, completion-only and assistant-only label
//! masks, truncation, dropping rows with nothing to learn, and BFD packing.

use serde_json::{Map, Value};
use trl_core::data::is_conversation;
use trl_core::logprobs::IGNORE_INDEX;
use trl_core::model::TokenBatch;
use trl_core::tokenizer::{RenderOptions, Tokenizer};

use crate::config::{SftConfig, TruncationMode};

/// One prepared training row: tokens, labels (`-100` where not trained on) and, for packed
/// rows, the lengths of the samples packed into it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SftExample {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
    /// Lengths of the samples in this row (one entry when not packed).
    pub seq_lengths: Vec<usize>,
}

/// An error in one row, with the 0-based row index.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    pub row: usize,
    pub message: String,
}

fn row_error(row: usize, message: impl Into<String>) -> RowError {
    RowError {
        row,
        message: message.into(),
    }
}

/// Tokenizes every row as TRL does and applies truncation and the empty-label filter.
pub fn prepare_examples(
    rows: &[Map<String, Value>],
    tokenizer: &Tokenizer,
    config: &SftConfig,
) -> Result<Vec<SftExample>, RowError> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let completion_only = config
        .completion_only_loss
        .unwrap_or(first.contains_key("prompt") && first.contains_key("completion"));
    let eos = tokenizer.eos_token().map(str::to_string);
    let mut examples = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        let (input_ids, masks) = tokenize_row(
            row,
            index,
            tokenizer,
            config,
            completion_only,
            eos.as_deref(),
        )?;
        let mut labels: Vec<i64> = input_ids
            .iter()
            .zip(&masks)
            .map(|(&id, &keep)| if keep { id as i64 } else { IGNORE_INDEX })
            .collect();
        let mut input_ids = input_ids;
        if let (Some(max), false) = (config.max_length, config.packing) {
            truncate(&mut input_ids, max, config.truncation_mode);
            truncate(&mut labels, max, config.truncation_mode);
        }
        // TRL drops rows whose labels are all ignored (e.g. a prompt that fills max_length).
        if labels.iter().all(|&l| l == IGNORE_INDEX) {
            continue;
        }
        let len = input_ids.len();
        examples.push(SftExample {
            input_ids,
            labels,
            seq_lengths: vec![len],
        });
    }
    if config.packing {
        let max = config.max_length.unwrap_or(1024);
        examples = pack_bfd(examples, max);
    }
    Ok(examples)
}

fn truncate<T>(values: &mut Vec<T>, max: usize, mode: TruncationMode) {
    if values.len() > max {
        match mode {
            TruncationMode::KeepStart => values.truncate(max),
            TruncationMode::KeepEnd => {
                values.drain(..values.len() - max);
            }
        }
    }
}

/// Token ids of one row and a per-token "is trained on" mask.
fn tokenize_row(
    row: &Map<String, Value>,
    index: usize,
    tokenizer: &Tokenizer,
    config: &SftConfig,
    completion_only: bool,
    eos: Option<&str>,
) -> Result<(Vec<u32>, Vec<bool>), RowError> {
    let fail = |e: trl_core::Error| row_error(index, e.to_string());
    let options = |generation_prompt: bool| RenderOptions {
        add_generation_prompt: generation_prompt,
        tools: row.get("tools").cloned().filter(|t| !t.is_null()),
        ..RenderOptions::default()
    };
    let with_eos = |text: &str| match eos {
        Some(eos) if !text.ends_with(eos) => format!("{text}{eos}"),
        _ => text.to_string(),
    };
    if let (Some(prompt), Some(completion)) = (row.get("prompt"), row.get("completion")) {
        let (prompt_ids, input_ids, assistant) = if is_conversation(Some(prompt)) {
            let mut full = prompt.as_array().cloned().unwrap_or_default();
            full.extend(completion.as_array().cloned().unwrap_or_default());
            let full = Value::Array(full);
            let prompt_ids = tokenizer
                .apply_chat_template_ids(prompt, &options(true))
                .map_err(fail)?;
            let (ids, assistant) = if config.assistant_only_loss {
                let encoding =
                    assistant_encoding(tokenizer, &full, &options(false)).map_err(fail)?;
                (encoding.0, Some(encoding.1))
            } else {
                (
                    tokenizer
                        .apply_chat_template_ids(&full, &options(false))
                        .map_err(fail)?,
                    None,
                )
            };
            (prompt_ids, ids, assistant)
        } else {
            let (Some(prompt), Some(completion)) = (prompt.as_str(), completion.as_str()) else {
                return Err(row_error(
                    index,
                    "prompt and completion must both be strings or both be message lists",
                ));
            };
            let prompt_ids = tokenizer.encode(prompt, true).map_err(fail)?;
            let ids = tokenizer
                .encode(&with_eos(&format!("{prompt}{completion}")), true)
                .map_err(fail)?;
            (prompt_ids, ids, None)
        };
        let prefix = prompt_ids
            .iter()
            .zip(&input_ids)
            .take_while(|(a, b)| a == b)
            .count();
        let mask = (0..input_ids.len())
            .map(|i| (!completion_only || i >= prefix) && assistant.as_ref().is_none_or(|a| a[i]))
            .collect();
        return Ok((input_ids, mask));
    }
    if let Some(messages) = row.get("messages").filter(|m| is_conversation(Some(m))) {
        if config.assistant_only_loss {
            let (ids, mask) =
                assistant_encoding(tokenizer, messages, &options(false)).map_err(fail)?;
            if !mask.iter().any(|&m| m) {
                return Err(row_error(
                    index,
                    "assistant_only_loss: the conversation has no assistant tokens",
                ));
            }
            return Ok((ids, mask));
        }
        let ids = tokenizer
            .apply_chat_template_ids(messages, &options(false))
            .map_err(fail)?;
        let len = ids.len();
        return Ok((ids, vec![true; len]));
    }
    if let Some(text) = row.get(&config.dataset_text_field) {
        let Some(text) = text.as_str() else {
            return Err(row_error(
                index,
                format!("column {:?} must be a string", config.dataset_text_field),
            ));
        };
        if config.assistant_only_loss {
            return Err(row_error(
                index,
                "assistant_only_loss needs conversational data (messages)",
            ));
        }
        let ids = tokenizer.encode(&with_eos(text), true).map_err(fail)?;
        let len = ids.len();
        return Ok((ids, vec![true; len]));
    }
    Err(row_error(
        index,
        format!(
            "expected a {:?}, \"messages\" or \"prompt\"+\"completion\" column for SFT",
            config.dataset_text_field
        ),
    ))
}

/// Ids and an assistant-token mask. With `{% generation %}` markers in the template they come
/// from the markers (as transformers does); otherwise we derive each assistant turn's span by
/// rendering the conversation up to that turn, so any chat template works (TRL instead needs a
/// template with markers).
fn assistant_encoding(
    tokenizer: &Tokenizer,
    messages: &Value,
    options: &RenderOptions,
) -> trl_core::Result<(Vec<u32>, Vec<bool>)> {
    let template = tokenizer.chat_template(options.tools.is_some())?;
    if template.has_generation_blocks() {
        let encoding = tokenizer.apply_chat_template_with_assistant_mask(messages, options)?;
        return Ok((
            encoding.input_ids,
            encoding.assistant_masks.iter().map(|&m| m == 1).collect(),
        ));
    }
    let turns = messages.as_array().cloned().unwrap_or_default();
    let full_text = tokenizer.apply_chat_template(messages, options)?;
    let mut spans = Vec::new();
    for (i, turn) in turns.iter().enumerate() {
        if turn.get("role").and_then(Value::as_str) != Some("assistant") {
            continue;
        }
        let before = Value::Array(turns[..i].to_vec());
        let through = Value::Array(turns[..=i].to_vec());
        let start = tokenizer.apply_chat_template(
            &before,
            &RenderOptions {
                add_generation_prompt: true,
                ..options.clone()
            },
        )?;
        let end = tokenizer.apply_chat_template(&through, options)?;
        if full_text.starts_with(&end) && end.starts_with(&start) {
            spans.push(start.len()..end.len());
        }
    }
    let encoding = tokenizer
        .backend()
        .encode(full_text.as_str(), false)
        .map_err(|e| trl_core::Error::Tokenizer {
            message: e.to_string(),
        })?;
    let mask = encoding
        .get_offsets()
        .iter()
        .map(|&(s, e)| spans.iter().any(|span| s < span.end && e > span.start))
        .collect();
    Ok((encoding.get_ids().to_vec(), mask))
}

/// TRL's best-fit-decreasing packing: sequences (truncated to `capacity`) sorted longest first
/// go into the fullest bin that still fits them; rows keep bin creation order.
pub fn pack_bfd(examples: Vec<SftExample>, capacity: usize) -> Vec<SftExample> {
    let mut sequences: Vec<SftExample> = examples
        .into_iter()
        .filter(|e| !e.input_ids.is_empty())
        .map(|mut e| {
            e.input_ids.truncate(capacity);
            e.labels.truncate(capacity);
            e
        })
        .collect();
    let mut order: Vec<usize> = (0..sequences.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(sequences[i].input_ids.len()), i));
    // Each bin: member indices, remaining space, and when it reached that space (FIFO ties).
    let mut bins: Vec<(Vec<usize>, usize, usize)> = Vec::new();
    for (tick, &i) in order.iter().enumerate() {
        let len = sequences[i].input_ids.len();
        let best = bins
            .iter()
            .enumerate()
            .filter(|(_, (_, remaining, _))| *remaining >= len && *remaining < capacity + 1)
            .min_by_key(|(_, (_, remaining, since))| (*remaining, *since))
            .map(|(b, _)| b);
        let bin = match best {
            Some(b) => b,
            None => {
                bins.push((Vec::new(), capacity, tick));
                bins.len() - 1
            }
        };
        bins[bin].0.push(i);
        bins[bin].1 -= len;
        bins[bin].2 = tick;
    }
    bins.into_iter()
        .map(|(members, _, _)| {
            let mut row = SftExample {
                input_ids: Vec::new(),
                labels: Vec::new(),
                seq_lengths: Vec::new(),
            };
            for i in members {
                let seq = std::mem::replace(
                    &mut sequences[i],
                    SftExample {
                        input_ids: Vec::new(),
                        labels: Vec::new(),
                        seq_lengths: Vec::new(),
                    },
                );
                row.seq_lengths.push(seq.input_ids.len());
                row.input_ids.extend(seq.input_ids);
                row.labels.extend(seq.labels);
            }
            row
        })
        .collect()
}

/// A collated micro-batch: model inputs, labels and the token count TRL adds to `num_tokens`.
#[derive(Debug, Clone, PartialEq)]
pub struct SftBatch {
    pub tokens: TokenBatch,
    /// `[batch][seq]`
    pub labels: Vec<Vec<i64>>,
    pub num_tokens: f64,
}

/// Right-pads examples to the longest (rounded up to `pad_to_multiple_of`), or, padding-free,
/// concatenates them into one row whose positions restart at every sample.
pub fn collate(
    examples: &[&SftExample],
    pad_id: u32,
    padding_free: bool,
    pad_to_multiple_of: Option<usize>,
) -> SftBatch {
    let round_up = |len: usize| match pad_to_multiple_of {
        Some(m) if m > 0 => len.div_ceil(m) * m,
        _ => len,
    };
    if padding_free {
        let mut ids = Vec::new();
        let mut labels = Vec::new();
        let mut positions = Vec::new();
        for example in examples {
            let mut offset = 0;
            for &len in &example.seq_lengths {
                for p in 0..len {
                    ids.push(example.input_ids[offset + p]);
                    // The first token of every sample is never a target of the previous one.
                    labels.push(if p == 0 {
                        IGNORE_INDEX
                    } else {
                        example.labels[offset + p]
                    });
                    positions.push(p as i64);
                }
                offset += len;
            }
        }
        let real = ids.len();
        let total = round_up(real);
        ids.resize(total, pad_id);
        labels.resize(total, IGNORE_INDEX);
        positions.resize(total, 0);
        let mask = vec![1i64; total];
        return SftBatch {
            tokens: TokenBatch::with_position_ids(vec![ids], vec![mask], vec![positions]),
            labels: vec![labels],
            num_tokens: total as f64,
        };
    }
    let longest = round_up(
        examples
            .iter()
            .map(|e| e.input_ids.len())
            .max()
            .unwrap_or(0),
    );
    let mut ids = Vec::with_capacity(examples.len());
    let mut masks = Vec::with_capacity(examples.len());
    let mut labels = Vec::with_capacity(examples.len());
    let mut num_tokens = 0.0;
    for example in examples {
        let len = example.input_ids.len();
        num_tokens += len as f64;
        let mut row = example.input_ids.clone();
        row.resize(longest, pad_id);
        let mut row_labels = example.labels.clone();
        row_labels.resize(longest, IGNORE_INDEX);
        let mut mask = vec![1i64; len];
        mask.resize(longest, 0);
        ids.push(row);
        labels.push(row_labels);
        masks.push(mask);
    }
    SftBatch {
        tokens: TokenBatch::new(ids, masks),
        labels,
        num_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(len: usize) -> SftExample {
        SftExample {
            input_ids: vec![len as u32; len],
            labels: vec![1; len],
            seq_lengths: vec![len],
        }
    }

    #[test]
    fn bfd_fills_the_tightest_bin_first() {
        let packed = pack_bfd(
            vec![example(5), example(3), example(6), example(2), example(4)],
            8,
        );
        let lengths: Vec<Vec<usize>> = packed.iter().map(|r| r.seq_lengths.clone()).collect();
        assert_eq!(lengths, vec![vec![6, 2], vec![5, 3], vec![4]]);
    }

    #[test]
    fn padding_free_restarts_positions_and_masks_first_labels() {
        let a = SftExample {
            input_ids: vec![1, 2, 3],
            labels: vec![1, 2, 3],
            seq_lengths: vec![2, 1],
        };
        let batch = collate(&[&a], 0, true, Some(4));
        assert_eq!(batch.tokens.position_ids, vec![vec![0, 1, 0, 0]]);
        assert_eq!(
            batch.labels,
            vec![vec![IGNORE_INDEX, 2, IGNORE_INDEX, IGNORE_INDEX]]
        );
        assert_eq!(batch.num_tokens, 4.0);
    }

    #[test]
    fn right_padding_uses_pad_id_and_ignored_labels() {
        let (a, b) = (example(3), example(1));
        let batch = collate(&[&a, &b], 9, false, None);
        assert_eq!(batch.tokens.input_ids[1], vec![1, 9, 9]);
        assert_eq!(batch.labels[1], vec![1, IGNORE_INDEX, IGNORE_INDEX]);
        assert_eq!(batch.tokens.attention_mask[1], vec![1, 0, 0]);
        assert_eq!(batch.num_tokens, 4.0);
    }
}
