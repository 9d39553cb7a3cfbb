//! The reward-model reward on the fixture reward model (`fixtures/models/tiny-qwen2-rm`): the
//! text it builds for standard and conversational data, and scores equal to trl-reward's own
//! `score_sequences` (what `trl score` uses) on that text.

use std::path::PathBuf;

use burn::tensor::Device;
use serde_json::{Map, Value, json};
use trl_core::model::load_sequence_classifier;
use trl_core::tokenizer::{RenderOptions, Tokenizer};
use trl_reward::score::score_sequences;

use super::input::{Content, RewardInput};
use super::model::{RewardModelReward, model_reward_name};
use super::{RewardContext, RewardFunction, parse_reward_func};

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/tiny-qwen2-rm")
}

fn text_input(prompt: &str, completion: &str) -> RewardInput {
    RewardInput::new(
        Content::Text(prompt.into()),
        Content::Text(completion.into()),
        vec![],
        &Map::new(),
    )
}

fn chat_input(question: &str, answer: &str) -> RewardInput {
    RewardInput::new(
        Content::Messages(vec![json!({"role": "user", "content": question})]),
        Content::Messages(vec![json!({"role": "assistant", "content": answer})]),
        vec![],
        &Map::new(),
    )
}

/// trl-reward's scores of `texts` (tokenized without special tokens), one sequence at a time.
fn reference_scores(texts: &[String]) -> Vec<f64> {
    let dir = model_dir();
    let tokenizer = Tokenizer::from_dir(&dir).expect("tokenizer");
    let pad = tokenizer.pad_token_id().expect("pad token");
    let mut model = load_sequence_classifier(&dir, 1, &Device::default()).expect("model");
    model.set_pad_token_id(pad);
    texts
        .iter()
        .map(|text| {
            let ids = tokenizer.encode(text, false).expect("encode");
            f64::from(score_sequences(&model, &[&ids], pad, 1).expect("score")[0])
        })
        .collect()
}

fn assert_close(ours: &[Option<f64>], reference: &[f64]) {
    assert_eq!(ours.len(), reference.len());
    for (got, want) in ours.iter().zip(reference) {
        let got = got.expect("a reward model always scores");
        assert!(
            (got - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{got} vs {want}"
        );
    }
}

#[test]
fn standard_text_is_prompt_plus_completion() {
    let dir = model_dir();
    let mut reward = RewardModelReward::load(
        dir.to_str().expect("utf-8 path"),
        &Device::default(),
        Map::new(),
        2,
    )
    .expect("load");
    assert_eq!(reward.name(), "tiny-qwen2-rm");
    let batch = [
        text_input("Q: 2+2?\nA:", " 4"),
        text_input("Q: 2+2?\nA:", " five, I think, or maybe more"),
        text_input("Tell me a story.", " Once upon a time"),
    ];
    let texts = reward.texts(&batch).expect("texts");
    assert_eq!(texts[0], "Q: 2+2?\nA: 4");
    let ours = reward.score(&batch).expect("score");
    assert_close(&ours, &reference_scores(&texts));
    assert_ne!(ours[0], ours[1], "different completions, different rewards");
}

#[test]
fn conversations_go_through_the_chat_template() {
    let ctx = RewardContext {
        reward_model_batch_size: 4,
        ..RewardContext::new(Device::default().autodiff())
    };
    let spec = model_dir().to_string_lossy().into_owned();
    let mut reward = parse_reward_func(&spec, &ctx).expect("load");
    let batch = [
        chat_input("What is 2+2?", "4"),
        chat_input("What is 2+2?", "It is five."),
    ];
    let tokenizer = Tokenizer::from_dir(model_dir()).expect("tokenizer");
    let texts: Vec<String> = batch
        .iter()
        .map(|input| {
            let (Content::Messages(p), Content::Messages(c)) = (&input.prompt, &input.completion)
            else {
                unreachable!()
            };
            let messages: Vec<Value> = p.iter().chain(c).cloned().collect();
            tokenizer
                .apply_chat_template(&Value::Array(messages), &RenderOptions::default())
                .expect("render")
        })
        .collect();
    assert!(
        texts[0].contains("<|im_start|>assistant\n4<|im_end|>"),
        "{}",
        texts[0]
    );
    assert_close(
        &reward.score(&batch).expect("score"),
        &reference_scores(&texts),
    );
}

#[test]
fn mixed_batches_and_non_reward_models_are_errors() {
    let dir = model_dir();
    let mut reward = RewardModelReward::load(
        dir.to_str().expect("utf-8 path"),
        &Device::default(),
        Map::new(),
        2,
    )
    .expect("load");
    let error = reward
        .score(&[chat_input("q", "a"), text_input("q", "a")])
        .unwrap_err()
        .to_string();
    assert!(error.contains("completion 1"), "{error}");
    let causal = dir.with_file_name("tiny-qwen2");
    let error = RewardModelReward::load(
        causal.to_str().expect("path"),
        &Device::default(),
        Map::new(),
        2,
    )
    .err()
    .expect("a causal LM is no reward model")
    .to_string();
    assert!(error.contains("one label"), "{error}");
    assert_eq!(model_reward_name("out/my-rm/"), "my-rm");
    assert_eq!(model_reward_name("org/rm-7b"), "rm-7b");
}
