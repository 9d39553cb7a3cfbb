//! What a reward function sees of one completion: TRL's `prompts`, `completions`,
//! `completion_ids` and every other dataset column (`**kwargs`), one completion at a time.

use serde_json::{Map, Value};

use super::error::{Result, RewardError};

/// A prompt or a completion, as TRL passes it to reward functions: a string for standard data,
/// a list of messages (`{"role", "content", ...}` objects) for conversational data.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// Standard data: the text itself.
    Text(String),
    /// Conversational data: message objects (`role`, `content`, and whatever else they hold).
    Messages(Vec<Value>),
}

impl Content {
    /// The JSON TRL's reward functions receive: a string or a list of message objects.
    pub fn to_json(&self) -> Value {
        match self {
            Content::Text(text) => Value::String(text.clone()),
            Content::Messages(messages) => Value::Array(messages.clone()),
        }
    }

    /// Whether this is conversational data (a list of messages).
    pub fn is_conversational(&self) -> bool {
        matches!(self, Content::Messages(_))
    }
}

/// The columns a trainer passes apart from the rest of the row: they are never forwarded as
/// "other columns" (TRL's `_calculate_rewards` leaves them out of `reward_kwargs`).
pub const RESERVED_COLUMNS: [&str; 3] = ["prompt", "completion", "completion_ids"];

/// One completion to score, with its prompt and the rest of its dataset row.
#[derive(Debug, Clone, PartialEq)]
pub struct RewardInput {
    /// The prompt as the dataset gave it (a string, or the prompt messages).
    pub prompt: Content,
    /// The generated completion: its decoded text, or for conversational data the generated
    /// assistant message(s) (TRL's built-ins read `completion[0]["content"]`).
    pub completion: Content,
    /// The completion's token ids, up to and including the first EOS.
    pub completion_ids: Vec<u32>,
    /// Every other column of the dataset row (`solution`, `answer`, ...), in the row's order.
    pub columns: Map<String, Value>,
}

impl RewardInput {
    /// Builds the input of one completion from its dataset row: every column of `row` except
    /// `prompt`, `completion` and `completion_ids` is kept as an extra column.
    pub fn new(
        prompt: Content,
        completion: Content,
        completion_ids: Vec<u32>,
        row: &Map<String, Value>,
    ) -> Self {
        let columns = row
            .iter()
            .filter(|(key, _)| !RESERVED_COLUMNS.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        RewardInput {
            prompt,
            completion,
            completion_ids,
            columns,
        }
    }

    /// The completion's text as TRL's built-ins read it: the string itself, or
    /// `completion[0]["content"]` for a conversational completion.
    pub fn completion_text(&self, function: &str, row: usize) -> Result<&str> {
        match &self.completion {
            Content::Text(text) => Ok(text),
            Content::Messages(messages) => messages
                .first()
                .and_then(|message| message.get("content"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    RewardError::input(
                        function,
                        row,
                        "a conversational completion must start with a message whose \"content\" \
                         is a string",
                    )
                }),
        }
    }

    /// The JSON object an external reward command receives for this completion:
    /// `{"prompt", "completion", "completion_ids", <every other column>}`.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("prompt".into(), self.prompt.to_json());
        object.insert("completion".into(), self.completion.to_json());
        object.insert("completion_ids".into(), self.completion_ids.clone().into());
        for (key, value) in &self.columns {
            object.insert(key.clone(), value.clone());
        }
        Value::Object(object)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn other_columns_are_kept_and_reserved_ones_dropped() {
        let input = RewardInput::new(
            Content::Text("Q".into()),
            Content::Text(" A".into()),
            vec![5, 2],
            &row(json!({"prompt": "Q", "solution": "4", "completion": "x", "id": 3})),
        );
        assert_eq!(
            input.to_json(),
            json!({"prompt": "Q", "completion": " A", "completion_ids": [5, 2], "solution": "4", "id": 3})
        );
    }

    #[test]
    fn conversational_completion_text_is_the_first_message_content() {
        let messages = vec![json!({"role": "assistant", "content": "\\boxed{4}"})];
        let input = RewardInput::new(
            Content::Messages(vec![json!({"role": "user", "content": "2+2?"})]),
            Content::Messages(messages),
            vec![],
            &Map::new(),
        );
        assert_eq!(input.completion_text("f", 0).unwrap(), "\\boxed{4}");
        let broken = RewardInput {
            completion: Content::Messages(vec![json!({"role": "assistant"})]),
            ..input
        };
        let error = broken.completion_text("f", 3).unwrap_err().to_string();
        assert!(
            error.contains("completion 3") && error.contains("content"),
            "{error}"
        );
    }
}
