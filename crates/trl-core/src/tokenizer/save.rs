//! Writing a tokenizer folder back the way transformers' `save_pretrained` does.

use std::fs;
use std::path::Path;

use serde_json::{Map, Value as Json};

use super::{
    TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, Tokenizer, py_json, special_tokens, template_values,
};
use crate::{Error, Result};

impl Tokenizer {
    /// Writes `tokenizer.json`, `tokenizer_config.json` (original keys kept, special tokens updated,
    /// `chat_template` moved out) and the chat template files, so `AutoTokenizer.from_pretrained(dir)`
    /// loads the same tokenizer. Formatting follows transformers' `save_pretrained`.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;

        let mut backend = self.backend.clone();
        backend.with_padding(self.saved_padding.clone());
        backend
            .with_truncation(self.saved_truncation.clone())
            .map_err(|e| Error::Tokenizer {
                message: format!("cannot restore truncation: {e}"),
            })?;
        let tokenizer_file = dir.join(TOKENIZER_FILE);
        backend
            .save(&tokenizer_file, true)
            .map_err(|e| Error::Tokenizer {
                message: format!("{}: {e}", tokenizer_file.display()),
            })?;

        let mut config = self.config.clone();
        for (name, token) in &self.special.named {
            let current = config.get(name).and_then(special_tokens::parse_added_token);
            if current.is_none_or(|c| c.content != token.content) {
                config.insert(name.clone(), Json::String(token.content.clone()));
            }
        }
        self.chat_templates.save(dir, &mut config)?;
        let config_file = dir.join(TOKENIZER_CONFIG_FILE);
        let text = config_json(&config).map_err(|e| Error::Tokenizer {
            message: format!("{}: {e}", config_file.display()),
        })?;
        fs::write(&config_file, text).map_err(|e| Error::io(&config_file, e))
    }
}

/// `json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n"`, as `save_pretrained`
/// writes it.
fn config_json(config: &Map<String, Json>) -> std::result::Result<String, minijinja::Error> {
    let value = template_values::config_json_to_value(&Json::Object(config.clone()));
    let mut options = py_json::DumpOptions::new(Some("  ".into()));
    options.sort_keys = true;
    Ok(py_json::dumps(&value, &options)? + "\n")
}
