//! Unit tests of `vocab.rs`: token lists, types, merges and special ids from small tokenizers.

use super::*;
use serde_json::json;

fn files(tokenizer: Json, config: Json, model_config: Json) -> TokenizerFiles {
    TokenizerFiles {
        tokenizer,
        config,
        model_config,
        chat_template: None,
        file: "tokenizer.json".into(),
    }
}

fn byte_level(vocab: Json, merges: Json, added: Json) -> Json {
    json!({
        "model": {"type": "BPE", "byte_fallback": false, "vocab": vocab, "merges": merges},
        "added_tokens": added,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
    })
}

fn get<'a>(kv: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
    kv.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

#[test]
fn rows_beyond_the_tokenizer_are_padding_tokens_and_added_tokens_are_typed() {
    let tokenizer = byte_level(
        json!({"a": 0, "b": 1, "ab": 2}),
        json!([["a", "b"]]),
        json!([
            {"id": 3, "content": "<|end|>", "special": true},
            {"id": 4, "content": "<tool>", "special": false}
        ]),
    );
    let kv = files(
        tokenizer,
        json!({"eos_token": "<|end|>"}),
        json!({"pad_token_id": 5}),
    )
    .metadata(6)
    .unwrap();
    let tokens = get(&kv, "tokenizer.ggml.tokens")
        .unwrap()
        .as_array()
        .unwrap();
    assert_eq!(tokens[5], Value::String("[PAD5]".into()));
    let types = get(&kv, "tokenizer.ggml.token_type")
        .unwrap()
        .as_array()
        .unwrap();
    let want = [NORMAL, NORMAL, NORMAL, CONTROL, USER_DEFINED, UNUSED].map(Value::I32);
    assert_eq!(types, &want[..]);
    assert_eq!(
        get(&kv, "tokenizer.ggml.eos_token_id"),
        Some(&Value::U32(3))
    );
    assert_eq!(
        get(&kv, "tokenizer.ggml.padding_token_id"),
        Some(&Value::U32(5))
    );
    assert_eq!(
        get(&kv, "tokenizer.ggml.pre"),
        Some(&Value::String("gpt-2".into()))
    );
}

#[test]
fn merge_pairs_with_spaces_are_written_like_gguf_py() {
    let tokenizer = byte_level(json!({"a": 0, " b": 1}), json!([["a", " b"]]), json!([]));
    let merges = files(tokenizer, Json::Null, Json::Null).merges().unwrap();
    assert_eq!(merges, vec!["a \u{0120}b".to_string()]);
}

#[test]
fn ids_beyond_the_models_vocab_size_are_an_error() {
    let tokenizer = byte_level(json!({"a": 0, "b": 7}), json!([]), json!([]));
    let err = files(tokenizer, Json::Null, Json::Null)
        .metadata(4)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("token id 7") && err.contains("vocab_size 4"),
        "{err}"
    );
}
