//! What to generate and how: transformers' `GenerationConfig` names and defaults, checked
//! before any model runs, and the end-of-sequence ids a model folder declares.

use std::path::Path;

use crate::{Error, Result};

/// Generation settings with transformers' names. Defaults are transformers' own
/// (`_get_default_generation_params`: temperature 1, top-k 50, top-p 1, no min-p, no
/// repetition penalty), except `do_sample`, which is on: TRL's online methods and `trl chat`
/// sample.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationOptions {
    /// Most tokens generated per sequence (the end-of-sequence token included).
    pub max_new_tokens: usize,
    /// End-of-sequence ids are masked until this many tokens were generated.
    pub min_new_tokens: usize,
    /// Sample from the processed distribution; `false` takes the most likely token (greedy).
    pub do_sample: bool,
    /// Logits are divided by it before the filters (sampling only).
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens; 0 switches it off (sampling only).
    pub top_k: usize,
    /// Nucleus sampling mass; 1 switches it off (sampling only).
    pub top_p: f32,
    /// Keep tokens at least `min_p` times as likely as the top one (sampling only).
    pub min_p: Option<f32>,
    /// CTRL's penalty on tokens already in the sequence; 1 switches it off.
    pub repetition_penalty: f32,
    /// Sequences generated per prompt (transformers' order: a prompt's sequences are adjacent).
    pub num_return_sequences: usize,
    /// Seeds the sampler: the same seed, prompts and options give the same tokens.
    pub seed: u64,
    /// The index of the first sequence in the whole batch it belongs to: sequence `i` draws
    /// from stream `first_sequence + i` of `seed`. A data-parallel rank generating its share of
    /// a global batch passes its first row, so each row draws the same tokens as in one
    /// process generating the whole batch (0 otherwise).
    pub first_sequence: u64,
    /// A sequence ends after any of these (the tokenizer's EOS, `generation_config.json`'s
    /// `eos_token_id`, and user stop tokens).
    pub eos_token_ids: Vec<u32>,
    /// A sequence also ends once its decoded completion contains one of these.
    pub stop_strings: Vec<String>,
    /// Fills the left padding of shorter prompts (never attended to).
    pub pad_token_id: u32,
}

impl Default for GenerationOptions {
    fn default() -> Self {
        GenerationOptions {
            max_new_tokens: 256,
            min_new_tokens: 0,
            do_sample: true,
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            min_p: None,
            repetition_penalty: 1.0,
            num_return_sequences: 1,
            seed: 42,
            first_sequence: 0,
            eos_token_ids: Vec::new(),
            stop_strings: Vec::new(),
            pad_token_id: 0,
        }
    }
}

fn invalid(option: &str, message: String) -> Error {
    Error::Generation {
        message: format!("--{option}: {message}"),
    }
}

impl GenerationOptions {
    /// Checks every value a user sets; the error names the option.
    pub fn validate(&self) -> Result<()> {
        if self.max_new_tokens == 0 {
            return Err(invalid("max_new_tokens", "must be at least 1".into()));
        }
        if self.min_new_tokens > self.max_new_tokens {
            return Err(invalid(
                "min_new_tokens",
                format!(
                    "{} is more than max_new_tokens ({})",
                    self.min_new_tokens, self.max_new_tokens
                ),
            ));
        }
        let positive = |name: &str, value: f32| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(invalid(
                    name,
                    format!("must be a positive number, got {value}"),
                ))
            }
        };
        positive("temperature", self.temperature)?;
        positive("repetition_penalty", self.repetition_penalty)?;
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(invalid(
                "top_p",
                format!("must be in (0, 1], got {}", self.top_p),
            ));
        }
        if let Some(min_p) = self.min_p
            && !(0.0..=1.0).contains(&min_p)
        {
            return Err(invalid("min_p", format!("must be in [0, 1], got {min_p}")));
        }
        if self.num_return_sequences == 0 {
            return Err(invalid("num_return_sequences", "must be at least 1".into()));
        }
        if self.stop_strings.iter().any(String::is_empty) {
            return Err(invalid(
                "stop_strings",
                "an empty stop string stops at once".into(),
            ));
        }
        Ok(())
    }
}

