//! Preference rows -> token ids with TRL's reward preparation, and pairs -> one batch.
//!
//! Preparation (TRL 1.16 `RewardTrainer._prepare_dataset`):
//! - standard rows get the EOS token appended to `chosen` and `rejected` (unless already there);
//!   conversational rows get none (the chat template closes the turn);
//! - an explicit prompt is prepended: `prompt + chosen`, `prompt + rejected` (string or message
//!   list concatenation). An implicit prompt needs no extraction: `chosen` already starts with
//!   it, and extracting then re-joining it (`maybe_extract_prompt`) gives the same sequence;
//! - standard text is encoded with the tokenizer's special tokens, conversations through the
//!   chat template (`tools` and `chat_template_kwargs` columns honoured);
//! - pairs where either side is longer than `max_length` are dropped, never truncated.

use serde_json::{Map, Value};
use trl_core::data::Row;
use trl_core::data::is_conversation;
use trl_core::model::TokenBatch;
use trl_core::tokenizer::{RenderOptions, Tokenizer};

use crate::Error;

/// One tokenized preference pair.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RewardExample {
    /// `prompt + chosen`.
    pub chosen_ids: Vec<u32>,
    /// `prompt + rejected`.
    pub rejected_ids: Vec<u32>,
    /// The row's `margin` column: the chosen reward must beat the rejected one by this much.
    pub margin: Option<f64>,
}

/// Template options from the row's `tools` (a list, or that list as a JSON string) and
/// `chat_template_kwargs` columns, as TRL passes them to `apply_chat_template`.
fn render_options(row: &Row) -> Result<RenderOptions, String> {
    let tools = match row.get("tools") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(
            serde_json::from_str::<Value>(text)
                .map_err(|e| format!("column `tools` is a string but not JSON: {e}"))?,
        )
        .filter(|t| !t.is_null()),
        Some(other) => Some(other.clone()),
    };
    let extra = match row.get("chat_template_kwargs") {
        Some(Value::Object(map)) => map.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err("column `chat_template_kwargs` must be an object".into()),
    };
    Ok(RenderOptions {
        tools,
        extra,
        ..RenderOptions::default()
    })
}

/// Token ids of `prompt + body`, tokenized as TRL's reward trainer tokenizes one side of a pair:
/// standard text with EOS appended to `body` (unless it ends with it) and special tokens added,
/// or the conversation `prompt + body` through the chat template.
pub fn tokenize_sequence(
    tokenizer: &Tokenizer,
    row: &Row,
    prompt: Option<&Value>,
    body: &Value,
) -> Result<Vec<u32>, String> {
    let fail = |e: trl_core::Error| e.to_string();
    if is_conversation(Some(body)) {
        let mut messages = match prompt {
            None => Vec::new(),
            Some(Value::Array(prompt)) => prompt.clone(),
            Some(_) => {
                return Err("the prompt is a string but the completion a conversation".into());
            }
        };
        messages.extend(body.as_array().cloned().unwrap_or_default());
        return tokenizer
            .apply_chat_template_ids(&Value::Array(messages), &render_options(row)?)
            .map_err(fail);
    }
    let Some(body) = body.as_str() else {
        return Err("expected a string or a list of messages".into());
    };
    let prompt = match prompt {
        None => "",
        Some(Value::String(prompt)) => prompt.as_str(),
        Some(_) => return Err("the prompt is a conversation but the completion a string".into()),
    };
    let text = match tokenizer.eos_token() {
        Some(eos) if !body.ends_with(eos) => format!("{prompt}{body}{eos}"),
        _ => format!("{prompt}{body}"),
    };
    tokenizer.encode(&text, true).map_err(fail)
}

/// Tokenizes every preference row as TRL does and drops pairs longer than `max_length`. The
/// `margin` column is used when the first row has one (then every row needs a number there).
pub fn prepare_examples(
    rows: &[Row],
    tokenizer: &Tokenizer,
    max_length: Option<usize>,
) -> Result<Vec<RewardExample>, Error> {
    let with_margin = rows.first().is_some_and(|row| row.contains_key("margin"));
    let mut examples = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        let (Some(chosen), Some(rejected)) = (row.get("chosen"), row.get("rejected")) else {
            return Err(Error::row(
                index,
                "expected `chosen` and `rejected` columns",
            ));
        };
        let prompt = row.get("prompt").filter(|p| !p.is_null());
        let side = |body: &Value, name: &str| {
            tokenize_sequence(tokenizer, row, prompt, body)
                .map_err(|message| Error::row(index, format!("{name}: {message}")))
        };
        let chosen_ids = side(chosen, "chosen")?;
        let rejected_ids = side(rejected, "rejected")?;
        let margin = if with_margin {
            let value = row.get("margin").and_then(Value::as_f64);
            Some(value.ok_or_else(|| {
                Error::row(
                    index,
                    "the first row has a `margin` column, so every row needs a number there",
                )
            })?)
        } else {
            None
        };
        if let Some(max) = max_length
            && (chosen_ids.len() > max || rejected_ids.len() > max)
        {
            continue;
        }
        examples.push(RewardExample {
            chosen_ids,
            rejected_ids,
            margin,
        });
    }
    Ok(examples)
}

