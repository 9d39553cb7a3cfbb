//! Prompt-only rows -> tokenized prompts, as TRL's `GRPOTrainer._tokenize_prompts` does it:
//! a conversation goes through the chat template with the generation prompt (and
//! `chat_template_kwargs`), a standard prompt through the tokenizer with its special tokens.
//! Every other column is kept for the reward functions.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use trl_core::data::is_conversation;
use trl_core::tokenizer::Tokenizer;

/// One prompt of the training set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptExample {
    /// The prompt as the dataset holds it: a string, or a list of messages.
    pub prompt: Value,
    /// The tokens the policy continues.
    pub prompt_ids: Vec<u32>,
    /// Every other column of the row (`solution`, `answer`, ...), for the reward functions.
    pub columns: Map<String, Value>,
}

impl PromptExample {
    /// Whether the prompt is a conversation (its completion is then an assistant message).
    pub fn is_conversational(&self) -> bool {
        is_conversation(Some(&self.prompt))
    }
}

/// Tokenizes every row's prompt. Errors carry the 0-based row index.
pub fn prepare_prompts(
    rows: &[Map<String, Value>],
    tokenizer: &Tokenizer,
    chat_template_kwargs: &Map<String, Value>,
) -> Result<Vec<PromptExample>, (usize, String)> {
    rows.iter()
        .enumerate()
        .map(|(index, row)| {
            prepare_prompt(row, tokenizer, chat_template_kwargs).map_err(|message| (index, message))
        })
        .collect()
}

fn prepare_prompt(
    row: &Map<String, Value>,
    tokenizer: &Tokenizer,
    chat_template_kwargs: &Map<String, Value>,
) -> Result<PromptExample, String> {
    let prompt = row
        .get("prompt")
        .cloned()
        .ok_or_else(|| "expected a `prompt` column".to_string())?;
    let prompt_ids = tokenizer
        .prompt_ids(&prompt, chat_template_kwargs, true)
        .map_err(|e| e.to_string())?;
    let columns = row
        .iter()
        .filter(|(key, _)| key.as_str() != "prompt")
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    Ok(PromptExample {
        prompt,
        prompt_ids,
        columns,
    })
}
