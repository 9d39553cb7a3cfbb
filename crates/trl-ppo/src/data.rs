//! Prompt-only rows -> prompt token ids, as TRL's PPO example prepares them: a conversation
//! through the chat template with the generation prompt, a standard prompt through the
//! tokenizer with its special tokens.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use trl_core::data::is_conversation;
use trl_core::tokenizer::{RenderOptions, Tokenizer};

/// One prompt of the training set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptExample {
    /// The tokens the policy continues (never empty).
    pub prompt_ids: Vec<u32>,
}

/// Tokenizes every row's `prompt`. Errors carry the 0-based row index.
pub fn prepare_prompts(
    rows: &[Map<String, Value>],
    tokenizer: &Tokenizer,
) -> Result<Vec<PromptExample>, (usize, String)> {
    rows.iter()
        .enumerate()
        .map(|(index, row)| prepare_prompt(row, tokenizer).map_err(|message| (index, message)))
        .collect()
}

fn prepare_prompt(
    row: &Map<String, Value>,
    tokenizer: &Tokenizer,
) -> Result<PromptExample, String> {
    let prompt = row
        .get("prompt")
        .ok_or_else(|| "expected a `prompt` column".to_string())?;
    let prompt_ids = if is_conversation(Some(prompt)) {
        let options = RenderOptions {
            add_generation_prompt: true,
            ..RenderOptions::default()
        };
        tokenizer
            .apply_chat_template_ids(prompt, &options)
            .map_err(|e| e.to_string())?
    } else {
        let text = prompt
            .as_str()
            .ok_or_else(|| "`prompt` must be a string or a list of messages".to_string())?;
        tokenizer.encode(text, true).map_err(|e| e.to_string())?
    };
    if prompt_ids.is_empty() {
        return Err("the prompt tokenizes to no tokens".into());
    }
    Ok(PromptExample { prompt_ids })
}
