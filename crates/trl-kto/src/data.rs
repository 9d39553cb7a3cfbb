//! Unpaired preference rows -> token ids with TRL's KTO preparation.
//!
//! Paired rows are unpaired first (each pair gives a desirable and an undesirable example),
//! EOS is appended to standard completions, and for the KL baseline every example is given
//! the completion of its predecessor within its block of `per_device_train_batch_size`
//! examples (the block's first takes the last's), in dataset order, exactly as TRL builds it.

use serde_json::{Map, Value};
use trl_core::completions::{TruncationMode, check_completion_survives, common_prefix_length};
use trl_core::data::{is_conversation, maybe_extract_prompt, unpair_preference};
use trl_core::tokenizer::{RenderOptions, Tokenizer};

/// One tokenized KTO example.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KtoExample {
    pub prompt_ids: Vec<u32>,
    pub completion_ids: Vec<u32>,
    /// `true` for desirable completions.
    pub label: bool,
    /// A mismatched completion for the KL baseline (only with `loss_type kto`).
    pub kl_completion_ids: Option<Vec<u32>>,
    /// Precomputed reference log-probs `(completion, kl completion)`.
    pub ref_logps: Option<(f64, f64)>,
}

/// Marks each row with its index in the dataset, so an error after unpairing (which turns one
/// pair into two rows, in a different order) still names the dataset's row.
const ORIGIN_KEY: &str = "__trl_rs_dataset_row";

/// Tokenizes every row as TRL does; errors carry the 0-based index of the dataset row.
pub fn prepare_examples(
    rows: &[Map<String, Value>],
    tokenizer: &Tokenizer,
    max_length: Option<usize>,
    kl_block: Option<usize>,
) -> Result<Vec<KtoExample>, (usize, String)> {
    let mut rows: Vec<Map<String, Value>> = rows
        .iter()
        .enumerate()
        .map(|(index, row)| {
            let mut row = row.clone();
            row.insert(ORIGIN_KEY.into(), Value::from(index));
            row
        })
        .collect();
    if rows.first().is_some_and(|r| !r.contains_key("prompt")) {
        for (index, row) in rows.iter_mut().enumerate() {
            if !maybe_extract_prompt(row) {
                return Err((
                    index,
                    "chosen and rejected share no prompt that can be extracted".into(),
                ));
            }
        }
    }
    if rows
        .first()
        .is_some_and(|r| r.contains_key("chosen") && r.contains_key("rejected"))
    {
        rows = unpair_preference(rows);
    }
    let eos = tokenizer.eos_token().unwrap_or_default().to_string();
    let mut examples = Vec::with_capacity(rows.len());
    for (position, row) in rows.iter().enumerate() {
        let index = row
            .get(ORIGIN_KEY)
            .and_then(Value::as_u64)
            .map_or(position, |i| i as usize);
        let fail = |e: trl_core::Error| (index, e.to_string());
        let (Some(prompt), Some(completion)) = (row.get("prompt"), row.get("completion")) else {
            return Err((index, "expected prompt and completion".into()));
        };
        let label = row
            .get("label")
            .and_then(Value::as_bool)
            .ok_or((index, "label must be true or false".to_string()))?;
        let (prompt_ids, full) = if is_conversation(Some(prompt)) {
            let options = |generation_prompt: bool| RenderOptions {
                add_generation_prompt: generation_prompt,
                tools: row.get("tools").cloned().filter(|t| !t.is_null()),
                ..RenderOptions::default()
            };
            let mut messages = prompt.as_array().cloned().unwrap_or_default();
            messages.extend(completion.as_array().cloned().unwrap_or_default());
            (
                tokenizer
                    .apply_chat_template_ids(prompt, &options(true))
                    .map_err(fail)?,
                tokenizer
                    .apply_chat_template_ids(&Value::Array(messages), &options(false))
                    .map_err(fail)?,
            )
        } else {
            let (Some(prompt), Some(completion)) = (prompt.as_str(), completion.as_str()) else {
                return Err((
                    index,
                    "prompt and completion must both be strings or both be conversations".into(),
                ));
            };
            let completion = if completion.ends_with(&eos) {
                completion.to_string()
            } else {
                format!("{completion}{eos}")
            };
            (
                tokenizer.encode(prompt, true).map_err(fail)?,
                tokenizer
                    .encode(&format!("{prompt}{completion}"), true)
                    .map_err(fail)?,
            )
        };
        let prompt_len = common_prefix_length(&prompt_ids, &full);
        if max_length.is_some_and(|max| prompt_len >= max) {
            continue;
        }
        check_completion_survives(
            prompt_len,
            full.len() - prompt_len,
            max_length,
            TruncationMode::KeepStart,
            "completion",
        )
        .map_err(|message| (index, message))?;
        examples.push(KtoExample {
            prompt_ids: prompt_ids[..prompt_len].to_vec(),
            completion_ids: full[prompt_len..].to_vec(),
            label,
            kl_completion_ids: None,
            ref_logps: None,
        });
    }
    if let Some(block) = kl_block {
        for chunk in examples.chunks_mut(block.max(1)) {
            let completions: Vec<Vec<u32>> =
                chunk.iter().map(|e| e.completion_ids.clone()).collect();
            let n = chunk.len();
            for (i, example) in chunk.iter_mut().enumerate() {
                example.kl_completion_ids = Some(completions[(i + n - 1) % n].clone());
            }
        }
    }
    Ok(examples)
}
