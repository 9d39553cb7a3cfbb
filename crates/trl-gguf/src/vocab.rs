//! The `tokenizer.*` metadata from tokenizer.json, tokenizer_config.json and config.json, as
//! the converter writes it: byte-level BPE tokenizers as `gpt2` (`_set_vocab_gpt2`), BPE with
//! byte fallback (Llama 2, Mistral v0.1) as sentencepiece-style `llama`.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::metadata::Value;
use crate::pretokenizer::byte_level_pre;

/// llama.cpp's token types (`gguf.TokenType`).
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

/// Special token kinds, their tokenizer_config/config.json prefix and GGUF key.
const SPECIAL: &[(&str, &str)] = &[
    ("bos", "tokenizer.ggml.bos_token_id"),
    ("eos", "tokenizer.ggml.eos_token_id"),
    ("unk", "tokenizer.ggml.unknown_token_id"),
    ("sep", "tokenizer.ggml.seperator_token_id"),
    ("pad", "tokenizer.ggml.padding_token_id"),
    ("cls", "tokenizer.ggml.cls_token_id"),
    ("mask", "tokenizer.ggml.mask_token_id"),
];

/// A model folder's tokenizer files, parsed.
pub struct TokenizerFiles {
    tokenizer: Json,
    config: Json,
    model_config: Json,
    chat_template: Option<String>,
    file: String,
}

fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