impl GenerationOptions {
    /// The defaults overridden by what `dir/generation_config.json` sets (`do_sample`,
    /// `temperature`, `top_k`, `top_p`, `min_p`, `repetition_penalty`, `max_new_tokens`,
    /// `min_new_tokens`), as transformers' `generate` starts from the model's generation config.
    pub fn from_generation_config(dir: &Path) -> Result<Self> {
        let mut options = GenerationOptions::default();
        let path = dir.join("generation_config.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(options);
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::json(&path, e))?;
        let number = |key: &str| json.get(key).and_then(serde_json::Value::as_f64);
        let count = |key: &str| json.get(key).and_then(serde_json::Value::as_u64);
        if let Some(v) = json.get("do_sample").and_then(serde_json::Value::as_bool) {
            options.do_sample = v;
        }
        if let Some(v) = number("temperature") {
            options.temperature = v as f32;
        }
        if let Some(v) = count("top_k") {
            options.top_k = v as usize;
        }
        if let Some(v) = number("top_p") {
            options.top_p = v as f32;
        }
        options.min_p = number("min_p").map(|v| v as f32).or(options.min_p);
        if let Some(v) = number("repetition_penalty") {
            options.repetition_penalty = v as f32;
        }
        if let Some(v) = count("max_new_tokens") {
            options.max_new_tokens = v as usize;
        }
        if let Some(v) = count("min_new_tokens") {
            options.min_new_tokens = v as usize;
        }
        options.eos_token_ids = generation_config_eos_ids(dir)?;
        Ok(options)
    }
}

/// The `eos_token_id` of `dir/generation_config.json` (an int or a list), empty when the file
/// or the key is absent.
pub fn generation_config_eos_ids(dir: &Path) -> Result<Vec<u32>> {
    let path = dir.join("generation_config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::json(&path, e))?;
    let ids = match json.get("eos_token_id") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(serde_json::Value::as_u64)
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default(),
        Some(one) => one.as_u64().into_iter().collect(),
    };
    if ids.is_empty() && json.get("eos_token_id").is_some_and(|v| !v.is_null()) {
        return Err(Error::Config {
            path,
            message: "eos_token_id must be a token id or a list of token ids".into(),
        });
    }
    Ok(ids.into_iter().map(|id| id as u32).collect())
}

/// Adds the ids of `extra` not already in `ids`, keeping the order.
pub fn merge_ids(ids: &mut Vec<u32>, extra: impl IntoIterator<Item = u32>) {
    for id in extra {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_values_name_their_option() {
        let bad = |f: fn(&mut GenerationOptions)| {
            let mut o = GenerationOptions::default();
            f(&mut o);
            o.validate().unwrap_err().to_string()
        };
        assert!(bad(|o| o.top_p = 0.0).contains("--top_p"));
        assert!(bad(|o| o.temperature = -1.0).contains("--temperature"));
        assert!(bad(|o| o.min_new_tokens = 300).contains("--min_new_tokens"));
        assert!(bad(|o| o.min_p = Some(2.0)).contains("--min_p"));
        assert!(GenerationOptions::default().validate().is_ok());
    }

    #[test]
    fn eos_ids_come_as_an_int_or_a_list() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("generation_config.json"),
            r#"{"eos_token_id": [5, 7]}"#,
        )
        .unwrap();
        assert_eq!(generation_config_eos_ids(dir.path()).unwrap(), vec![5, 7]);
        std::fs::write(
            dir.path().join("generation_config.json"),
            r#"{"eos_token_id": 3}"#,
        )
        .unwrap();
        assert_eq!(generation_config_eos_ids(dir.path()).unwrap(), vec![3]);
    }
}
