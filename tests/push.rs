//! `trl push` and `--push_to_hub` end to end, against the fake Hub of
//! `trl_hub_push::testing` (HF_ENDPOINT points at it): what lands in the repo is compared byte
//! for byte with the local files, and the token appears in no output and no uploaded file.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::{MODEL, copy_model, text, trl_command};
use trl_hub_push::testing::{Failure, FakeHub, TOKEN};

/// `trl args...` talking to `hub`, with no token from the environment (a fresh `HF_HOME`)
/// unless `token` is given as `HF_TOKEN`.
fn trl_hub(args: &[&str], hub: &FakeHub, hf_home: &Path, token: Option<&str>) -> Output {
    let mut command: Command = trl_command(args);
    command
        .env("HF_ENDPOINT", &hub.endpoint)
        .env("HF_HOME", hf_home)
        .env_remove("HF_TOKEN")
        .env_remove("HUGGING_FACE_HUB_TOKEN")
        .env_remove("HF_TOKEN_PATH");
    if let Some(token) = token {
        command.env("HF_TOKEN", token);
    }
    command.output().unwrap()
}

/// No byte sequence of the token in anything the run printed or the Hub received.
fn assert_token_kept_secret(output: &Output, hub: &FakeHub) {
    let printed = text(output);
    assert!(!printed.contains(TOKEN), "{printed}");
    for commit in hub.commits() {
        for (path, bytes) in &commit.files {
            let content = String::from_utf8_lossy(bytes);
            assert!(!content.contains(TOKEN), "token in uploaded {path}");
        }
    }
    for request in hub.requests() {
        assert!(!request.url.contains(TOKEN), "token in URL {}", request.url);
    }
}

fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn push_uploads_a_model_folder_with_a_generated_card() {
    let hub = FakeHub::start(&[], vec![]);
    let tmp = tempfile::tempdir().unwrap();
    let model = copy_model(&tmp.path().join("model"));
    let out = trl_hub(
        &["push", model.to_str().unwrap(), "org/tiny", "--private"],
        &hub,
        tmp.path(),
        Some(TOKEN),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("to http://127.0.0.1"), "{}", text(&out));
    let repo = hub.repo_files("org/tiny").unwrap();
    let local = files_of(&model);
    for (name, bytes) in &local {
        assert_eq!(repo.get(name), Some(bytes), "{name}");
    }
    let card = String::from_utf8(repo["README.md"].clone()).unwrap();
    assert!(
        card.contains("library_name: transformers") && card.contains("- trl-rs"),
        "{card}"
    );
    assert!(
        card.contains("trl chat --model_name_or_path org/tiny"),
        "{card}"
    );
    assert_eq!(repo.len(), local.len() + 1);
    let create: serde_json::Value = serde_json::from_slice(&hub.requests()[0].body).unwrap();
    assert_eq!(create["visibility"], "private");
    assert_token_kept_secret(&out, &hub);
}

