//! `trl reward`'s numbers against TRL 1.16's RewardTrainer (reference/reward_reference.py):
//! the prepared data and first batch must be identical, every logged step must match within
//! tolerance, and the saved model must be what `AutoModelForSequenceClassification` loads.

use std::path::Path;

use burn::tensor::Device;
use serde_json::{Map, Value};
use trl_core::model::{SequenceClassifier, load_sequence_classifier};
use trl_core::parity::{
    self, assert_close_slices, assert_log_history_matches, assert_param_updates_match,
    assert_summary_matches, read_jsonl, repo_root, safetensors_update_norms,
};
use trl_core::tokenizer::Tokenizer;
use trl_core::train::{RunLogger, TrainingArguments, take_known_keys, train};

use crate::data::prepare_examples;
use crate::trainer::resolve_pad_token;
use crate::{RewardConfig, RewardMethod};

/// Relative tolerance on the loss, and on the other per-step metrics (issue 8).
const LOSS_RTOL: f64 = 2e-3;
const METRIC_RTOL: f64 = 2e-2;

/// The `margin` column reward_reference.py adds to the 'preference_margin_center' case's rows
/// (`MARGINS[i % 3]`, an input of the run, checked below against the prepared dataset).
const MARGINS: [f64; 3] = [0.0, 0.5, 1.0];

fn json<T: serde::de::DeserializeOwned>(value: &Value) -> T {
    serde_json::from_value(value.clone()).unwrap()
}

struct Case {
    expected: Value,
    config: RewardConfig,
    args: TrainingArguments,
    rows: Vec<Map<String, Value>>,
}

fn load_case(file: &str, output_dir: &Path) -> Case {
    let path = format!("fixtures/expected/reward/{file}.json");
    let (expected, mut map) = parity::load_case(&path, "reward_config", output_dir);
    let args: TrainingArguments = take_known_keys(&mut map, "training").unwrap();
    let config: RewardConfig = take_known_keys(&mut map, "reward").unwrap();
    assert!(map.is_empty(), "unhandled keys {map:?}");
    let mut rows = read_jsonl(expected["dataset"].as_str().unwrap());
    if expected["prepared_dataset"].get("margin").is_some() {
        for (i, row) in rows.iter_mut().enumerate() {
            row.insert("margin".into(), Value::from(MARGINS[i % MARGINS.len()]));
        }
    }
    Case {
        expected,
        config,
        args,
        rows,
    }
}

/// Tokenizer, examples and method for a case; checks the prepared data and the first batch.
fn prepare(
    name: &str,
    case: &Case,
    model_dir: &Path,
) -> (RewardMethod, Vec<crate::data::RewardExample>) {
    let mut tokenizer = Tokenizer::from_dir(model_dir).unwrap();
    let info = &case.expected["trainer_info"];
    let pad = resolve_pad_token(&mut tokenizer, case.config.pad_token.as_deref()).unwrap();
    assert_eq!(
        pad as u64,
        info["pad_token_id"].as_u64().unwrap(),
        "{name}: pad token"
    );
    let examples = prepare_examples(&case.rows, &tokenizer, case.config.max_length).unwrap();
    let prepared = &case.expected["prepared_dataset"];
    assert_eq!(
        examples.len() as u64,
        prepared["num_rows"].as_u64().unwrap(),
        "{name}: rows"
    );
    let lengths =
        |f: fn(&crate::data::RewardExample) -> usize| examples.iter().map(f).collect::<Vec<_>>();
    assert_eq!(
        lengths(|e| e.chosen_ids.len()),
        json::<Vec<usize>>(&prepared["chosen_lengths"]),
        "{name}: chosen lengths"
    );
    assert_eq!(
        lengths(|e| e.rejected_ids.len()),
        json::<Vec<usize>>(&prepared["rejected_lengths"]),
        "{name}: rejected lengths"
    );
    let first_chosen: Vec<Vec<u32>> = json(&prepared["chosen_ids"]);
    let first_rejected: Vec<Vec<u32>> = json(&prepared["rejected_ids"]);
    assert!(
        !first_chosen.is_empty() && first_chosen.len() == first_rejected.len(),
        "{name}: the fixture's first rows"
    );
    for (i, (chosen, rejected)) in first_chosen.iter().zip(&first_rejected).enumerate() {
        assert_eq!(
            &examples[i].chosen_ids, chosen,
            "{name}: chosen_ids of row {i}"
        );
        assert_eq!(
            &examples[i].rejected_ids, rejected,
            "{name}: rejected_ids of row {i}"
        );
    }
    if let Some(margins) = prepared.get("margin") {
        let got: Vec<f64> = examples.iter().map(|e| e.margin.unwrap()).collect();
        assert_eq!(got, json::<Vec<f64>>(margins), "{name}: margins");
    }

    let method = RewardMethod::new(case.config.clone(), tokenizer).unwrap();
    let first: Vec<_> = examples
        .iter()
        .take(case.args.per_device_train_batch_size)
        .collect();
    let batch = method.collate(&first);
    let want = &case.expected["first_batch"];
    assert_eq!(
        batch.tokens.input_ids,
        json::<Vec<Vec<u32>>>(&want["input_ids"]),
        "{name}: first batch input_ids"
    );
    assert_eq!(
        batch.tokens.attention_mask,
        json::<Vec<Vec<i64>>>(&want["attention_mask"]),
        "{name}: first batch attention_mask"
    );
    if let Some(margin) = want.get("margin") {
        assert_eq!(
            batch.margin,
            Some(json::<Vec<f32>>(margin)),
            "{name}: first batch margin"
        );
    }
    (method, examples)
}

