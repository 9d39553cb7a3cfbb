//! The reward-model reward on the fixture reward model (`fixtures/models/tiny-qwen2-rm`): the
//! text, token ids and scores TRL's GRPOTrainer computes (standard and conversational data),
//! and scores equal to trl-reward's own `score_sequences` (what `trl score` uses) on that text.

use std::path::PathBuf;

use burn::tensor::Device;
use serde_json::{Map, Value, json};
use trl_core::model::load_sequence_classifier;
use trl_core::tokenizer::Tokenizer;
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

/// The fixture's cases (`reference/rewards_reference.py`, `reward_model`): TRL's text, token
/// ids and `logits[:, 0]` for standard and conversational pairs.
fn trl_cases(kind: &str) -> Vec<Value> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/expected/grpo_rewards.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let fixture: Value = serde_json::from_str(&text).expect("fixture JSON");
    fixture["reward_model"][kind]
        .as_array()
        .cloned()
        .expect("reward_model cases")
}

fn content(value: &Value) -> Content {
    match value {
        Value::Array(messages) => Content::Messages(messages.clone()),
        other => Content::Text(other.as_str().unwrap_or_default().to_string()),
    }
}

#[test]
fn texts_ids_and_scores_match_trl() {
    // Built through `parse_reward_func` on an autodiff device, as the trainer will.
    let ctx = RewardContext {
        reward_model_batch_size: 2,
        ..RewardContext::new(Device::default().autodiff())
    };
    let spec = model_dir().to_string_lossy().into_owned();
    let mut reward = parse_reward_func(&spec, &ctx).expect("load");
    let tokenizer = Tokenizer::from_dir(model_dir()).expect("tokenizer");
    for kind in ["standard", "conversational"] {
        let cases = trl_cases(kind);
        let batch: Vec<RewardInput> = cases
            .iter()
            .map(|c| {
                RewardInput::new(
                    content(&c["prompt"]),
                    content(&c["completion"]),
                    vec![],
                    &Map::new(),
                )
            })
            .collect();
        let scores = reward.score(&batch).expect("score");
        let loaded =
            RewardModelReward::load(&spec, &Device::default(), Map::new(), 1).expect("load");
        let texts = loaded.texts(&batch).expect("texts");
        for ((case, text), score) in cases.iter().zip(&texts).zip(&scores) {
            assert_eq!(text, case["text"].as_str().expect("text"), "{kind}");
            let ids: Vec<u32> = serde_json::from_value(case["input_ids"].clone()).expect("ids");
            assert_eq!(
                tokenizer.encode(text, false).expect("encode"),
                ids,
                "{kind}: {text:?}"
            );
            let (got, want) = (
                score.expect("scored"),
                case["score"].as_f64().expect("score"),
            );
            assert!(
                (got - want).abs() <= 1e-4,
                "{kind} {text:?}: {got} vs TRL {want}"
            );
        }
    }
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
