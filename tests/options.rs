//! End-to-end tests of options through the `trl` binary: a `--config` YAML file, `trl validate`,
//! `chat_template_path`, `ref_model` and `save_total_limit`, on the bundled tiny models.

mod common;

use common::{MODEL, logged_steps, root, text, trl};

#[test]
fn a_config_file_sets_options_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let config = dir.path().join("sft.yaml");
    std::fs::write(
        &config,
        format!(
            "# TRL-style config\nmodel_name_or_path: {MODEL}\ndataset_name: datasets/text.jsonl\n\
             max_steps: 5\nper_device_train_batch_size: 2\nlearning_rate: 2.0e-3\n\
             lr_scheduler_type: constant\nlogging_steps: 1\nsave_strategy: \"no\"\n\
             train_sampling_strategy: sequential\n"
        ),
    )
    .unwrap();
    let out = trl(&[
        "sft",
        "--config",
        config.to_str().unwrap(),
        "--output_dir",
        out_dir.to_str().unwrap(),
        "--max_steps",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let steps = logged_steps(&out_dir);
    assert_eq!(steps.len(), 2, "the flag's max_steps wins over the file's");
    for step in &steps {
        assert_eq!(step["learning_rate"], 2.0e-3, "{step}");
    }

    std::fs::write(&config, "max_steps: 2\nnot_an_option: 1\n").unwrap();
    let out = trl(&["sft", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not_an_option"), "{}", text(&out));
}

#[test]
fn validate_passes_good_data_and_names_the_row_of_bad_data() {
    let out = trl(&[
        "validate",
        "--method",
        "sft",
        "--dataset_name",
        "datasets/messages.jsonl",
        "--model_name_or_path",
        MODEL,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("64"), "the row count: {}", text(&out));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"text\": \"fine\"}\n{\"txt\": \"typo\"}\n").unwrap();
    let out = trl(&[
        "validate",
        "--method",
        "sft",
        "--dataset_name",
        bad.to_str().unwrap(),
    ]);
    let message = text(&out);
    assert!(!out.status.success(), "{message}");
    assert!(!message.contains("panicked"), "{message}");
    assert!(
        message.contains("bad.jsonl") && message.contains('2'),
        "{message}"
    );
}

#[test]
fn chat_template_path_is_trained_with_and_saved() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let template = "fixtures/templates/smollm2.jinja";
    let out = trl(&[
        "sft",
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        "datasets/messages.jsonl",
        "--output_dir",
        out_dir.to_str().unwrap(),
        "--max_steps",
        "1",
        "--save_strategy",
        "no",
        "--chat_template_path",
        template,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let saved = std::fs::read_to_string(out_dir.join("chat_template.jinja")).unwrap();
    assert_eq!(
        saved,
        std::fs::read_to_string(root().join(template)).unwrap()
    );

    let out = trl(&[
        "sft",
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        "datasets/messages.jsonl",
        "--output_dir",
        dir.path().join("missing").to_str().unwrap(),
        "--chat_template_path",
        "no/such/template.jinja",
    ]);
    assert!(!out.status.success() && text(&out).contains("no/such/template.jinja"));
    assert!(!text(&out).contains("panicked"), "{}", text(&out));
}

/// DPO's step-1 rewards are `beta * (policy - reference)` log-prob ratios: exactly zero when the
/// reference is the policy's own start, not zero when `--ref_model` names another model.
#[test]
fn ref_model_is_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let first_rewards = |name: &str, extra: &[&str]| -> f64 {
        let out_dir = dir.path().join(name);
        let mut args = vec![
            "dpo",
            "--model_name_or_path",
            MODEL,
            "--dataset_name",
            "datasets/preference.jsonl",
            "--output_dir",
            out_dir.to_str().unwrap(),
            "--max_steps",
            "1",
            "--per_device_train_batch_size",
            "2",
            "--logging_steps",
            "1",
            "--save_strategy",
            "no",
        ];
        args.extend_from_slice(extra);
        let out = trl(&args);
        assert!(out.status.success(), "{}", text(&out));
        logged_steps(&out_dir)[0]["rewards/chosen"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(first_rewards("own", &[]), 0.0);
    assert_eq!(first_rewards("same", &["--ref_model", MODEL]), 0.0);
    let other = first_rewards("other", &["--ref_model", "fixtures/models/tiny-llama"]);
    assert!(
        other.abs() > 1e-3,
        "rewards/chosen {other} against another reference"
    );
}

#[test]
fn save_total_limit_keeps_the_newest_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let out = trl(&[
        "sft",
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        "datasets/text.jsonl",
        "--output_dir",
        out_dir.to_str().unwrap(),
        "--max_steps",
        "4",
        "--per_device_train_batch_size",
        "2",
        "--save_steps",
        "1",
        "--save_total_limit",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let mut checkpoints: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("checkpoint-"))
        .collect();
    checkpoints.sort();
    assert_eq!(checkpoints, ["checkpoint-3", "checkpoint-4"]);
    assert!(out_dir.join("checkpoint-4/model.safetensors").is_file());
}