fn load_model(model_dir: &Path, pad: u32, device: &Device) -> SequenceClassifier {
    let mut model = load_sequence_classifier(model_dir, 1, device).unwrap();
    model.set_pad_token_id(pad);
    model
}

fn check_case(file: &str) {
    let out = tempfile::tempdir().unwrap();
    let case = load_case(file, out.path());
    let model_dir = repo_root().join("fixtures/models/tiny-qwen2-rm");
    let (mut method, examples) = prepare(file, &case, &model_dir);
    let device = Device::default().autodiff();
    let model = load_model(&model_dir, method.pad_token_id, &device);

    // Scores of the untrained model on the first micro-batch, before any update.
    let first_micro = &case.expected["micro_batches"][0];
    let pairs = first_micro["rewards_chosen"].as_array().unwrap().len();
    let first: Vec<_> = examples.iter().take(pairs).collect();
    let rewards = model.forward(&method.collate(&first).tokens).unwrap();
    let got: Vec<f32> = rewards.into_data().try_to_vec().unwrap();
    let want: Vec<f32> = [
        json::<Vec<f32>>(&first_micro["rewards_chosen"]),
        json(&first_micro["rewards_rejected"]),
    ]
    .concat();
    let as_f64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    assert_close_slices(
        &format!("{file}: initial scores"),
        &as_f64(&got),
        &as_f64(&want),
        0.0,
        1e-4,
    );

    let outcome = train(
        &mut method,
        model,
        &examples,
        &case.args,
        &device,
        &mut RunLogger::silent(),
    )
    .unwrap();
    assert_log_history_matches(
        file,
        &outcome.state.log_history,
        &case.expected["log_history"],
        LOSS_RTOL,
        METRIC_RTOL,
        &[
            "grad_norm",
            "learning_rate",
            "min_reward",
            "mean_reward",
            "max_reward",
            "accuracy",
            "margin",
            "epoch",
        ],
        &["num_tokens"],
    );
    assert_summary_matches(
        file,
        &outcome.state.log_history,
        &case.expected["log_history"],
        LOSS_RTOL,
        &["train_loss"],
    );

    // The saved model: what AutoModelForSequenceClassification reads, and the trained weights.
    let saved = &case.expected["trainer_info"]["saved_model"];
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap())
            .unwrap();
    for key in [
        "architectures",
        "pad_token_id",
        "eos_token_id",
        "id2label",
        "label2id",
    ] {
        assert_eq!(
            config[key], saved["config"][key],
            "{file}: saved config.json {key}"
        );
    }
    let bytes = std::fs::read(out.path().join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(
        tensors.len() as u64,
        saved["num_tensors"].as_u64().unwrap(),
        "{file}: tensors saved"
    );
    assert_eq!(
        tensors.tensor("score.weight").unwrap().shape(),
        json::<Vec<usize>>(&saved["score_shape"])
    );
    // How far each parameter moved (final norms alone move < 1% in 8 steps).
    let updates = safetensors_update_norms(
        &model_dir.join("model.safetensors"),
        &out.path().join("model.safetensors"),
    )
    .unwrap();
    assert_param_updates_match(
        file,
        &updates,
        &case.expected["param_update_norms"],
        METRIC_RTOL,
    );

    // The trained model, reloaded from disk, scores the first batch as TRL's trained model does.
    let plain = Device::default();
    let reloaded = method_load(&method, out.path(), &plain);
    let batch = method.collate(
        &examples
            .iter()
            .take(case.args.per_device_train_batch_size)
            .collect::<Vec<_>>(),
    );
    let got: Vec<f32> = reloaded
        .forward(&batch.tokens)
        .unwrap()
        .into_data()
        .try_to_vec()
        .unwrap();
    let want: Vec<f32> = json(&case.expected["final_scores_first_batch"]);
    assert_close_slices(
        &format!("{file}: final scores"),
        &as_f64(&got),
        &as_f64(&want),
        METRIC_RTOL,
        1e-6,
    );
}

