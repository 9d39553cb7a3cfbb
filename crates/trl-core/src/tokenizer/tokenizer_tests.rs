//! A tiny hand-written tokenizer folder; every expected value was printed by transformers 5.23's
//! `AutoTokenizer.from_pretrained` on the same files.

use super::*;
use serde_json::json;

const TOKENIZER_JSON: &str = r#"{"version":"1.0","truncation":null,"padding":null,
 "added_tokens":[{"id":0,"content":"<unk>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
                 {"id":1,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
 "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},
 "post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
   "pair":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"Sequence":{"id":"B","type_id":1}}],
   "special_tokens":{"<s>":{"id":"<s>","ids":[1],"tokens":["<s>"]}}},
 "decoder":null,
 "model":{"type":"WordLevel","vocab":{"<unk>":0,"<s>":1,"</s>":2,"hello":3,"world":4},"unk_token":"<unk>"}}"#;

// `add_bos_token: false` is ignored by transformers 5 (the post-processor adds <s>); `</s>` is not an
// added token in tokenizer.json, so loading makes it one.
const TOKENIZER_CONFIG: &str = r#"{"bos_token":"<s>","eos_token":"</s>","unk_token":"<unk>","add_bos_token":false,
 "tokenizer_class":"PreTrainedTokenizerFast","model_max_length":1000000000000000019884624838656,
 "chat_template":"{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"}"#;

fn tiny_tokenizer_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(TOKENIZER_FILE), TOKENIZER_JSON).unwrap();
    fs::write(dir.path().join(TOKENIZER_CONFIG_FILE), TOKENIZER_CONFIG).unwrap();
    dir
}

#[test]
fn encodes_decodes_and_resolves_special_tokens_like_transformers() {
    let dir = tiny_tokenizer_dir();
    let tok = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(
        tok.encode("hello world </s> foo", true).unwrap(),
        [1, 3, 4, 2, 0]
    );
    assert_eq!(tok.encode("hello world", false).unwrap(), [3, 4]);
    assert_eq!(tok.decode(&[1, 3, 4, 2, 0], true).unwrap(), "hello world");
    assert_eq!(
        tok.decode(&[1, 3, 4, 2, 0], false).unwrap(),
        "<s> hello world </s> <unk>"
    );
    assert_eq!(
        (tok.vocab_size(), tok.vocab_size_with_added_tokens()),
        (5, 5)
    );
    assert_eq!(
        (tok.bos_token_id(), tok.eos_token_id(), tok.pad_token()),
        (Some(1), Some(2), None)
    );
    assert_eq!(tok.all_special_ids(), [1, 2, 0]);
    assert!(tok.adds_bos_token());
    assert!(!tok.adds_eos_token());
    let rendered = tok.apply_chat_template(
        &json!([{"role": "user", "content": "hello"}]),
        &RenderOptions::default(),
    );
    assert_eq!(rendered.unwrap(), "<s>hello</s>");
}

#[test]
fn save_writes_what_transformers_writes_and_reloads_identically() {
    let dir = tiny_tokenizer_dir();
    let mut tok = Tokenizer::from_dir(dir.path()).unwrap();
    tok.set_eos_token("world").unwrap();
    assert!(tok.set_pad_token("missing").is_err());
    let out = tempfile::tempdir().unwrap();
    tok.save(out.path()).unwrap();

    let template = fs::read_to_string(out.path().join("chat_template.jinja")).unwrap();
    assert_eq!(
        template,
        "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"
    );
    let config = fs::read_to_string(out.path().join(TOKENIZER_CONFIG_FILE)).unwrap();
    assert!(config.starts_with(
        "{\n  \"add_bos_token\": false,\n  \"bos_token\": \"<s>\",\n  \"eos_token\": \"world\",\n"
    ));
    assert!(config.contains("\"model_max_length\": 1000000000000000019884624838656,"));
    assert!(!config.contains("chat_template"));

    let reloaded = Tokenizer::from_dir(out.path()).unwrap();
    assert_eq!(reloaded.eos_token_id(), Some(4));
    assert_eq!(
        reloaded.encode("hello world </s>", true).unwrap(),
        tok.encode("hello world </s>", true).unwrap()
    );
    assert_eq!(reloaded.decode(&[1, 3, 4, 2], true).unwrap(), "hello");
}

#[test]
fn assistant_mask_covers_generation_blocks() {
    let dir = tiny_tokenizer_dir();
    let mut tok = Tokenizer::from_dir(dir.path()).unwrap();
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
    let dir = tiny_tokenizer_dir();
    let mut config: Json = serde_json::from_str(TOKENIZER_CONFIG).unwrap();
    config["image_token"] = json!("hello");
    config["extra_special_tokens"] = json!({"audio_token": "world"});
    config["pad_token"] = json!({"__type": "AddedToken", "content": "<pad>", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false});
    fs::write(dir.path().join(TOKENIZER_CONFIG_FILE), config.to_string()).unwrap();
    let mut tok = Tokenizer::from_dir(dir.path()).unwrap();
    let map: Vec<(&str, &str)> = vec![
        ("bos_token", "<s>"),
        ("eos_token", "</s>"),
        ("unk_token", "<unk>"),
        ("pad_token", "<pad>"),
        ("image_token", "hello"),
        ("audio_token", "world"),
    ];
    let got = tok.special_tokens_map();
    assert_eq!(
        got.iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect::<Vec<_>>(),
        map
    );
    assert_eq!(tok.all_special_ids(), [1, 2, 0, 5, 3, 4]);
    assert_eq!(tok.vocab_size_with_added_tokens(), 6);
    assert_eq!(tok.encode("hello <pad> world", false).unwrap(), [3, 5, 4]);
    assert_eq!(tok.decode(&[3, 4, 5, 2], true).unwrap(), "");
    tok.set_chat_template("{{ image_token }}|{{ audio_token }}|{{ pad_token }}")
        .unwrap();
    let rendered = tok.apply_chat_template(
        &json!([{"role": "user", "content": "x"}]),
        &RenderOptions::default(),
    );
    assert_eq!(rendered.unwrap(), "hello|world|<pad>");
}
