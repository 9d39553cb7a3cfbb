//! `tokenizer.ggml.pre`: which of llama.cpp's built-in pre-tokenizers splits text like the
//! model's tokenizer.json does. llama.cpp's converter recognises a tokenizer only by a hash of
//! known models' outputs; we read the pre-tokenizer itself (its split regex and byte-level
//! settings), so a fine-tune with an extended tokenizer still exports, and a regex llama.cpp
//! has no pre-tokenizer for is an error that quotes it.

use serde_json::Value as Json;

use crate::error::{Error, Result};

/// Split regexes (as tokenizer.json writes them) and llama.cpp's name for the pre-tokenizer
/// that applies the same regex (`llama-vocab.cpp`'s `LLAMA_VOCAB_PRE_TYPE_*`).
const KNOWN_REGEXES: &[(&str, &str)] = &[
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        "qwen2",
    ),
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        "llama-bpe",
    ),
    (
        r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
        "gpt-2",
    ),
    (
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        "tekken",
    ),
];

/// The GPT-2 regex that a `ByteLevel` pre-tokenizer with `use_regex: true` applies.
const GPT2_REGEX: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// The pre-tokenizer name for a byte-level BPE tokenizer's `pre_tokenizer` (tokenizer.json).
pub fn byte_level_pre(pre_tokenizer: &Json, file: &str) -> Result<&'static str> {
    let steps: Vec<&Json> = match pre_tokenizer.get("type").and_then(Json::as_str) {
        Some("Sequence") => pre_tokenizer
            .get("pretokenizers")
            .and_then(Json::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        Some(_) => vec![pre_tokenizer],
        None => {
            return Err(Error::Unsupported(format!(
                "{file}: a byte-level BPE tokenizer without a pre_tokenizer has no llama.cpp pre-tokenizer"
            )));
        }
    };
    let mut regexes = Vec::new();
    for step in &steps {
        match step.get("type").and_then(Json::as_str) {
            Some("Split") => {
                let regex = step.pointer("/pattern/Regex").and_then(Json::as_str);
                let behavior = step.get("behavior").and_then(Json::as_str);
                let invert = step.get("invert").and_then(Json::as_bool).unwrap_or(false);
                match (regex, behavior, invert) {
                    (Some(regex), Some("Isolated"), false) => regexes.push(regex.to_string()),
                    _ => return Err(unsupported_step(step, file)),
                }
            }
            Some("ByteLevel") => {
                if step
                    .get("add_prefix_space")
                    .and_then(Json::as_bool)
                    .unwrap_or(false)
                {
                    return Err(unsupported_step(step, file));
                }
                if step
                    .get("use_regex")
                    .and_then(Json::as_bool)
                    .unwrap_or(true)
                {
                    regexes.push(GPT2_REGEX.to_string());
                }
            }
            _ => return Err(unsupported_step(step, file)),
        }
    }
    match regexes.as_slice() {
        [regex] => KNOWN_REGEXES
            .iter()
            .find(|(known, _)| known == regex)
            .map(|(_, name)| *name)
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "{file}: the pre-tokenizer's split regex {regex:?} has no llama.cpp pre-tokenizer \
                     (known: {})",
                    KNOWN_REGEXES.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
                ))
            }),
        _ => Err(Error::Unsupported(format!(
            "{file}: a pre-tokenizer with {} split regexes ({regexes:?}) has no llama.cpp pre-tokenizer",
            regexes.len()
        ))),
    }
}

fn unsupported_step(step: &Json, file: &str) -> Error {
    Error::Unsupported(format!(
        "{file}: pre-tokenizer step {step} has no llama.cpp equivalent"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn split_then_bytes(regex: &str) -> Json {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
        ]})
    }

    #[test]
    fn known_regexes_get_their_llama_cpp_names() {
        for (regex, name) in KNOWN_REGEXES {
            assert_eq!(
                byte_level_pre(&split_then_bytes(regex), "t.json").unwrap(),
                *name
            );
        }
        let gpt2 = json!({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true});
        assert_eq!(byte_level_pre(&gpt2, "t.json").unwrap(), "gpt-2");
    }

    #[test]
    fn an_unknown_regex_is_quoted_in_the_error() {
        let err = byte_level_pre(&split_then_bytes(r"\p{N}{1,5}|\s+"), "tokenizer.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(r"\\p{N}{1,5}") && err.contains("tokenizer.json"),
            "{err}"
        );
    }
}
