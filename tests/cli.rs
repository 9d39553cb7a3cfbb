//! End-to-end tests of the `trl` binary on the bundled tiny model and datasets.

mod common;

use common::{
    MODEL, copy_model, json_lines, logged_losses, read_json, text, trl, trl_command, trl_in_cache,
};

fn sft_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "sft",
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        "datasets/messages.jsonl",
        "--output_dir",
        out,
        "--per_device_train_batch_size",
        "4",
        "--learning_rate",
        "1e-3",
        "--logging_steps",
        "2",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn help_lists_only_working_commands() {
    let out = trl(&["--help"]);
    assert!(out.status.success());
    let help = text(&out);
    for command in [
        "sft", "dpo", "kto", "reward", "grpo", "rloo", "ppo", "score", "validate", "env",
    ] {
        assert!(help.contains(command), "{help}");
    }
}

#[test]
fn env_reports_backend_and_threads() {
    let out = trl(&["env"]);
    assert!(out.status.success(), "{}", text(&out));
    let report = text(&out);
    assert!(
        report.contains("burn version: 0.22") && report.contains("threads:"),
        "{report}"
    );
}

#[test]
fn sft_writes_an_hf_folder_and_trainer_state() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let out = trl(&sft_args(
        out_dir.to_str().unwrap(),
        &["--max_steps", "4", "--report_to", "jsonl", "tensorboard"],
    ));
    assert!(out.status.success(), "{}", text(&out));
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "trainer_state.json",
        "log_history.jsonl",
    ] {
        assert!(out_dir.join(file).is_file(), "missing {file}");
    }
    let state = read_json(&out_dir.join("trainer_state.json"));
    let history = state["log_history"].as_array().unwrap();
    let first = &history[0];
    for key in [
        "loss",
        "grad_norm",
        "learning_rate",
        "entropy",
        "mean_token_accuracy",
        "num_tokens",
        "epoch",
        "step",
        "step_time",
    ] {
        assert!(first.get(key).is_some(), "log entry lacks {key}: {first}");
    }
    assert_eq!(state["global_step"], 4);
    let events = std::fs::read_dir(out_dir.join("runs")).unwrap().count();
    assert_eq!(events, 1, "one TensorBoard event file");
    assert!(history.last().unwrap().get("train_loss").is_some());
}

#[test]
fn unknown_key_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let out = trl(&sft_args(
        out_dir.to_str().unwrap(),
        &["--no_such_key", "16"],
    ));
    assert!(!out.status.success());
    assert!(text(&out).contains("no_such_key"), "{}", text(&out));
    assert!(!out_dir.exists());
}

#[test]
fn bad_data_stops_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bad.jsonl");
    std::fs::write(&data, "{\"text\": \"fine\"}\n{\"text\": 3}\nnot json\n").unwrap();
    let out_dir = dir.path().join("run");
    let out = trl(&[
        "sft",
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        data.to_str().unwrap(),
        "--output_dir",
        out_dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let message = text(&out);
    assert!(
        message.contains("bad.jsonl") && message.contains('2') && message.contains("text"),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
    assert!(!out_dir.exists());
}

#[test]
fn a_diverging_loss_stops_with_the_step_and_keeps_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let out = trl(&sft_args(
        out_dir.to_str().unwrap(),
        &[
            "--max_steps",
            "30",
            "--save_steps",
            "1",
            "--learning_rate",
            "1e12",
            "--max_grad_norm",
            "0",
        ],
    ));
    assert!(!out.status.success());
    let message = text(&out);
    assert!(
        message.contains("at step") && !message.contains("panicked"),
        "{message}"
    );
    let checkpoint = out_dir.join("checkpoint-1");
    assert!(
        checkpoint.join("model.safetensors").is_file()
            && checkpoint.join("trainer_state.json").is_file()
    );
    assert!(
        !out_dir.join("model.safetensors").exists(),
        "no final model after a failed run"
    );
}

#[test]
fn dpo_with_precomputed_reference_reuses_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let run = |name: &str| {
        let out_dir = dir.path().join(name);
        trl_in_cache(
            &[
                "dpo",
                "--model_name_or_path",
                MODEL,
                "--dataset_name",
                "datasets/preference.jsonl",
                "--output_dir",
                out_dir.to_str().unwrap(),
                "--max_steps",
                "2",
                "--per_device_train_batch_size",
                "2",
                "--precompute_ref_log_probs",
                "true",
                "--save_strategy",
                "no",
                "--logging_steps",
                "1",
            ],
            &cache,
        )
    };
    let first = run("a");
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains("computed and cached"),
        "{}",
        text(&first)
    );
    let second = run("b");
    assert!(second.status.success(), "{}", text(&second));
    assert!(
        text(&second).contains("reference log-probs: read from cache"),
        "{}",
        text(&second)
    );
    let losses = |name: &str| logged_losses(&dir.path().join(name));
    let (a, b) = (losses("a"), losses("b"));
    assert_eq!(a.len(), 2, "one logged loss per step: {a:?}");
    assert_eq!(a, b);
}

#[test]
fn kto_refuses_random_sampling_and_single_example_batches() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let base = [
        "kto",
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        "datasets/unpaired_preference.jsonl",
        "--output_dir",
        out_dir.to_str().unwrap(),
    ];
    let mut random = base.to_vec();
    random.extend(["--train_sampling_strategy", "random"]);
    let out = trl(&random);
    assert!(
        !out.status.success() && text(&out).contains("sequential"),
        "{}",
        text(&out)
    );
    let mut single = base.to_vec();
    single.extend(["--per_device_train_batch_size", "1"]);
    let out = trl(&single);
    assert!(
        !out.status.success() && text(&out).contains("batch_size"),
        "{}",
        text(&out)
    );
    assert!(!out_dir.exists());
    let mut ok = base.to_vec();
    ok.extend([
        "--per_device_train_batch_size",
        "4",
        "--max_steps",
        "2",
        "--learning_rate",
        "1e-3",
        "--logging_steps",
        "1",
    ]);
    let out = trl(&ok);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("\"kl\""), "{}", text(&out));
}