#[test]
fn push_reads_the_token_from_the_flag_or_the_token_file() {
    let hub = FakeHub::start(&[], vec![]);
    let tmp = tempfile::tempdir().unwrap();
    let model = copy_model(&tmp.path().join("model"));
    let dir = model.to_str().unwrap();
    let flag = trl_hub(
        &["push", dir, "org/a", "--hub_token", TOKEN],
        &hub,
        tmp.path(),
        None,
    );
    assert!(flag.status.success(), "{}", text(&flag));
    std::fs::write(tmp.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let file = trl_hub(&["push", dir, "org/b"], &hub, tmp.path(), None);
    assert!(file.status.success(), "{}", text(&file));
    assert!(hub.repo_files("org/a").is_some() && hub.repo_files("org/b").is_some());
    assert_token_kept_secret(&file, &hub);
}

#[test]
fn push_without_a_token_fails_before_any_request() {
    let hub = FakeHub::start(&[], vec![]);
    let tmp = tempfile::tempdir().unwrap();
    let model = copy_model(&tmp.path().join("model"));
    let out = trl_hub(
        &["push", model.to_str().unwrap(), "org/tiny"],
        &hub,
        tmp.path(),
        None,
    );
    assert!(!out.status.success());
    let message = text(&out);
    assert!(
        message.contains("no Hugging Face token") && message.contains("HF_TOKEN"),
        "{message}"
    );
    assert!(hub.requests().is_empty());
}

#[test]
fn push_with_a_refused_token_says_401_and_never_prints_it() {
    let hub = FakeHub::start(&[], vec![]);
    let tmp = tempfile::tempdir().unwrap();
    let model = copy_model(&tmp.path().join("model"));
    let wrong = "hf_wrongButSecretTokenValue";
    let out = trl_hub(
        &["push", model.to_str().unwrap(), "org/tiny"],
        &hub,
        tmp.path(),
        Some(wrong),
    );
    assert!(!out.status.success());
    let message = text(&out);
    assert!(
        message.contains("HTTP 401") && message.contains("refused the token"),
        "{message}"
    );
    assert!(!message.contains(wrong), "{message}");
    assert!(hub.commits().is_empty());
}

#[test]
fn sft_with_push_to_hub_pushes_checkpoints_and_the_final_model() {
    let hub = FakeHub::start(&[], vec![]);
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("run");
    let out_str = out_dir.to_str().unwrap();
    let args = [
        "sft",
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        "datasets/messages.jsonl",
        "--output_dir",
        out_str,
        "--per_device_train_batch_size",
        "4",
        "--max_steps",
        "4",
        "--save_steps",
        "2",
        "--logging_steps",
        "2",
        "--push_to_hub",
        "true",
        "--hub_model_id",
        "org/tiny-sft",
        "--hub_strategy",
        "checkpoint",
    ];
    let out = trl_hub(&args, &hub, tmp.path(), Some(TOKEN));
    assert!(out.status.success(), "{}", text(&out));
    let summaries: Vec<String> = hub.commits().iter().map(|c| c.summary.clone()).collect();
    assert_eq!(
        summaries,
        [
            "Training in progress, step 2",
            "Training in progress, step 4",
            "End of training"
        ]
    );
    let repo = hub.repo_files("org/tiny-sft").unwrap();
    // The final model, its card and trainer state, byte for byte as saved.
    for (name, bytes) in files_of(&out_dir) {
        assert_eq!(repo.get(&name), Some(&bytes), "{name}");
    }
    let last = out_dir.join("checkpoint-4");
    for (name, bytes) in files_of(&last) {
        assert_eq!(
            repo.get(&format!("last-checkpoint/{name}")),
            Some(&bytes),
            "{name}"
        );
    }
    assert!(
        !repo
            .keys()
            .any(|k| k.starts_with("checkpoint-") || k == "optimizer.safetensors")
    );
    let card = std::fs::read_to_string(out_dir.join("README.md")).unwrap();
    for expected in [
        "library_name: transformers",
        "- sft",
        "supervised fine-tuning (SFT)",
        "- dataset: `datasets/messages.jsonl`",
        "| max_steps | 4 |",
        "| train_loss |",
        "- burn: 0.22",
    ] {
        assert!(card.contains(expected), "{expected} not in\n{card}");
    }
    assert!(
        !card.contains("base_model:"),
        "a local model is no Hub id:\n{card}"
    );
    assert_token_kept_secret(&out, &hub);
}

#[test]
fn sft_with_push_to_hub_and_no_token_fails_before_training() {
    let hub = FakeHub::start(&[], vec![]);
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("run");
    let args = [
        "sft",
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        "datasets/messages.jsonl",
        "--output_dir",
        out_dir.to_str().unwrap(),
        "--max_steps",
        "2",
        "--push_to_hub",
        "true",
        "--hub_model_id",
        "org/x",
    ];
    let out = trl_hub(&args, &hub, tmp.path(), None);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no Hugging Face token"),
        "{}",
        text(&out)
    );
    assert!(!out_dir.join("model.safetensors").exists());
    assert!(hub.requests().is_empty());
}

/// `trl sft` on the bundled data for 4 steps, a checkpoint every 2, pushing to `org/run`.
fn sft_push_args<'a>(out_dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "sft",
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        "datasets/messages.jsonl",
        "--output_dir",
        out_dir,
        "--per_device_train_batch_size",
        "4",
        "--max_steps",
        "4",
        "--save_steps",
        "2",
        "--push_to_hub",
        "true",
        "--hub_model_id",
        "org/run",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn hub_strategy_end_and_all_checkpoints_push_what_transformers_pushes() {
    for (strategy, commits, folders) in [
        ("end", 1, vec![]),
        ("every_save", 3, vec![]),
        ("all_checkpoints", 3, vec!["checkpoint-2/", "checkpoint-4/"]),
    ] {
        let hub = FakeHub::start(&[], vec![]);
        let tmp = tempfile::tempdir().unwrap();
        let out_dir = tmp.path().join("run");
        // The token as a flag this time: it must not be saved or uploaded either.
        let extra = ["--hub_strategy", strategy, "--hub_token", TOKEN];
        let out = trl_hub(
            &sft_push_args(out_dir.to_str().unwrap(), &extra),
            &hub,
            tmp.path(),
            None,
        );
        assert!(out.status.success(), "{strategy}: {}", text(&out));
        assert_eq!(hub.commits().len(), commits, "{strategy}");
        let repo = hub.repo_files("org/run").unwrap();
        let pushed: Vec<&str> = folders
            .iter()
            .copied()
            .filter(|folder| repo.contains_key(&format!("{folder}optimizer.safetensors")))
            .collect();
        assert_eq!(pushed, folders, "{strategy}");
        assert!(
            !repo.keys().any(|k| k.starts_with("last-checkpoint/")),
            "{strategy}"
        );
        assert_token_kept_secret(&out, &hub);
    }
}

