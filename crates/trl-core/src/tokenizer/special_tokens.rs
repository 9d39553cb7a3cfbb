//! Which strings are a tokenizer's special tokens, resolved the way transformers 5.x resolves them.
//!
//! Sources, from `PreTrainedTokenizerBase._from_pretrained` / `__init__` and `TokenizersBackend.__init__`
//! (tokenization_utils_base.py, tokenization_utils_tokenizers.py):
//! - the named tokens `bos_token` ... `mask_token` of `tokenizer_config.json`, each a string or an
//!   AddedToken object (`{"content": "<s>", "lstrip": false, ...}`);
//! - `special_tokens_map.json`, read only when the config has no `added_tokens_decoder` (legacy), whose
//!   entries override the config's;
//! - "model-specific" tokens: any other `*_token` key with a token value (`image_token`), plus
//!   `extra_special_tokens` given as a dict;
//! - `extra_special_tokens` (formerly `additional_special_tokens`) given as a list;
//! - `pad_token` defaults to the padding token configured in `tokenizer.json`.

use serde_json::{Map, Value as Json};
use tokenizers::AddedToken;

/// transformers' `SPECIAL_TOKENS_ATTRIBUTES`, in its order.
pub(crate) const NAMED_SPECIAL_TOKENS: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// The resolved special tokens of a tokenizer.
#[derive(Debug, Clone, Default)]
pub(crate) struct SpecialTokens {
    /// `(attribute, token)` for every named and model-specific token that is set, in transformers' order.
    pub named: Vec<(String, AddedToken)>,
    /// Extra special tokens without a name.
    pub extra: Vec<AddedToken>,
}

impl SpecialTokens {
    /// Resolves the special tokens from the parsed `tokenizer_config.json`, the optional
    /// `special_tokens_map.json`, and the padding token of `tokenizer.json`.
    pub(crate) fn resolve(
        config: &Map<String, Json>,
        special_tokens_map: Option<&Map<String, Json>>,
        json_pad_token: Option<&str>,
    ) -> Self {
        let mut values: Map<String, Json> = config.clone();
        // Legacy folders only: with an `added_tokens_decoder`, special_tokens_map.json is not read.
        if let (false, Some(map)) = (
            config.contains_key("added_tokens_decoder"),
            special_tokens_map,
        ) {
            for (key, value) in map {
                values.insert(key.clone(), value.clone());
            }
        }
        if let Some(pad) = json_pad_token {
            values
                .entry("pad_token")
                .or_insert_with(|| Json::String(pad.to_string()));
        }
        // Tokens named in added_tokens_decoder replace same-content named tokens (keeping their flags).
        let decoder_tokens = added_tokens_decoder(config);

        let mut named = Vec::new();
        let push_named = |name: &str, value: &Json, named: &mut Vec<(String, AddedToken)>| {
            if let Some(mut token) = parse_added_token(value) {
                if let Some(known) = decoder_tokens.iter().find(|t| t.content == token.content) {
                    token = known.clone();
                }
                named.push((name.to_string(), token));
            }
        };
        for name in NAMED_SPECIAL_TOKENS {
            if let Some(value) = values.get(name) {
                push_named(name, value, &mut named);
            }
        }
        for (key, value) in &values {
            let is_model_specific = key.ends_with("_token")
                && !NAMED_SPECIAL_TOKENS.contains(&key.as_str())
                && is_token_value(value);
            if is_model_specific {
                push_named(key, value, &mut named);
            }
        }
        let extra_value = values
            .get("extra_special_tokens")
            .or_else(|| values.get("additional_special_tokens"));
        let mut extra = Vec::new();
        match extra_value {
            Some(Json::Object(dict)) => {
                for (key, value) in dict {
                    push_named(key, value, &mut named);
                }
            }
            Some(Json::Array(list)) => extra.extend(list.iter().filter_map(parse_added_token)),
            _ => {}
        }
        SpecialTokens { named, extra }
    }

