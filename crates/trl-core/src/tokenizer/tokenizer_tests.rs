//! A tiny hand-written WordLevel tokenizer (an unusual one: `add_bos_token: false` that the
//! post-processor overrides, an EOS that is not an added token), written with the values
//! transformers 5.23 gives for it by reference/data_reference.py (`wordlevel_tokenizer` in
//! fixtures/expected/data.json).

use std::path::PathBuf;

use super::*;
use serde_json::json;

fn tokenizer_dir(name: &str) -> PathBuf {
    crate::parity::repo_root()
        .join("fixtures/tokenizers")
        .join(name)
}

/// What transformers did with the tokenizer, as recorded by the reference script.
fn transformers_says() -> Json {
    crate::parity::read_fixture("fixtures/expected/data.json")["wordlevel_tokenizer"].clone()
}

fn ids(value: &Json) -> Vec<u32> {
    serde_json::from_value(value.clone()).unwrap()
}

#[test]
fn encodes_decodes_and_resolves_special_tokens_like_transformers() {
    let want = transformers_says();
    let tok = Tokenizer::from_dir(tokenizer_dir("wordlevel")).unwrap();
    let encoded = tok.encode("hello world </s> foo", true).unwrap();
    assert_eq!(encoded, ids(&want["encode_special"]));
    assert_eq!(
        tok.encode("hello world", false).unwrap(),
        ids(&want["encode_plain"])
    );
    assert_eq!(tok.decode(&encoded, true).unwrap(), want["decode_skip"]);
    assert_eq!(tok.decode(&encoded, false).unwrap(), want["decode_keep"]);
    assert_eq!(
        (tok.vocab_size(), tok.vocab_size_with_added_tokens()),
        (
            want["vocab_size"].as_u64().unwrap() as usize,
            want["len"].as_u64().unwrap() as usize
        )
    );
    assert_eq!(
        tok.bos_token_id().map(u64::from),
        want["bos_token_id"].as_u64()
    );
    assert_eq!(
        tok.eos_token_id().map(u64::from),
        want["eos_token_id"].as_u64()
    );
    assert!(tok.pad_token().is_none() && want["pad_token"].is_null());
    assert_eq!(tok.all_special_ids(), ids(&want["all_special_ids"]));
    assert!(tok.adds_bos_token());
    assert!(!tok.adds_eos_token());
    let rendered = tok.apply_chat_template(
        &json!([{"role": "user", "content": "hello"}]),
        &RenderOptions::default(),
    );
    assert_eq!(rendered.unwrap(), want["chat_hello"]);
}

/// transformers 5.23 drops `add_bos_token` from the saved config (it ignores the key when
/// loading); we keep the original's `false`, which loads the same. Every other key and file
/// is what `save_pretrained` writes.
#[test]
fn save_writes_what_transformers_writes_and_reloads_identically() {
    let want = transformers_says();
    let mut tok = Tokenizer::from_dir(tokenizer_dir("wordlevel")).unwrap();
    tok.set_eos_token("world").unwrap();
    assert!(tok.set_pad_token("missing").is_err());
    let out = tempfile::tempdir().unwrap();
    tok.save(out.path()).unwrap();

    let template = fs::read_to_string(out.path().join("chat_template.jinja")).unwrap();
    assert_eq!(template, want["saved_chat_template"]);
    let text = fs::read_to_string(out.path().join(TOKENIZER_CONFIG_FILE)).unwrap();
    let config: Json = serde_json::from_str(&text).unwrap();
    for key in ["bos_token", "eos_token", "model_max_length"] {
        assert_eq!(config[key], want["saved_config"][key], "{key}");
    }
    assert!(text.contains("\"model_max_length\": 1000000000000000019884624838656,"));
    assert!(want["saved_config"]["add_bos_token"].is_null());
    assert_eq!(config["add_bos_token"], false);
    assert_eq!(
        config.get("chat_template").is_some(),
        want["saved_config_has_chat_template"]
    );

    let reloaded = Tokenizer::from_dir(out.path()).unwrap();
    assert_eq!(
        reloaded.eos_token_id().map(u64::from),
        want["reloaded_eos_token_id"].as_u64()
    );
    assert_eq!(
        reloaded.encode("hello world </s>", true).unwrap(),
        tok.encode("hello world </s>", true).unwrap()
    );
    assert_eq!(
        reloaded.decode(&[1, 3, 4, 2], true).unwrap(),
        want["reloaded_decode_skip"]
    );
}

#[test]
fn assistant_mask_covers_generation_blocks() {
    let mut tok = Tokenizer::from_dir(tokenizer_dir("wordlevel")).unwrap();
    tok.set_chat_template(
        "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }} {{ eos_token }}{% endgeneration %}{% else %}{{ m.content }} {% endif %}{% endfor %}",
    )
    .unwrap();
    let messages =
        json!([{"role": "user", "content": "hello"}, {"role": "assistant", "content": "world"}]);
    let encoded = tok
        .apply_chat_template_with_assistant_mask(&messages, &RenderOptions::default())
        .unwrap();
    assert_eq!(encoded.input_ids, [3, 4, 2]);
    assert_eq!(encoded.assistant_masks, [0, 1, 1]);
}

#[test]
fn missing_tokenizer_json_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Tokenizer::from_dir(dir.path()),
        Err(Error::Tokenizer { .. })
    ));
}

#[test]
fn model_specific_tokens_are_special_and_template_variables() {
    let want = transformers_says()["extra_special"].clone();
    let mut tok = Tokenizer::from_dir(tokenizer_dir("wordlevel-extra-special")).unwrap();
    let got = tok.special_tokens_map();
    let expected: Vec<(String, String)> =
        serde_json::from_value(want["special_tokens_map"].clone()).unwrap();
    assert!(expected.len() >= 6, "{expected:?}");
    assert_eq!(got, expected);
    assert_eq!(tok.all_special_ids(), ids(&want["all_special_ids"]));
    assert_eq!(
        tok.vocab_size_with_added_tokens() as u64,
        want["len"].as_u64().unwrap()
    );
    assert_eq!(
        tok.encode("hello <pad> world", false).unwrap(),
        ids(&want["encode_plain"])
    );
    assert_eq!(
        tok.decode(&[3, 4, 5, 2], true).unwrap(),
        want["decode_skip"]
    );
    tok.set_chat_template("{{ image_token }}|{{ audio_token }}|{{ pad_token }}")
        .unwrap();
    let rendered = tok.apply_chat_template(
        &json!([{"role": "user", "content": "x"}]),
        &RenderOptions::default(),
    );
    assert_eq!(rendered.unwrap(), want["chat"]);
}
