//! Preference rows -> token ids with TRL's DPO preparation, and pairs -> one concatenated batch.
//!
//! Preparation (TRL `DPOTrainer._prepare_dataset`): an implicit prompt is split off, EOS is
//! appended to standard completions, `prompt`, `prompt + chosen` and `prompt + rejected` are
//! tokenized (chat template for conversations), and the completions start where the tokenized
//! prompt and prompt+completion stop agreeing. Rows whose prompt alone fills `max_length` are
//! dropped (with `keep_start`).

use serde_json::{Map, Value};
use trl_core::completions::{
    CompletionBatch, PaddingOptions, TruncationMode, check_completion_survives,
    collate_completions, common_prefix_length,
};
use trl_core::data::{is_conversation, maybe_extract_prompt};
use trl_core::tokenizer::{RenderOptions, Tokenizer};

/// One tokenized preference pair.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DpoExample {
    pub prompt_ids: Vec<u32>,
    pub chosen_ids: Vec<u32>,
    pub rejected_ids: Vec<u32>,
    /// Reference log-probs `(chosen, rejected)` when precomputed.
    pub ref_logps: Option<(f64, f64)>,
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
            return Err((
                index,
                "chosen and rejected share no prompt that can be extracted".into(),
            ));
        }
        let fail = |e: trl_core::Error| (index, e.to_string());
        let (Some(prompt), Some(chosen), Some(rejected)) =
            (row.get("prompt"), row.get("chosen"), row.get("rejected"))
        else {
            return Err((index, "expected prompt, chosen and rejected".into()));
        };
        let (prompt_ids, chosen_full, rejected_full) = if is_conversation(Some(prompt)) {
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
                tokenizer
                    .apply_chat_template_ids(prompt, &options(true))
                    .map_err(fail)?,
                tokenizer
                    .apply_chat_template_ids(&joined(chosen), &options(false))
                    .map_err(fail)?,
                tokenizer
                    .apply_chat_template_ids(&joined(rejected), &options(false))
                    .map_err(fail)?,
            )
        } else {
            let (Some(prompt), Some(chosen), Some(rejected)) =
                (prompt.as_str(), chosen.as_str(), rejected.as_str())
            else {
                return Err((
                    index,
                    "prompt, chosen and rejected must all be strings or all be conversations"
                        .into(),
                ));
            };
            let with_eos = |text: &str| {
                if text.ends_with(&eos) {
                    text.to_string()
                } else {
                    format!("{text}{eos}")
                }
            };
            (
                tokenizer.encode(prompt, true).map_err(fail)?,
                tokenizer
                    .encode(&format!("{prompt}{}", with_eos(chosen)), true)
                    .map_err(fail)?,
                tokenizer
                    .encode(&format!("{prompt}{}", with_eos(rejected)), true)
                    .map_err(fail)?,
            )
        };
        let prompt_len = common_prefix_length(&prompt_ids, &chosen_full)
            .min(common_prefix_length(&prompt_ids, &rejected_full));
        if let (Some(max), TruncationMode::KeepStart) = (max_length, truncation_mode)
            && prompt_len >= max
        {
            continue;
        }
        for (what, full) in [("chosen", &chosen_full), ("rejected", &rejected_full)] {
            let completion_len = full.len() - prompt_len;
            check_completion_survives(
                prompt_len,
                completion_len,
                max_length,
                truncation_mode,
                what,
            )
            .map_err(|message| (index, message))?;
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
    /// Rows `0..pairs` are chosen, `pairs..2 * pairs` rejected.
    pub batch: CompletionBatch,
    pub pairs: usize,
}

/// TRL's `DataCollatorForPreference`: truncate each sequence, pad on the right.
pub fn collate(examples: &[&DpoExample], options: &PaddingOptions) -> PairBatch {
    let chosen = examples
        .iter()
        .map(|e| (e.prompt_ids.as_slice(), e.chosen_ids.as_slice()));
    let rejected = examples
        .iter()
        .map(|e| (e.prompt_ids.as_slice(), e.rejected_ids.as_slice()));
    let rows: Vec<(&[u32], &[u32])> = chosen.chain(rejected).collect();
    PairBatch {
        batch: collate_completions(&rows, options),
        pairs: examples.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trl_core::logprobs::IGNORE_INDEX;

    /// TRL's own docstring example of `DataCollatorForPreference`.
    #[test]
    fn collates_like_trl_docstring() {
        let a = DpoExample {
            prompt_ids: vec![1, 2, 3],
            chosen_ids: vec![4, 5],
            rejected_ids: vec![6],
            ref_logps: None,
        };
        let b = DpoExample {
            prompt_ids: vec![7, 8],
            chosen_ids: vec![9],
            rejected_ids: vec![10, 11],
            ref_logps: None,
        };
        let options = PaddingOptions {
            pad_token_id: 0,
            max_length: None,
            truncation_mode: TruncationMode::KeepStart,
            pad_to_multiple_of: None,
        };
        let batch = collate(&[&a, &b], &options).batch;
        assert_eq!(
            batch.tokens.input_ids,
            vec![
                vec![1, 2, 3, 4, 5],
                vec![7, 8, 9, 0, 0],
                vec![1, 2, 3, 6, 0],
                vec![7, 8, 10, 11, 0]
            ]
        );
        assert_eq!(
            batch.completion_mask,
            vec![
                vec![0, 0, 0, 1, 1],
                vec![0, 0, 1, 0, 0],
                vec![0, 0, 0, 1, 0],
                vec![0, 0, 1, 1, 0]
            ]
        );
        assert_eq!(batch.tokens.attention_mask[1], vec![1, 1, 1, 0, 0]);
        assert_eq!(
            batch.labels[3],
            vec![IGNORE_INDEX, IGNORE_INDEX, 10, 11, IGNORE_INDEX]
        );
    }
}
