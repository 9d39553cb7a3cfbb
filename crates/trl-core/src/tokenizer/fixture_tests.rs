//! Checks against `fixtures/expected/{tokenization,chat_templates}.json`, which
//! `reference/make_fixtures.py` produced with transformers 5.23 on the fixture tokenizer.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

use super::{RenderOptions, Tokenizer};
use crate::Error;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

fn load_expected(name: &str) -> Json {
    let path = repo_path(&format!("fixtures/expected/{name}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ids(value: &Json) -> Vec<u32> {
    value
        .as_array()
        .expect("ids array")
        .iter()
        .map(|v| v.as_u64().expect("id") as u32)
        .collect()
}

#[test]
fn tokenizer_attributes_match_transformers() {
    let expected = load_expected("tokenization.json");
    let tok = Tokenizer::from_dir(repo_path(expected["tokenizer_dir"].as_str().unwrap())).unwrap();
    assert_eq!(
        tok.vocab_size_with_added_tokens() as u64,
        expected["vocab_size"].as_u64().unwrap()
    );
    assert_eq!(tok.bos_token(), expected["bos_token"].as_str());
    assert_eq!(tok.eos_token(), expected["eos_token"].as_str());
    assert_eq!(tok.pad_token(), expected["pad_token"].as_str());
    assert_eq!(tok.unk_token(), expected["unk_token"].as_str());
    assert_eq!(
        tok.eos_token_id().map(u64::from),
        expected["eos_token_id"].as_u64()
    );
    assert_eq!(
        tok.pad_token_id().map(u64::from),
        expected["pad_token_id"].as_u64()
    );
    for (token, id) in expected["special_tokens"].as_object().unwrap() {
        assert_eq!(
            tok.token_to_id(token).map(u64::from),
            id.as_u64(),
            "{token}"
        );
    }
    let map: Map<String, Json> = tok
        .special_tokens_map()
        .into_iter()
        .map(|(name, token)| (name, Json::String(token)))
        .collect();
    assert_eq!(Json::Object(map), expected["special_tokens_map"]);
    assert_eq!(tok.all_special_ids(), ids(&expected["all_special_ids"]));
}

#[test]
fn encode_and_decode_match_transformers_for_every_string() {
    let expected = load_expected("tokenization.json");
    let tok = Tokenizer::from_dir(repo_path(expected["tokenizer_dir"].as_str().unwrap())).unwrap();
    let cases = expected["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let with_special = ids(&case["ids_add_special_tokens_true"]);
        let without_special = ids(&case["ids_add_special_tokens_false"]);
        assert_eq!(
            tok.encode(text, true).unwrap(),
            with_special,
            "add_special_tokens=True: {text:?}"
        );
        assert_eq!(
            tok.encode(text, false).unwrap(),
            without_special,
            "add_special_tokens=False: {text:?}"
        );
        assert_eq!(
            tok.decode(&without_special, false).unwrap(),
            case["decode_skip_special_tokens_false"].as_str().unwrap(),
            "decode: {text:?}"
        );
        assert_eq!(
            tok.decode(&without_special, true).unwrap(),
            case["decode_skip_special_tokens_true"].as_str().unwrap(),
            "decode(skip_special_tokens=True): {text:?}"
        );
        let encoding = tok.backend().encode_char_offsets(text, false).unwrap();
        let tokens: Vec<Json> = encoding
            .get_tokens()
            .iter()
            .map(|t| Json::String(t.clone()))
            .collect();
        assert_eq!(Json::Array(tokens), case["tokens"], "tokens: {text:?}");
        let offsets: Vec<Json> = encoding
            .get_offsets()
            .iter()
            .map(|(a, b)| serde_json::json!([a, b]))
            .collect();
        assert_eq!(
            Json::Array(offsets),
            case["char_offsets"],
            "offsets: {text:?}"
        );
    }
}

#[test]
fn chat_templates_render_and_tokenize_like_transformers() {
    let expected = load_expected("chat_templates.json");
    let base = Tokenizer::from_dir(repo_path(expected["tokenizer_dir"].as_str().unwrap())).unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (family, spec) in expected["families"].as_object().unwrap() {
        let source =
            std::fs::read_to_string(repo_path(spec["template_file"].as_str().unwrap())).unwrap();
        let mut tok = base.clone();
        tok.set_chat_template(source)
            .unwrap_or_else(|e| panic!("{family}: template does not compile: {e}"));
        for case in spec["cases"].as_array().unwrap() {
            checked += 1;
            let name = format!("{family}/{}", case["name"].as_str().unwrap());
            let options = RenderOptions {
                add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap(),
                continue_final_message: case["continue_final_message"]
                    .as_bool()
                    .unwrap()
                    .then(|| "content".to_string()),
                tools: Some(case["tools"].clone()).filter(|t| !t.is_null()),
                documents: None,
                extra: case["kwargs"].as_object().cloned().unwrap_or_default(),
            };
            let result = tok.apply_chat_template(&case["messages"], &options);
            if case["error"].as_bool().unwrap() {
                let want = case["error_message"].as_str().unwrap();
                match result {
                    Err(Error::ChatTemplate { message }) if message == want => {}
                    other => {
                        failures.push(format!("{name}: expected error {want:?}, got {other:?}"))
                    }
                }
                continue;
            }
            let rendered = match result {
                Ok(rendered) => rendered,
                Err(e) => {
                    failures.push(format!("{name}: {e}"));
                    continue;
                }
            };
            if rendered != case["rendered"].as_str().unwrap() {
                failures.push(format!(
                    "{name}: rendered\n{rendered:?}\nexpected\n{:?}",
                    case["rendered"].as_str().unwrap()
                ));
                continue;
            }
            if tok.encode(&rendered, false).unwrap() != ids(&case["ids"]) {
                failures.push(format!("{name}: ids differ"));
            }
            let ids_direct = tok
                .apply_chat_template_ids(&case["messages"], &options)
                .unwrap();
            assert_eq!(
                ids_direct,
                ids(&case["ids"]),
                "{name}: apply_chat_template_ids"
            );
        }
    }
    assert!(checked > 0);
    assert!(
        failures.is_empty(),
        "{} of {checked} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
