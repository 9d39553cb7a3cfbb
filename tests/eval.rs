//! End-to-end tests of evaluation during training (issue 20): the eval split beside the train
//! files, TRL's `eval_*` entries, an unchanged training trajectory, the best checkpoint kept
//! and loaded at the end, eval rows validated before the model loads, and a clear refusal for
//! the methods without evaluation.

mod common;

use std::path::{Path, PathBuf};

use common::{MODEL, eval_entries, logged_losses, read_json, root, text, trl};
use serde_json::Value;

/// A data folder holding `train.jsonl` (rows 0..40 of the SFT sample) and `test.jsonl`
/// (rows 40..50, with `bad_test_row` appended when given), as TRL's scripts find splits.
fn data_folder(dir: &Path, bad_test_row: Option<&str>) -> PathBuf {
    let text = std::fs::read_to_string(root().join("datasets/text.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let folder = dir.join("data");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("train.jsonl"), lines[..40].join("\n") + "\n").unwrap();
    let mut test = lines[40..50].join("\n") + "\n";
    if let Some(row) = bad_test_row {
        test.push_str(row);
        test.push('\n');
    }
    std::fs::write(folder.join("test.jsonl"), test).unwrap();
    folder
}

fn sft(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "sft",
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        data.to_str().unwrap(),
        "--output_dir",
        out.to_str().unwrap(),
        "--per_device_train_batch_size",
        "4",
        "--learning_rate",
        "1e-3",
        "--logging_steps",
        "1",
        "--max_steps",
        "6",
        "--max_length",
        "48",
    ];
    args.extend_from_slice(extra);
    trl(&args)
}

#[test]
fn a_test_split_is_evaluated_with_trl_names_and_leaves_training_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_folder(dir.path(), None);
    let (with, without) = (dir.path().join("with"), dir.path().join("without"));
    let eval_args = [
        "--dataset_test_split",
        "test",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "4",
        "--per_device_eval_batch_size",
        "3",
    ];
    let run = sft(&data, &with, &eval_args);
    assert!(run.status.success(), "{}", text(&run));
    let run = sft(&data, &without, &[]);
    assert!(run.status.success(), "{}", text(&run));

    let evals = eval_entries(&with);
    let steps: Vec<u64> = evals.iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [4, 6], "every eval_steps and at the last step");
    for entry in &evals {
        for key in [
            "eval_loss",
            "eval_entropy",
            "eval_mean_token_accuracy",
            "eval_num_tokens",
            "eval_runtime",
            "eval_samples_per_second",
            "eval_steps_per_second",
            "epoch",
        ] {
            assert!(entry[key].as_f64().is_some(), "{key} missing in {entry}");
        }
    }
    assert!(eval_entries(&without).is_empty());
    // Bit for bit: the JSON numbers of every logged training loss are equal.
    assert_eq!(logged_losses(&with), logged_losses(&without));
}

#[test]
fn load_best_model_at_end_restores_the_best_checkpoint_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_folder(dir.path(), None);
    let out = dir.path().join("run");
    // The highest eval loss is "best", so the best is an early checkpoint, not the last.
    let run = sft(
        &data,
        &out,
        &[
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "2",
            "--save_steps",
            "2",
            "--save_total_limit",
            "1",
            "--load_best_model_at_end",
            "true",
            "--metric_for_best_model",
            "loss",
            "--greater_is_better",
            "true",
        ],
    );
    assert!(run.status.success(), "{}", text(&run));
    let evals = eval_entries(&out);
    let best = evals
        .iter()
        .max_by(|a, b| {
            a["eval_loss"]
                .as_f64()
                .partial_cmp(&b["eval_loss"].as_f64())
                .unwrap()
        })
        .unwrap();
    let best_step = best["step"].as_u64().unwrap();
    assert_ne!(
        best_step, 6,
        "the test needs a best that is not the last step: {evals:?}"
    );
    let state = read_json(&out.join("trainer_state.json"));
    assert_eq!(state["best_global_step"].as_u64(), Some(best_step));
    assert_eq!(state["best_metric"].as_f64(), best["eval_loss"].as_f64());
    let best_dir = out.join(format!("checkpoint-{best_step}"));
    assert_eq!(
        state["best_model_checkpoint"].as_str().map(PathBuf::from),
        Some(best_dir.clone())
    );
    // save_total_limit=1 with a best model: only the best checkpoint is left.
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("checkpoint-"))
        .collect();
    assert_eq!(left, [format!("checkpoint-{best_step}")]);
    let weights = |dir: &Path| std::fs::read(dir.join("model.safetensors")).unwrap();
    assert!(
        weights(&out) == weights(&best_dir),
        "the saved model is not the best checkpoint's"
    );
}

#[test]
fn a_bad_eval_row_stops_the_run_before_the_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_folder(dir.path(), Some(r#"{"text": 7}"#));
    let out = dir.path().join("run");
    let run = sft(
        &data,
        &out,
        &[
            "--eval_strategy",
            "steps",
            "--model_name_or_path",
            "no/such-model",
        ],
    );
    assert!(!run.status.success());
    let message = text(&run);
    assert!(message.contains("test.jsonl"), "{message}");
    assert!(
        !message.contains("no/such-model"),
        "the model was reached: {message}"
    );
}

#[test]
fn methods_without_evaluation_refuse_eval_strategy_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // PPO (TRL 1.12's PPOTrainer has no evaluate either); GRPO/RLOO: tests/grpo_eval.rs.
    let run = trl(&[
        "ppo",
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        "datasets/prompt_only.jsonl",
        "--output_dir",
        out.to_str().unwrap(),
        "--reward_model_path",
        "fixtures/models/tiny-qwen2-rm",
        "--eval_strategy",
        "steps",
    ]);
    assert!(!run.status.success());
    let message = text(&run);
    assert!(
        message.contains("eval_strategy") && message.contains("does not support evaluation"),
        "{message}"
    );
}