    /// The token string stored under an attribute name (`"eos_token"`).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.named
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.content.as_str())
    }

    /// Sets or replaces a named token.
    pub(crate) fn set(&mut self, name: &str, content: &str) {
        let token = AddedToken::from(content.to_string(), true);
        match self.named.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = token,
            None => self.named.push((name.to_string(), token)),
        }
    }

    /// transformers' `special_tokens_map`: attribute → token string, as template variables.
    pub(crate) fn map(&self) -> Vec<(String, String)> {
        self.named
            .iter()
            .map(|(n, t)| (n.clone(), t.content.clone()))
            .collect()
    }

    /// `all_special_tokens`: named then extra, without duplicates.
    pub(crate) fn all(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for token in self.named.iter().map(|(_, t)| t).chain(self.extra.iter()) {
            if !all.contains(&token.content) {
                all.push(token.content.clone());
            }
        }
        all
    }

    /// The tokens `TokenizersBackend.__init__` adds to the backend: the config's `added_tokens_decoder`,
    /// then every special token that is not an added token yet (`already_added` lists those).
    pub(crate) fn tokens_to_add(
        &self,
        config: &Map<String, Json>,
        already_added: &[String],
    ) -> Vec<AddedToken> {
        let mut to_add = added_tokens_decoder(config);
        let named_contents: Vec<&str> =
            self.named.iter().map(|(_, t)| t.content.as_str()).collect();
        for token in self.named.iter().map(|(_, t)| t).chain(self.extra.iter()) {
            let known = already_added.contains(&token.content)
                || to_add.iter().any(|t| t.content == token.content);
            if !known {
                to_add.push(token.clone());
            }
        }
        for token in &mut to_add {
            if !token.special && named_contents.contains(&token.content.as_str()) {
                token.special = true;
            }
        }
        to_add
    }
}

/// The config's `added_tokens_decoder` (`{"151643": {"content": ..., "special": true, ...}}`), sorted by id.
fn added_tokens_decoder(config: &Map<String, Json>) -> Vec<AddedToken> {
    let Some(Json::Object(decoder)) = config.get("added_tokens_decoder") else {
        return Vec::new();
    };
    let mut tokens: Vec<(u64, AddedToken)> = decoder
        .iter()
        .filter_map(|(id, value)| Some((id.parse().ok()?, parse_added_token(value)?)))
        .collect();
    tokens.sort_by_key(|(id, _)| *id);
    tokens.into_iter().map(|(_, t)| t).collect()
}

fn is_token_value(value: &Json) -> bool {
    match value {
        Json::String(_) => true,
        Json::Object(map) => map.get("content").is_some_and(Json::is_string),
        _ => false,
    }
}

/// A token given as a string (then a special token) or as an AddedToken object, with Python's
/// `AddedToken` defaults (`special=False`, `normalized = not special`). Named tokens are marked special
/// later, in [`SpecialTokens::tokens_to_add`], as transformers does.
pub(crate) fn parse_added_token(value: &Json) -> Option<AddedToken> {
    match value {
        Json::String(content) => Some(AddedToken::from(content.clone(), true)),
        Json::Object(map) => {
            let content = map.get("content")?.as_str()?.to_string();
            let flag = |name: &str| map.get(name).and_then(Json::as_bool);
            let special = flag("special").unwrap_or(false);
            Some(
                AddedToken::from(content, special)
                    .single_word(flag("single_word").unwrap_or(false))
                    .lstrip(flag("lstrip").unwrap_or(false))
                    .rstrip(flag("rstrip").unwrap_or(false))
                    .normalized(flag("normalized").unwrap_or(!special)),
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Json) -> Map<String, Json> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn named_model_specific_and_extra_tokens_are_resolved() {
        let config = object(json!({
            "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false, "normalized": true},
            "eos_token": "</s>",
            "unk_token": null,
            "image_token": "<image>",
            "add_bos_token": true,
            "additional_special_tokens": ["<x>"],
        }));
        let special = SpecialTokens::resolve(&config, None, Some("<pad>"));
        assert_eq!(special.get("bos_token"), Some("<s>"));
        assert_eq!(special.get("eos_token"), Some("</s>"));
        assert_eq!(special.get("unk_token"), None);
        assert_eq!(special.get("pad_token"), Some("<pad>"));
        assert_eq!(special.get("image_token"), Some("<image>"));
        assert_eq!(special.all(), ["<s>", "</s>", "<pad>", "<image>", "<x>"]);
    }

    #[test]
    fn special_tokens_map_overrides_the_config_only_without_added_tokens_decoder() {
        let map = object(json!({"eos_token": {"content": "<|end|>", "lstrip": false}}));
        let legacy = object(json!({"eos_token": "</s>"}));
        assert_eq!(
            SpecialTokens::resolve(&legacy, Some(&map), None).get("eos_token"),
            Some("<|end|>")
        );
        let modern = object(json!({"eos_token": "</s>", "added_tokens_decoder": {}}));
        assert_eq!(
            SpecialTokens::resolve(&modern, Some(&map), None).get("eos_token"),
            Some("</s>")
        );
    }
}
