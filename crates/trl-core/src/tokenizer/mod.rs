//! The tokenizer every method shares: `tokenizer.json` plus the `transformers` 5.x conventions around it
//! (`tokenizer_config.json`, special tokens, chat templates), so that ids, decoded text and rendered
//! prompts equal what `AutoTokenizer.from_pretrained(dir)` produces.
//!
//! What transformers 5.x does with a folder that has a `tokenizer.json` (tokenization_utils_base.py
//! `_from_pretrained`, tokenization_utils_tokenizers.py `TokenizersBackend.__init__`):
//! - the backend is `tokenizer.json`; its post-processor alone decides whether `encode` adds BOS/EOS:
//!   `add_bos_token`/`add_eos_token` in `tokenizer_config.json` are popped and ignored;
//! - the config's `added_tokens_decoder` and every special token not yet an added token are added to the
//!   backend (so e.g. an `eos_token` that is an ordinary vocabulary entry becomes special and is skipped
//!   by `decode(skip_special_tokens=True)`);
//! - `encode` runs without the padding/truncation stored in `tokenizer.json` (every call passes
//!   "do not pad / do not truncate");
//! - `decode` applies `clean_up_tokenization_spaces` only when the config asks for it and the model is
//!   not BPE.

mod chat;
mod chat_template;
mod jinja_env;
mod pad;
mod py_json;
mod save;
mod special_tokens;
mod strftime;
mod template_files;
mod template_values;

#[cfg(test)]
mod fixture_tests;

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value as Json};
use tokenizers::{ModelWrapper, PaddingParams, TruncationParams};

pub use chat::ChatEncoding;
pub use chat_template::{ChatTemplate, RenderOptions, RenderedChat};
pub use pad::{pad_token_id, set_pad_token};

use crate::{Error, Result};
use special_tokens::SpecialTokens;
use template_files::ChatTemplates;

const TOKENIZER_FILE: &str = "tokenizer.json";
const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
const SPECIAL_TOKENS_MAP_FILE: &str = "special_tokens_map.json";

/// A Hugging Face tokenizer folder loaded with `transformers` semantics.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// Encoding backend, with padding and truncation switched off.
    backend: tokenizers::Tokenizer,
    /// Padding/truncation of the original `tokenizer.json`, restored when saving.
    saved_padding: Option<PaddingParams>,
    saved_truncation: Option<TruncationParams>,
    /// `tokenizer_config.json` as read, written back with its keys intact.
    config: Map<String, Json>,
    special: SpecialTokens,
    chat_templates: ChatTemplates,
    clean_up_tokenization_spaces: bool,
    /// Compiled templates, keyed by their source.
    compiled: Arc<Mutex<Vec<Arc<ChatTemplate>>>>,
}

impl Tokenizer {
    /// Loads a tokenizer folder (`tokenizer.json`, optional `tokenizer_config.json`,
    /// `special_tokens_map.json`, `chat_template.jinja`, `chat_templates/`).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let tokenizer_file = dir.join(TOKENIZER_FILE);
        if !tokenizer_file.is_file() {
            return Err(Error::Tokenizer {
                message: format!(
                    "{} not found: only fast tokenizers are supported. Convert the folder once with \
                     `AutoTokenizer.from_pretrained(dir).save_pretrained(dir)` in Python.",
                    tokenizer_file.display()
                ),
            });
        }
        let mut backend =
            tokenizers::Tokenizer::from_file(&tokenizer_file).map_err(|e| Error::Tokenizer {
                message: format!("{}: {e}", tokenizer_file.display()),
            })?;
        let config = read_json_object(&dir.join(TOKENIZER_CONFIG_FILE))?.unwrap_or_default();
        let special_tokens_map = read_json_object(&dir.join(SPECIAL_TOKENS_MAP_FILE))?;

