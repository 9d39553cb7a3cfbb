//! End-to-end tests of what the `trl` binary says when a user gets something wrong: each
//! message names the file, row, option or command at fault, once, without misleading tips.

mod common;

use std::path::Path;
use std::process::Output;

use common::{MODEL, root, text, trl_command};

/// Runs `trl args...` offline (`HF_HUB_OFFLINE=1`), so no message depends on the network.
fn trl(args: &[&str]) -> Output {
    trl_command(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap()
}

/// Stdout and stderr of a run that must fail with `code`.
fn failure(output: &Output, code: i32) -> String {
    let text = text(output);
    assert_eq!(output.status.code(), Some(code), "{text}");
    text
}

fn sft_on(model: &Path, out: &Path) -> Output {
    trl(&[
        "sft",
        "--model_name_or_path",
        model.to_str().unwrap(),
        "--dataset_name",
        "datasets/messages.jsonl",
        "--output_dir",
        out.to_str().unwrap(),
        "--max_steps",
        "1",
    ])
}

#[test]
fn an_unknown_command_lists_the_commands_without_a_misleading_tip() {
    let text = failure(&trl(&["dpoo"]), 2);
    assert!(text.contains("`trl dpoo` is not a command"), "{text}");
    assert!(
        text.contains("sft, dpo, kto, reward,") && text.contains("score, validate"),
        "{text}"
    );
    assert!(!text.contains("similar") && !text.contains("tip"), "{text}");
}

#[test]
fn an_option_without_a_value_says_so() {
    let text = failure(&trl(&["dpo", "--beta"]), 1);
    assert!(
        text.contains("`--beta` needs a value: it takes a number"),
        "{text}"
    );
    assert!(!text.contains("invalid type"), "{text}");
}

#[test]
fn validate_names_an_unknown_role_by_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("robot.jsonl");
    std::fs::write(
        &data,
        concat!(
            r#"{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}"#,
            "\n",
            r#"{"messages": [{"role": "user", "content": "Q"}, {"role": "robot", "content": "A"}]}"#,
            "\n"
        ),
    )
    .unwrap();
    let output = trl(&[
        "validate",
        "--dataset_name",
        data.to_str().unwrap(),
        "--method",
        "sft",
    ]);
    let text = failure(&output, 1);
    assert!(
        text.contains("robot.jsonl line 2, column \"messages\", message 2: expected a role among"),
        "{text}"
    );
    assert!(text.contains("found the role \"robot\""), "{text}");
}

#[test]
fn an_empty_model_folder_names_config_json_first() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("empty-model");
    std::fs::create_dir(&model).unwrap();
    let text = failure(&sft_on(&model, &dir.path().join("out")), 1);
    assert!(text.contains("has no config.json"), "{text}");
    assert!(!text.contains("tokenizer.json not found"), "{text}");
}

#[test]
fn a_broken_config_json_is_described_once() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("broken-model");
    std::fs::create_dir(&model).unwrap();
    for file in [
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ] {
        std::fs::copy(root().join(MODEL).join(file), model.join(file)).unwrap();
    }
    std::fs::write(model.join("config.json"), "{\"model_type\": ").unwrap();
    let text = failure(&sft_on(&model, &dir.path().join("out")), 1);
    assert!(text.contains("config.json: invalid JSON"), "{text}");
    assert_eq!(text.matches("EOF while parsing").count(), 1, "{text}");
}