/// Sequences right-padded with `pad_id` to the longest (rounded up to `pad_to_multiple_of`).
pub fn pad_right(
    sequences: &[&[u32]],
    pad_id: u32,
    pad_to_multiple_of: Option<usize>,
) -> TokenBatch {
    let longest = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
    let width = match pad_to_multiple_of {
        Some(m) if m > 0 => longest.div_ceil(m) * m,
        _ => longest,
    };
    let mut input_ids = Vec::with_capacity(sequences.len());
    let mut attention_mask = Vec::with_capacity(sequences.len());
    for sequence in sequences {
        let mut ids = sequence.to_vec();
        ids.resize(width, pad_id);
        let mut mask = vec![1i64; sequence.len()];
        mask.resize(width, 0);
        input_ids.push(ids);
        attention_mask.push(mask);
    }
    TokenBatch::new(input_ids, attention_mask)
}

/// `[chosen rows..., rejected rows...]` in one padded batch, so one forward pass scores both.
#[derive(Debug, Clone, PartialEq)]
pub struct PairBatch {
    /// `[2 * pairs, seq]`
    pub tokens: TokenBatch,
    /// `[pairs]`, when the examples carry a margin.
    pub margin: Option<Vec<f32>>,
    pub pairs: usize,
    /// Non-padding tokens (TRL's `num_tokens`: the attention mask's sum).
    pub num_tokens: f64,
}

/// TRL's `DataCollatorForPreference`: chosen sequences first, then rejected, right-padded.
pub fn collate(
    examples: &[&RewardExample],
    pad_id: u32,
    pad_to_multiple_of: Option<usize>,
) -> PairBatch {
    let sequences: Vec<&[u32]> = examples
        .iter()
        .map(|e| e.chosen_ids.as_slice())
        .chain(examples.iter().map(|e| e.rejected_ids.as_slice()))
        .collect();
    let num_tokens = sequences.iter().map(|s| s.len() as f64).sum();
    let margin = examples.first().and_then(|e| e.margin).map(|_| {
        examples
            .iter()
            .map(|e| e.margin.unwrap_or(0.0) as f32)
            .collect()
    });
    PairBatch {
        tokens: pad_right(&sequences, pad_id, pad_to_multiple_of),
        margin,
        pairs: examples.len(),
        num_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(chosen: &[u32], rejected: &[u32], margin: Option<f64>) -> RewardExample {
        RewardExample {
            chosen_ids: chosen.to_vec(),
            rejected_ids: rejected.to_vec(),
            margin,
        }
    }

    /// TRL's own docstring example of `DataCollatorForPreference`.
    #[test]
    fn collates_like_trl_docstring() {
        let (a, b) = (
            pair(&[1, 2, 3], &[4, 5], Some(0.5)),
            pair(&[6, 7], &[8], Some(0.0)),
        );
        let batch = collate(&[&a, &b], 0, None);
        assert_eq!(
            batch.tokens.input_ids,
            vec![vec![1, 2, 3], vec![6, 7, 0], vec![4, 5, 0], vec![8, 0, 0]]
        );
        assert_eq!(
            batch.tokens.attention_mask,
            vec![vec![1, 1, 1], vec![1, 1, 0], vec![1, 1, 0], vec![1, 0, 0]]
        );
        assert_eq!(batch.margin, Some(vec![0.5, 0.0]));
        assert_eq!(batch.num_tokens, 8.0);
    }

    #[test]
    fn pads_to_a_multiple() {
        let a = pair(&[1, 2, 3], &[4], None);
        let batch = collate(&[&a], 9, Some(4));
        assert_eq!(
            batch.tokens.input_ids,
            vec![vec![1, 2, 3, 9], vec![4, 9, 9, 9]]
        );
        assert_eq!(batch.margin, None);
        assert_eq!(batch.num_tokens, 4.0);
    }
}