        let json_pad_token = backend.get_padding().map(|p| p.pad_token.clone());
        let special = SpecialTokens::resolve(
            &config,
            special_tokens_map.as_ref(),
            json_pad_token.as_deref(),
        );
        let already_added: Vec<String> = backend
            .get_added_tokens_decoder()
            .values()
            .map(|t| t.content.clone())
            .collect();
        let to_add = special.tokens_to_add(&config, &already_added);
        if !to_add.is_empty() {
            backend.add_tokens(&to_add);
        }
        let flag = |name: &str| config.get(name).and_then(Json::as_bool).unwrap_or(false);
        backend.set_encode_special_tokens(flag("split_special_tokens"));

        let saved_padding = backend.get_padding().cloned();
        let saved_truncation = backend.get_truncation().cloned();
        backend.with_padding(None);
        backend
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer {
                message: format!("cannot disable truncation: {e}"),
            })?;

        let is_bpe = matches!(backend.get_model(), ModelWrapper::BPE(_));
        let clean_up_tokenization_spaces = flag("clean_up_tokenization_spaces")
            && (!is_bpe
                || flag("clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output"));
        let chat_templates = ChatTemplates::load(dir, &config)?;
        Ok(Tokenizer {
            backend,
            saved_padding,
            saved_truncation,
            config,
            special,
            chat_templates,
            clean_up_tokenization_spaces,
            compiled: Arc::default(),
        })
    }

    /// `tokenizer.encode(text, add_special_tokens=...)`: with `true` the post-processor of
    /// `tokenizer.json` adds whatever BOS/EOS the model expects.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self
            .backend
            .encode(text, add_special_tokens)
            .map_err(backend_error)?;
        Ok(encoding.get_ids().to_vec())
    }

    /// `tokenizer.decode(ids, skip_special_tokens=...)`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let text = self
            .backend
            .decode(ids, skip_special_tokens)
            .map_err(backend_error)?;
        Ok(if self.clean_up_tokenization_spaces {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }

    /// `tokenizer.vocab_size`: the base vocabulary, without added tokens.
    pub fn vocab_size(&self) -> usize {
        self.backend.get_vocab_size(false)
    }

    /// `len(tokenizer)`: the vocabulary including added tokens (what embeddings must cover).
    pub fn vocab_size_with_added_tokens(&self) -> usize {
        self.backend.get_vocab_size(true)
    }

    /// The largest id the tokenizer can produce (added tokens included): the embeddings of a
    /// model that uses it must cover it.
    pub fn max_token_id(&self) -> Option<u32> {
        self.backend.get_vocab(true).into_values().max()
    }

    /// The id of a token (added tokens included), `None` if unknown.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.backend.token_to_id(token)
    }

    /// The token string of an id, `None` if out of range.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.backend.id_to_token(id)
    }

    /// A special token by attribute name (`"bos_token"`, or a model-specific one like `"image_token"`).
    pub fn special_token(&self, name: &str) -> Option<&str> {
        self.special.get(name)
    }

    /// The id of a special token: transformers' `convert_tokens_to_ids`, which falls back to the
    /// unknown token's id for a token outside the vocabulary.
    pub fn special_token_id(&self, name: &str) -> Option<u32> {
        let token = self.special.get(name)?;
        self.token_to_id(token).or_else(|| {
            self.special
                .get("unk_token")
                .and_then(|unk| self.token_to_id(unk))
        })
    }

    /// `tokenizer.bos_token`.
    pub fn bos_token(&self) -> Option<&str> {
        self.special_token("bos_token")
    }

    /// `tokenizer.bos_token_id`.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.special_token_id("bos_token")
    }

    /// `tokenizer.eos_token`.
    pub fn eos_token(&self) -> Option<&str> {
        self.special_token("eos_token")
    }

    /// `tokenizer.eos_token_id`.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.special_token_id("eos_token")
    }

    /// `tokenizer.pad_token` (TRL falls back to the EOS token when this is `None`).
    pub fn pad_token(&self) -> Option<&str> {
        self.special_token("pad_token")
    }

    /// `tokenizer.pad_token_id`.
    pub fn pad_token_id(&self) -> Option<u32> {
        self.special_token_id("pad_token")
    }

    /// `tokenizer.unk_token`.
    pub fn unk_token(&self) -> Option<&str> {
        self.special_token("unk_token")
    }

    /// `tokenizer.unk_token_id`.
    pub fn unk_token_id(&self) -> Option<u32> {
        self.special_token_id("unk_token")
    }

    /// `tokenizer.special_tokens_map`: attribute → token, the variables chat templates receive.
    pub fn special_tokens_map(&self) -> Vec<(String, String)> {
        self.special.map()
    }

    /// `tokenizer.all_special_ids`: named and extra special tokens (for special-token masks).
    pub fn all_special_ids(&self) -> Vec<u32> {
        let unk = self.unk_token_id();
        self.special
            .all()
            .iter()
            .filter_map(|t| self.token_to_id(t).or(unk))
            .collect()
    }

    /// Sets `tokenizer.eos_token` (TRL's `eos_token` argument); the token must already exist.
    pub fn set_eos_token(&mut self, token: &str) -> Result<()> {
        self.set_existing_special_token("eos_token", token)
    }

    /// Sets `tokenizer.pad_token` (TRL's `pad_token` argument); the token must already exist.
    pub fn set_pad_token(&mut self, token: &str) -> Result<()> {
        self.set_existing_special_token("pad_token", token)
    }

    fn set_existing_special_token(&mut self, name: &str, token: &str) -> Result<()> {
        if self.token_to_id(token).is_none() {
            return Err(Error::Tokenizer {
                message: format!(
                    "The specified `{name}` ('{token}') is not found in the vocabulary of the tokenizer."
                ),
            });
        }
        self.special.set(name, token);
        Ok(())
    }

    /// Whether `encode(_, true)` starts with the BOS token. transformers 5.x reports
    /// `add_bos_token=False` for tokenizers loaded from `tokenizer.json` even when the post-processor
    /// adds BOS; this answers what actually happens.
    pub fn adds_bos_token(&self) -> bool {
        let (prefix, _) = self.added_special_ids();
        self.bos_token_id().is_some_and(|bos| prefix.contains(&bos))
    }

    /// Whether `encode(_, true)` ends with the EOS token (see [`Tokenizer::adds_bos_token`]).
    pub fn adds_eos_token(&self) -> bool {
        let (_, suffix) = self.added_special_ids();
        self.eos_token_id().is_some_and(|eos| suffix.contains(&eos))
    }

    /// The ids the post-processor puts before and after a single sequence.
    fn added_special_ids(&self) -> (Vec<u32>, Vec<u32>) {
        let (Ok(with), Ok(without)) = (self.encode("a", true), self.encode("a", false)) else {
            return (Vec::new(), Vec::new());
        };
        let start = (0..=with.len().saturating_sub(without.len()))
            .find(|&i| with[i..].starts_with(&without))
            .unwrap_or(0);
        let end = (start + without.len()).min(with.len());
        (with[..start].to_vec(), with[end..].to_vec())
    }

    /// The tokenizers backend (padding and truncation off), for offsets and other low-level needs.
    pub fn backend(&self) -> &tokenizers::Tokenizer {
        &self.backend
    }
}

/// transformers' `clean_up_tokenization` (for non-BPE tokenizers that ask for it).
fn clean_up_tokenization(text: &str) -> String {
    text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

fn read_json_object(path: &Path) -> Result<Option<Map<String, Json>>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    match serde_json::from_str(&text).map_err(|e| Error::json(path, e))? {
        Json::Object(map) => Ok(Some(map)),
        _ => Err(Error::Tokenizer {
            message: format!("{}: expected a JSON object", path.display()),
        }),
    }
}

fn backend_error(err: tokenizers::Error) -> Error {
    Error::Tokenizer {
        message: err.to_string(),
    }
}

#[cfg(test)]
#[path = "tokenizer_tests.rs"]
mod tests;