impl TokenizerFiles {
    /// Reads tokenizer.json (required), tokenizer_config.json and the chat template of `dir`.
    pub fn load(dir: &Path, model_config: &Json) -> Result<TokenizerFiles> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(Error::Unsupported(format!(
                "{}: no tokenizer.json (the GGUF file needs the tokenizer)",
                dir.display()
            )));
        }
        let tokenizer = read_json(&path)?;
        let config_path = dir.join("tokenizer_config.json");
        let config = if config_path.is_file() {
            read_json(&config_path)?
        } else {
            Json::Null
        };
        let jinja = dir.join("chat_template.jinja");
        let chat_template = match config.get("chat_template").and_then(Json::as_str) {
            Some(t) => Some(t.to_string()),
            None if jinja.is_file() => {
                Some(std::fs::read_to_string(&jinja).map_err(Error::io(&jinja))?)
            }
            None => None,
        };
        let file = path.display().to_string();
        Ok(TokenizerFiles {
            tokenizer,
            config,
            model_config: model_config.clone(),
            chat_template,
            file,
        })
    }

    /// Every `tokenizer.*` key for a model whose embedding has `vocab_size` rows.
    pub fn metadata(&self, vocab_size: usize) -> Result<Vec<(String, Value)>> {
        let model = &self.tokenizer["model"];
        if model.get("type").and_then(Json::as_str) != Some("BPE") {
            return Err(Error::Unsupported(format!(
                "{}: tokenizer model {} cannot be exported to GGUF yet (only BPE)",
                self.file, model["type"]
            )));
        }
        let byte_fallback = model
            .get("byte_fallback")
            .and_then(Json::as_bool)
            .unwrap_or(false);
        let mut kv = if byte_fallback {
            self.llama_vocab(vocab_size)?
        } else {
            self.gpt2_vocab(vocab_size)?
        };
        kv.push((
            "tokenizer.ggml.merges".into(),
            Value::strings(self.merges()?),
        ));
        kv.extend(self.special_ids(vocab_size));
        let (add_bos, add_eos) = self.add_flags();
        kv.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(add_bos)));
        kv.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(add_eos)));
        if let Some(template) = &self.chat_template {
            kv.push((
                "tokenizer.chat_template".into(),
                Value::String(template.clone()),
            ));
        }
        Ok(kv)
    }

    /// id -> (content, special, normalized) of tokenizer.json's `added_tokens`.
    fn added_tokens(&self) -> HashMap<u64, (String, bool)> {
        let mut added = HashMap::new();
        for token in self.tokenizer["added_tokens"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let (Some(id), Some(content)) = (token["id"].as_u64(), token["content"].as_str()) {
                let special = token["special"].as_bool().unwrap_or(false);
                added.insert(id, (content.to_string(), special));
            }
        }
        added
    }

    /// id -> token text over the model's vocab and the added tokens.
    fn id_to_token(&self) -> Result<HashMap<u64, String>> {
        let vocab = self.tokenizer["model"]["vocab"]
            .as_object()
            .ok_or_else(|| {
                Error::Invalid(format!("{}: model.vocab is not an object", self.file))
            })?;
        let mut tokens: HashMap<u64, String> = vocab
            .iter()
            .filter_map(|(text, id)| id.as_u64().map(|id| (id, text.clone())))
            .collect();
        for (id, (content, _)) in self.added_tokens() {
            tokens.insert(id, content);
        }
        Ok(tokens)
    }

    /// `get_vocab_base` + `_set_vocab_gpt2`: `vocab_size` tokens (gaps filled with `[PADi]`),
    /// added tokens CONTROL when special (or looking special) and USER_DEFINED otherwise.
    fn gpt2_vocab(&self, vocab_size: usize) -> Result<Vec<(String, Value)>> {
        let pre = byte_level_pre(&self.tokenizer["pre_tokenizer"], &self.file)?;
        let (tokens, types) = self.tokens_and_types(vocab_size, |_, _| NORMAL)?;
        Ok(vec![
            ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
            ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
            ("tokenizer.ggml.tokens".into(), Value::strings(tokens)),
            (
                "tokenizer.ggml.token_type".into(),
                Value::Array(types.into_iter().map(Value::I32).collect()),
            ),
        ])
    }

    /// Sentencepiece-style BPE with byte fallback (gguf-py's `LlamaHfVocab`): `<0xNN>` tokens
    /// are BYTE. Scores: minus the rank of the merge that forms the token (0 for tokens no merge
    /// forms), so llama.cpp's SPM tokenizer, which merges the best-scored pair first, applies the
    /// merges in BPE order.
    fn llama_vocab(&self, vocab_size: usize) -> Result<Vec<(String, Value)>> {
        let ranks: HashMap<String, usize> = self
            .merges()?
            .iter()
            .enumerate()
            .map(|(rank, m)| (m.replacen(' ', "", 1), rank))
            .collect();
        let is_byte = |t: &str| t.len() == 6 && t.starts_with("<0x") && t.ends_with('>');
        let (tokens, types) =
            self.tokens_and_types(vocab_size, |t, _| if is_byte(t) { BYTE } else { NORMAL })?;
        let scores = tokens
            .iter()
            .map(|t| Value::F32(ranks.get(t).map_or(0.0, |r| -(*r as f32))))
            .collect();
        let prefix = self.adds_space_prefix();
        Ok(vec![
            ("tokenizer.ggml.model".into(), Value::String("llama".into())),
            ("tokenizer.ggml.pre".into(), Value::String("default".into())),
            ("tokenizer.ggml.tokens".into(), Value::strings(tokens)),
            ("tokenizer.ggml.scores".into(), Value::Array(scores)),
            (
                "tokenizer.ggml.token_type".into(),
                Value::Array(types.into_iter().map(Value::I32).collect()),
            ),
            (
                "tokenizer.ggml.add_space_prefix".into(),
                Value::Bool(prefix),
            ),
        ])
    }

    /// Tokens 0..vocab_size and their types; `base_type` types the model's own tokens.
    fn tokens_and_types(
        &self,
        vocab_size: usize,
        base_type: impl Fn(&str, u64) -> i32,
    ) -> Result<(Vec<String>, Vec<i32>)> {
        let id_to_token = self.id_to_token()?;
        if let Some(max) = id_to_token
            .keys()
            .max()
            .filter(|&&m| m as usize >= vocab_size)
        {
            return Err(Error::Invalid(format!(
                "{}: token id {max} is beyond the model's vocab_size {vocab_size} (config.json)",
                self.file
            )));
        }
        let added = self.added_tokens();
        let (mut tokens, mut types) = (
            Vec::with_capacity(vocab_size),
            Vec::with_capacity(vocab_size),
        );
        for id in 0..vocab_size as u64 {
            match (id_to_token.get(&id), added.get(&id)) {
                (None, _) => {
                    tokens.push(format!("[PAD{id}]"));
                    types.push(UNUSED);
                }
                (Some(text), Some((_, special))) if *special || looks_special(text) => {
                    tokens.push(text.clone());
                    types.push(CONTROL);
                }
                (Some(text), Some(_)) => {
                    tokens.push(text.replace('\u{2581}', " "));
                    types.push(USER_DEFINED);
                }
                (Some(text), None) => {
                    types.push(base_type(text, id));
                    tokens.push(text.clone());
                }
            }
        }
        Ok((tokens, types))
    }

    /// The merges as `"a b"` strings; pairs (transformers >= 4.45) joined with a space, a
    /// space inside a part written as U+0120 like gguf-py.
    fn merges(&self) -> Result<Vec<String>> {
        let merges = self.tokenizer["model"]["merges"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        merges
            .iter()
            .map(|m| match m {
                Json::String(s) => Ok(s.clone()),
                Json::Array(pair) if pair.len() == 2 => {
                    let part = |p: &Json| p.as_str().map(|s| s.replace(' ', "\u{0120}"));
                    match (part(&pair[0]), part(&pair[1])) {
                        (Some(a), Some(b)) => Ok(format!("{a} {b}")),
                        _ => Err(Error::Invalid(format!(
                            "{}: merge {m} is not two strings",
                            self.file
                        ))),
                    }
                }
                _ => Err(Error::Invalid(format!(
                    "{}: unknown merge format {m}",
                    self.file
                ))),
            })
            .collect()
    }

    /// `SpecialVocab`: each special token's id from tokenizer_config.json's `{kind}_token`
    /// (looked up among the added tokens), else config.json's `{kind}_token_id`.
    fn special_ids(&self, vocab_size: usize) -> Vec<(String, Value)> {
        let added = self.added_tokens();
        let mut kv = Vec::new();
        for (kind, key) in SPECIAL {
            let entry = &self.config[format!("{kind}_token")];
            let content = entry.as_str().or_else(|| entry["content"].as_str());
            let from_added = content.and_then(|c| {
                let mut ids: Vec<u64> = added
                    .iter()
                    .filter(|(_, (t, _))| t == c)
                    .map(|(id, _)| *id)
                    .collect();
                ids.sort_unstable();
                ids.first().copied()
            });
            let id = from_added.or_else(|| self.model_config[format!("{kind}_token_id")].as_u64());
            if let Some(id) = id.filter(|&id| (id as usize) < vocab_size) {
                kv.push((key.to_string(), Value::U32(id as u32)));
            }
        }
        kv
    }

    /// Whether the tokenizer adds BOS / EOS: a TemplateProcessing post-processor that starts /
    /// ends with a special token, overridden by tokenizer_config.json's `add_bos_token` /
    /// `add_eos_token`. Written explicitly (false when nothing adds them) so llama.cpp does not
    /// fall back to its own per-vocabulary default.
    fn add_flags(&self) -> (bool, bool) {
        let (mut bos, mut eos) = (false, false);
        let post = &self.tokenizer["post_processor"];
        let processors: Vec<&Json> = match post["processors"].as_array() {
            Some(list) => list.iter().collect(),
            None => vec![post],
        };
        for p in processors
            .iter()
            .filter(|p| p["type"] == "TemplateProcessing")
        {
            if let Some(single) = p["single"].as_array().filter(|s| s.len() > 1) {
                bos = single[0].get("SpecialToken").is_some();
                eos = single[single.len() - 1].get("SpecialToken").is_some();
            }
        }
        let flag = |k: &str, current: bool| self.config[k].as_bool().unwrap_or(current);
        (flag("add_bos_token", bos), flag("add_eos_token", eos))
    }

    /// Whether a sentencepiece-style tokenizer prepends "▁" to the text (a `Prepend`
    /// normalizer or a `Metaspace` pre-tokenizer that prepends).
    fn adds_space_prefix(&self) -> bool {
        let normalizer = &self.tokenizer["normalizer"];
        let steps: Vec<&Json> = match normalizer["normalizers"].as_array() {
            Some(list) => list.iter().collect(),
            None => vec![normalizer],
        };
        let prepends = steps.iter().any(|n| n["type"] == "Prepend");
        let pre = &self.tokenizer["pre_tokenizer"];
        let metaspace = pre["type"] == "Metaspace"
            && pre["prepend_scheme"].as_str().is_none_or(|s| s != "never");
        prepends || metaspace
    }
}

/// The converter's `does_token_look_special`: added tokens that act as control tokens even
/// when not marked special.
fn looks_special(text: &str) -> bool {
    ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].contains(&text)
        || (text.starts_with("<|") && text.ends_with("|>"))
        || (text.starts_with("<\u{ff5c}") && text.ends_with("\u{ff5c}>"))
        || (text.starts_with("<unused") && text.ends_with('>'))
}

#[cfg(test)]
#[path = "vocab_tests.rs"]
mod tests;
