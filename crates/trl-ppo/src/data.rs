//! Prompt-only rows -> prompt token ids, as TRL's PPO example prepares them: a conversation
//! through the chat template with the generation prompt, a standard prompt through the
//! tokenizer with its special tokens.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use trl_core::tokenizer::Tokenizer;

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
    let prompt_ids = tokenizer
        .prompt_ids(prompt, &Map::new(), true)
        .map_err(|e| e.to_string())?;
    Ok(PromptExample { prompt_ids })
}
