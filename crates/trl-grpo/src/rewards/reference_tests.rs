//! The built-in rewards against TRL's own numbers (`reference/rewards_reference.py` ->
//! `fixtures/expected/grpo_rewards.json`), through the same [`RewardFunction`] interface the
//! trainer uses.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::builtin::{BuiltinParams, builtin};
use super::input::{Content, RewardInput};

fn fixture() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/expected/grpo_rewards.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A conversational completion, as the reference script passes it, with its `solution` column.
fn input(completion: &str, solution: &Value, ids: Vec<u32>) -> RewardInput {
    let mut row = Map::new();
    row.insert("solution".into(), solution.clone());
    RewardInput::new(
        Content::Messages(vec![json!({"role": "user", "content": "Solve it."})]),
        Content::Messages(vec![json!({"role": "assistant", "content": completion})]),
        ids,
        &row,
    )
}

fn score(name: &str, params: &BuiltinParams, batch: &[RewardInput]) -> Vec<Option<f64>> {
    let mut function = builtin(name, params).unwrap_or_else(|e| panic!("{name}: {e}"));
    function
        .score(batch)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn expected(value: &Value) -> Option<f64> {
    value.as_f64()
}

#[test]
fn text_rewards_match_trl() {
    let fixture = fixture();
    let cases = fixture["text_cases"].as_array().expect("text_cases");
    assert!(cases.len() >= 30);
    let batch: Vec<RewardInput> = cases
        .iter()
        .map(|case| {
            input(
                case["completion"].as_str().unwrap_or(""),
                &case["solution"],
                vec![],
            )
        })
        .collect();
    let params = BuiltinParams::default();
    let mut mismatches = Vec::new();
    for name in [
        "accuracy_reward",
        "reasoning_accuracy_reward",
        "think_format_reward",
    ] {
        let ours = score(name, &params, &batch);
        for (case, got) in cases.iter().zip(ours) {
            let want = expected(&case[name]);
            if got != want {
                mismatches.push(format!(
                    "{name}({:?}, solution {:?}): TRL {want:?}, ours {got:?}",
                    case["completion"], case["solution"]
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn accuracy_on_the_grid_matches_trl() {
    let fixture = fixture();
    let rows = fixture["grid_cases"].as_array().expect("grid_cases");
    assert!(rows.len() > 1000);
    let batch: Vec<RewardInput> = rows
        .iter()
        .map(|row| input(row[0].as_str().unwrap_or(""), &row[1], vec![]))
        .collect();
    let ours = score("accuracy_reward", &BuiltinParams::default(), &batch);
    let mismatches: Vec<String> = rows
        .iter()
        .zip(ours)
        .filter(|(row, got)| *got != expected(&row[2]))
        .map(|(row, got)| {
            format!(
                "{} vs gold {}: TRL {}, ours {got:?}",
                row[0], row[1], row[2]
            )
        })
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn length_rewards_match_trl() {
    let fixture = fixture();
    let ids = |case: &Value| -> Vec<u32> {
        serde_json::from_value(case["completion_ids"].clone()).expect("completion_ids")
    };
    let cases = fixture["length_cases"].as_array().expect("length_cases");
    let batch: Vec<RewardInput> = cases
        .iter()
        .map(|c| input("", &json!("1"), ids(c)))
        .collect();
    for (k, p) in fixture["soft_overlong_params"]
        .as_array()
        .expect("params")
        .iter()
        .enumerate()
    {
        let params = BuiltinParams {
            max_completion_len: p["max_completion_len"].as_u64().expect("max") as usize,
            soft_punish_cache: p["soft_punish_cache"].as_u64().expect("cache") as usize,
            ..BuiltinParams::default()
        };
        let ours = score("get_soft_overlong_punishment", &params, &batch);
        for (case, got) in cases.iter().zip(ours) {
            let want = expected(&case["soft_overlong_punishment"][k]);
            assert_eq!(got, want, "soft overlong {p} on {} ids", ids(case).len());
        }
    }
    for (k, p) in fixture["repetition_params"]
        .as_array()
        .expect("params")
        .iter()
        .enumerate()
    {
        let params = BuiltinParams {
            ngram_size: p["ngram_size"].as_u64().expect("n") as usize,
            max_penalty: p["max_penalty"].as_f64().expect("penalty"),
            ..BuiltinParams::default()
        };
        let ours = score("get_repetition_penalty_reward", &params, &batch);
        for (case, got) in cases.iter().zip(ours) {
            let want = expected(&case["repetition_penalty"][k]).expect("number");
            let got = got.expect("a repetition penalty is always a number");
            assert!(
                (got - want).abs() < 1e-12,
                "repetition {p} on {:?}: {got} vs {want}",
                ids(case)
            );
        }
    }
}

#[test]
fn cosine_scaled_reward_matches_trl() {
    let fixture = fixture();
    let params = BuiltinParams {
        cosine_max_len: fixture["cosine_params"]["max_len"]
            .as_u64()
            .map(|n| n as usize),
        ..BuiltinParams::default()
    };
    let cases = fixture["cosine_cases"].as_array().expect("cosine_cases");
    let batch: Vec<RewardInput> = cases
        .iter()
        .map(|c| {
            let length = c["length"].as_u64().expect("length") as usize;
            input(
                c["completion"].as_str().unwrap_or(""),
                &c["solution"],
                vec![1; length],
            )
        })
        .collect();
    let ours = score("get_cosine_scaled_reward", &params, &batch);
    for (case, got) in cases.iter().zip(ours) {
        let want = expected(&case["cosine_scaled_reward"]);
        match (got, want) {
            (Some(got), Some(want)) => assert!((got - want).abs() < 1e-12, "{case}: {got}"),
            (got, want) => assert_eq!(got, want, "{case}"),
        }
    }
}