#[test]
fn reward_then_score_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let rm = dir.path().join("rm");
    let out = trl(&[
        "reward",
        "--model_name_or_path",
        "fixtures/models/tiny-qwen2-rm",
        "--dataset_name",
        "datasets/preference.jsonl",
        "--output_dir",
        rm.to_str().unwrap(),
        "--max_steps",
        "2",
        "--logging_steps",
        "1",
        "--max_length",
        "64",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let config = read_json(&rm.join("config.json"));
    assert_eq!(config["architectures"][0], "Qwen2ForSequenceClassification");
    let state = read_json(&rm.join("trainer_state.json"));
    for key in [
        "accuracy",
        "margin",
        "min_reward",
        "mean_reward",
        "max_reward",
        "num_tokens",
    ] {
        assert!(state["log_history"][0].get(key).is_some(), "missing {key}");
    }
    let scores = dir.path().join("scores.jsonl");
    let out = trl(&[
        "score",
        "--model_name_or_path",
        rm.to_str().unwrap(),
        "--dataset_name",
        "datasets/preference.jsonl",
        "--output",
        scores.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let lines = json_lines(&std::fs::read_to_string(&scores).unwrap());
    assert_eq!(lines.len(), 48);
    assert!(lines.iter().all(
        |l| l["chosen_score"].as_f64().is_some_and(f64::is_finite) && l.get("prompt").is_some()
    ));
    let out = trl(&[
        "score",
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        "datasets/preference.jsonl",
    ]);
    assert!(
        !out.status.success() && !text(&out).contains("panicked"),
        "{}",
        text(&out)
    );
}

/// Runs `args` (with `--output_dir` appended) twice against one fresh cache: the first run
/// tokenizes, the second reads the tokenized examples back and trains identically.
fn assert_second_run_reads_tokenized_data_from_the_cache(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let run = |name: &str| {
        let out_dir = dir.path().join(name);
        trl_command(args)
            .args(["--output_dir", out_dir.to_str().unwrap()])
            .env("TRL_RS_CACHE", &cache)
            .output()
            .unwrap()
    };
    let message = "tokenized data: read from cache";
    let first = run("a");
    assert!(
        first.status.success() && !text(&first).contains(message),
        "{}",
        text(&first)
    );
    let second = run("b");
    assert!(
        second.status.success() && text(&second).contains(message),
        "{}",
        text(&second)
    );
    let losses = |name: &str| logged_losses(&dir.path().join(name));
    let (a, b) = (losses("a"), losses("b"));
    assert!(!a.is_empty());
    assert_eq!(a, b, "a run from cached tokens must train identically");
}

/// Every training command's options after the data and model (`--output_dir` comes last).
const SHORT_RUN: [&str; 8] = [
    "--max_steps",
    "2",
    "--logging_steps",
    "1",
    "--per_device_train_batch_size",
    "2",
    "--save_strategy",
    "no",
];

#[test]
fn sft_reads_tokenized_data_from_the_cache_on_a_second_run() {
    let mut args = vec!["sft", "--model_name_or_path", MODEL];
    args.extend(["--dataset_name", "datasets/messages.jsonl"]);
    args.extend(SHORT_RUN);
    assert_second_run_reads_tokenized_data_from_the_cache(&args);
}

#[test]
fn dpo_kto_and_reward_read_tokenized_data_from_the_cache_on_a_second_run() {
    for (command, model, data) in [
        ("dpo", MODEL, "datasets/preference.jsonl"),
        ("kto", MODEL, "datasets/unpaired_preference.jsonl"),
        (
            "reward",
            "fixtures/models/tiny-qwen2-rm",
            "datasets/preference.jsonl",
        ),
    ] {
        let mut args = vec![
            command,
            "--model_name_or_path",
            model,
            "--dataset_name",
            data,
        ];
        args.extend(SHORT_RUN);
        assert_second_run_reads_tokenized_data_from_the_cache(&args);
    }
}

#[test]
fn a_tokenizer_with_ids_beyond_the_embeddings_is_refused_before_training() {
    // the tiny model with a tokenizer whose letters map past the 384 embedded ids
    let dir = tempfile::tempdir().unwrap();
    let model = copy_model(&dir.path().join("model"));
    let path = model.join("tokenizer.json");
    let mut tokenizer = read_json(&path);
    let vocab = tokenizer["model"]["vocab"].as_object_mut().unwrap();
    for letter in ["a", "e", "t"] {
        let id = vocab[letter].as_u64().unwrap();
        vocab.insert(letter.to_string(), (id + 1000).into());
    }
    std::fs::write(&path, tokenizer.to_string()).unwrap();
    let out_dir = dir.path().join("out");
    let out = trl(&[
        "sft",
        "--model_name_or_path",
        model.to_str().unwrap(),
        "--dataset_name",
        "datasets/text.jsonl",
        "--output_dir",
        out_dir.to_str().unwrap(),
        "--max_steps",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("vocab_size is 384") && !text(&out).contains("panicked"),
        "{}",
        text(&out)
    );
    assert!(!out_dir.exists());
}