/// The values of an f32 tensor of a safetensors file.
fn f32_values(tensors: &safetensors::SafeTensors, name: &str) -> Vec<f64> {
    let view = tensors
        .tensor(name)
        .unwrap_or_else(|_| panic!("{name} not saved"));
    view.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
        .collect()
}

fn method_load(method: &RewardMethod, dir: &Path, device: &Device) -> SequenceClassifier {
    use trl_core::train::Method;
    method.load_model(dir, device).unwrap()
}

#[test]
fn standard_preference_matches_trl() {
    check_case("preference");
}

#[test]
fn conversational_preference_matches_trl() {
    check_case("preference_conversational");
}

#[test]
fn implicit_prompt_preference_matches_trl() {
    check_case("preference_implicit");
}

#[test]
fn margin_and_centering_match_trl() {
    check_case("preference_margin_center");
}

#[test]
fn gradient_accumulation_matches_trl() {
    check_case("preference_ga2");
}

/// A causal LM gets a fresh `score` head (random, so only the structure can match TRL's).
#[test]
fn causal_lm_gets_a_fresh_score_head_like_trl() {
    let out = tempfile::tempdir().unwrap();
    let mut case = load_case("preference_from_causal_lm", out.path());
    case.args.max_steps = 2;
    let model_dir = repo_root().join("fixtures/models/tiny-qwen2");
    let (mut method, examples) = prepare("from_causal_lm", &case, &model_dir);
    let device = Device::default().autodiff();
    device.seed(case.args.seed);
    let model = load_model(&model_dir, method.pad_token_id, &device);
    let init = &case.expected["score_init"];
    let mut writer = trl_core::model::WeightWriter::default();
    model.save_weights(&mut writer).unwrap();
    let init_path = out.path().join("init.safetensors");
    writer.write(&init_path).unwrap();
    let init_bytes = std::fs::read(&init_path).unwrap();
    let init_tensors = safetensors::SafeTensors::deserialize(&init_bytes).unwrap();
    let head: Vec<f64> = f32_values(&init_tensors, "score.weight");
    let mean = head.iter().sum::<f64>() / head.len() as f64;
    let std =
        (head.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (head.len() - 1) as f64).sqrt();
    // normal(0, initializer_range = 0.02) over 64 values: TRL's draw has std 0.0211
    assert!(
        mean.abs() < 0.01 && (0.012..0.03).contains(&std),
        "score init mean {mean} std {std}"
    );
    assert!((init["std"].as_f64().unwrap() - 0.02).abs() < 0.005);
    let outcome = train(
        &mut method,
        model,
        &examples,
        &case.args,
        &device,
        &mut RunLogger::silent(),
    )
    .unwrap();
    let keys: Vec<String> = json(&case.expected["log_history_keys"][0]);
    let first = &outcome.state.log_history[0];
    for key in keys {
        assert!(first.contains_key(&key), "{key} not logged");
    }
    let saved = &case.expected["trainer_info"]["saved_model"];
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap())
            .unwrap();
    for key in [
        "architectures",
        "pad_token_id",
        "tie_word_embeddings",
        "id2label",
    ] {
        assert_eq!(config[key], saved["config"][key], "saved config.json {key}");
    }
    let bytes = std::fs::read(out.path().join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(
        tensors.tensor("lm_head.weight").is_err(),
        "the causal LM head is dropped"
    );
    assert_eq!(
        tensors.tensor("score.weight").unwrap().shape(),
        json::<Vec<usize>>(&init["shape"])
    );
    assert_eq!(tensors.len() as u64, saved["num_tensors"].as_u64().unwrap());
}