#[test]
fn a_failed_checkpoint_push_warns_and_a_failed_final_push_is_an_error() {
    // The first commit (step 2) fails: a warning, and the run and later pushes go on.
    let once = vec![Failure {
        pattern: "/commit/main".into(),
        status: 500,
        times: Some(1),
    }];
    let hub = FakeHub::start(&[], once);
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("run");
    let out = trl_hub(
        &sft_push_args(out_dir.to_str().unwrap(), &[]),
        &hub,
        tmp.path(),
        Some(TOKEN),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("warning: pushing"), "{}", text(&out));
    assert_eq!(hub.commits().len(), 2);
    // Every commit fails: the run ends in an error that says how to push the saved model.
    let always = vec![Failure {
        pattern: "/commit/main".into(),
        status: 503,
        times: None,
    }];
    let hub = FakeHub::start(&[], always);
    let out_dir = tmp.path().join("run2");
    let extra = ["--hub_strategy", "end"];
    let out = trl_hub(
        &sft_push_args(out_dir.to_str().unwrap(), &extra),
        &hub,
        tmp.path(),
        Some(TOKEN),
    );
    assert!(!out.status.success());
    let message = text(&out);
    assert!(
        message.contains("HTTP 503") && message.contains("trl push"),
        "{message}"
    );
    assert!(
        out_dir.join("model.safetensors").is_file(),
        "the model stays saved"
    );
    assert_token_kept_secret(&out, &hub);
}

#[test]
fn without_hub_model_id_the_repo_is_named_after_output_dir_under_the_user() {
    let hub = FakeHub::start(&[], vec![]);
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("my-run");
    let args = [
        "sft",
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        "datasets/messages.jsonl",
        "--output_dir",
        out_dir.to_str().unwrap(),
        "--max_steps",
        "1",
        "--push_to_hub",
        "true",
        "--hub_strategy",
        "end",
    ];
    let out = trl_hub(&args, &hub, tmp.path(), Some(TOKEN));
    assert!(out.status.success(), "{}", text(&out));
    let repo = hub.repo_files("me/my-run").unwrap();
    assert!(repo.contains_key("model.safetensors") && repo.contains_key("README.md"));
}

#[test]
fn every_training_command_pushes_with_its_method_in_the_card() {
    for (command, model, data, method_key) in [
        ("dpo", MODEL, "datasets/preference.jsonl", "| beta | 0.5 |"),
        (
            "kto",
            MODEL,
            "datasets/unpaired_preference.jsonl",
            "| beta | 0.5 |",
        ),
        (
            "reward",
            "fixtures/models/tiny-qwen2-rm",
            "datasets/preference.jsonl",
            "| max_length | 64 |",
        ),
    ] {
        let hub = FakeHub::start(&[], vec![]);
        let tmp = tempfile::tempdir().unwrap();
        let out_dir = tmp.path().join("run");
        let key = if command == "reward" {
            "--max_length"
        } else {
            "--beta"
        };
        let value = if command == "reward" { "64" } else { "0.5" };
        let args = [
            command,
            "--model_name_or_path",
            model,
            "--dataset_name",
            data,
            "--output_dir",
            out_dir.to_str().unwrap(),
            "--max_steps",
            "1",
            "--per_device_train_batch_size",
            "2",
            key,
            value,
            "--save_strategy",
            "no",
            "--push_to_hub",
            "true",
            "--hub_model_id",
            "org/m",
        ];
        let out = trl_hub(&args, &hub, tmp.path(), Some(TOKEN));
        assert!(out.status.success(), "{command}: {}", text(&out));
        let card =
            String::from_utf8(hub.repo_files("org/m").unwrap()["README.md"].clone()).unwrap();
        assert!(
            card.contains(&format!("- {command}\n")),
            "{command}:\n{card}"
        );
        assert!(card.contains(method_key), "{command}:\n{card}");
        if command == "reward" {
            assert!(
                card.contains("AutoModelForSequenceClassification"),
                "{card}"
            );
        }
    }
}