#[test]
fn trl_eval_gives_the_metrics_the_run_logged_for_its_final_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_folder(dir.path(), None);
    let out = dir.path().join("run");
    let eval_args = [
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "6",
        "--per_device_eval_batch_size",
        "3",
    ];
    let run = sft(&data, &out, &eval_args);
    assert!(run.status.success(), "{}", text(&run));
    let logged = eval_entries(&out).pop().unwrap();
    let results = dir.path().join("results");
    let run = trl(&[
        "eval",
        "--method",
        "sft",
        "--model_name_or_path",
        out.to_str().unwrap(),
        "--dataset_name",
        data.to_str().unwrap(),
        "--max_length",
        "48",
        "--per_device_eval_batch_size",
        "3",
        "--output_dir",
        results.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let printed: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(printed, read_json(&results.join("eval_results.json")));
    for key in ["eval_loss", "eval_entropy", "eval_mean_token_accuracy"] {
        let (got, want) = (
            printed[key].as_f64().unwrap(),
            logged[key].as_f64().unwrap(),
        );
        assert!(
            (got - want).abs() <= 1e-6 * want.abs(),
            "{key}: {got} vs {want} logged"
        );
    }
    // A model evaluated on its own has trained on no token yet (TRL's eval_num_tokens).
    assert_eq!(printed["eval_num_tokens"].as_f64(), Some(0.0));
}

#[test]
fn trl_eval_of_dpo_with_the_policy_as_reference_has_zero_rewards() {
    let run = trl(&[
        "eval",
        "--method",
        "dpo",
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        "datasets/preference.jsonl",
        "--max_length",
        "64",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let printed: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(printed["eval_rewards/chosen"].as_f64(), Some(0.0));
    assert!((printed["eval_loss"].as_f64().unwrap() - 2f64.ln()).abs() < 1e-6);
    let run = trl(&["eval", "--method", "grpo", "--model_name_or_path", MODEL]);
    assert!(!run.status.success());
    assert!(text(&run).contains("cannot be evaluated"), "{}", text(&run));
}

#[test]
fn save_strategy_best_saves_exactly_at_each_new_best() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_folder(dir.path(), None);
    let out = dir.path().join("run");
    let args = [
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "1",
        "--save_strategy",
        "best",
        "--metric_for_best_model",
        "mean_token_accuracy",
    ];
    let run = sft(&data, &out, &args);
    assert!(run.status.success(), "{}", text(&run));
    // greater_is_better defaults to true for a metric that is not a loss.
    let mut best = f64::NEG_INFINITY;
    let mut expected = Vec::new();
    for entry in eval_entries(&out) {
        let value = entry["eval_mean_token_accuracy"].as_f64().unwrap();
        if value > best {
            best = value;
            expected.push(entry["step"].as_u64().unwrap());
        }
    }
    let mut saved: Vec<u64> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("checkpoint-")?
                .parse()
                .ok()
        })
        .collect();
    saved.sort();
    assert_eq!(saved, expected);
    let state = read_json(&out.join("trainer_state.json"));
    assert_eq!(state["best_metric"].as_f64(), Some(best));
}

#[test]
fn epoch_strategy_evaluates_at_each_epoch_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_folder(dir.path(), None);
    let out = dir.path().join("run");
    // 40 rows, batch 4: 10 steps an epoch; max_steps -1 and 2 epochs.
    let args = [
        "--eval_strategy",
        "epoch",
        "--max_steps",
        "-1",
        "--num_train_epochs",
        "2",
    ];
    let run = sft(&data, &out, &args);
    assert!(run.status.success(), "{}", text(&run));
    let steps: Vec<(u64, f64)> = eval_entries(&out)
        .iter()
        .map(|e| (e["step"].as_u64().unwrap(), e["epoch"].as_f64().unwrap()))
        .collect();
    assert_eq!(steps, [(10, 1.0), (20, 2.0)]);
}

#[test]
fn dpo_eval_with_precomputed_reference_log_probs_matches_the_live_reference() {
    let dir = tempfile::tempdir().unwrap();
    let rows = std::fs::read_to_string(root().join("datasets/preference.jsonl")).unwrap();
    let lines: Vec<&str> = rows.lines().collect();
    let data = dir.path().join("prefs");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("train.jsonl"), lines[..36].join("\n") + "\n").unwrap();
    std::fs::write(data.join("test.jsonl"), lines[36..].join("\n") + "\n").unwrap();
    let run_dpo = |out: &Path, precompute: &str| {
        let run = trl(&[
            "dpo",
            "--model_name_or_path",
            MODEL,
            "--dataset_name",
            data.to_str().unwrap(),
            "--output_dir",
            out.to_str().unwrap(),
            "--per_device_train_batch_size",
            "4",
            "--max_steps",
            "3",
            "--max_length",
            "64",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "3",
            "--precompute_ref_log_probs",
            precompute,
        ]);
        assert!(run.status.success(), "{}", text(&run));
        eval_entries(out).pop().unwrap()
    };
    let live = run_dpo(&dir.path().join("live"), "false");
    let cached = run_dpo(&dir.path().join("cached"), "true");
    for key in ["eval_loss", "eval_rewards/chosen", "eval_rewards/margins"] {
        let (a, b) = (live[key].as_f64().unwrap(), cached[key].as_f64().unwrap());
        assert!(
            (a - b).abs() <= 1e-4 * a.abs().max(1.0),
            "{key}: {a} vs {b}"
        );
    }
}
