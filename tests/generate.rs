//! End-to-end tests of `trl generate` and `trl chat` on the tiny-qwen2 fixture, against
//! transformers' greedy generations (reference/generate_reference.py).

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;

use common::{MODEL, json_lines, read_json, root, stderr, trl_with_stdin};

fn reference() -> Value {
    read_json(&root().join("fixtures/expected/generate/greedy.json"))
}

/// Writes the `row` of every reference case as a JSONL dataset.
fn write_rows(dir: &Path, cases: &[Value]) -> PathBuf {
    let path = dir.join("prompts.jsonl");
    let lines: Vec<String> = cases.iter().map(|c| c["row"].to_string()).collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn greedy_args<'a>(dataset: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "generate",
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        dataset,
        "--do_sample",
        "false",
        "--max_new_tokens",
        "12",
    ];
    args.extend_from_slice(extra);
    args
}

/// Text and conversational prompt rows: the written ids equal transformers' greedy ones, the
/// row's columns are kept, and `completion` has the row's style.
#[test]
fn generate_on_a_file_equals_transformers_greedy() {
    let reference = reference();
    for (kind, cases) in reference["cli"]["cases"].as_object().unwrap() {
        let dir = tempfile::tempdir().unwrap();
        let cases = cases.as_array().unwrap();
        let dataset = write_rows(dir.path(), cases);
        let output = dir.path().join("out.jsonl");
        let out = trl_with_stdin(
            &greedy_args(
                dataset.to_str().unwrap(),
                &["--output_file", output.to_str().unwrap()],
            ),
            "",
        );
        assert!(out.status.success(), "{kind}: {}", stderr(&out));
        let lines = json_lines(&std::fs::read_to_string(&output).unwrap());
        assert_eq!(lines.len(), cases.len(), "{kind}");
        for (line, case) in lines.iter().zip(cases) {
            assert_eq!(line["completion_ids"], case["completion_ids"], "{kind}");
            for (key, value) in case["row"].as_object().unwrap() {
                assert_eq!(&line[key], value, "{kind}: column {key} kept");
            }
            if kind == "conversational" {
                assert_eq!(line["completion"][0]["role"], "assistant");
                assert!(line["completion"][0]["content"].is_string());
            } else {
                assert!(line["completion"].is_string());
            }
        }
    }
}

/// One prompt a line on stdin gives what the same prompts give from a file; sampling with a
/// seed repeats, several sequences per prompt come out adjacent.
#[test]
fn generate_reads_prompts_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = ["The capital of France is", "Once upon a time", "2 + 2 ="];
    let file = dir.path().join("prompts.jsonl");
    let rows: Vec<String> = prompts
        .iter()
        .map(|p| serde_json::json!({ "prompt": p }).to_string())
        .collect();
    std::fs::write(&file, rows.join("\n")).unwrap();
    let sampled = |dataset: &str| {
        let args = [
            "generate",
            "--model_name_or_path",
            MODEL,
            "--dataset_name",
            dataset,
            "--max_new_tokens",
            "8",
            "--num_return_sequences",
            "2",
            "--seed",
            "7",
            "--top_p",
            "0.9",
        ];
        args.map(str::to_string)
    };
    let from_stdin = trl_with_stdin(
        &sampled("-").each_ref().map(String::as_str),
        &prompts.join("\n\n"),
    );
    assert!(from_stdin.status.success(), "{}", stderr(&from_stdin));
    let stdin_lines = json_lines(&String::from_utf8_lossy(&from_stdin.stdout));
    assert_eq!(stdin_lines.len(), 6);
    assert_eq!(stdin_lines[1]["prompt"], prompts[0]);
    let from_file = trl_with_stdin(
        &sampled(file.to_str().unwrap())
            .each_ref()
            .map(String::as_str),
        "",
    );
    assert_eq!(
        json_lines(&String::from_utf8_lossy(&from_file.stdout)),
        stdin_lines
    );

    let sample = |seed: &str| {
        let out = trl_with_stdin(
            &[
                "generate",
                "--model_name_or_path",
                MODEL,
                "--dataset_name",
                "-",
                "--max_new_tokens",
                "8",
                "--seed",
                seed,
            ],
            &prompts.join("\n"),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        json_lines(&String::from_utf8_lossy(&out.stdout))
    };
    assert_eq!(sample("1"), sample("1"));
    assert_ne!(sample("1"), sample("2"));
}

#[test]
fn invalid_generation_options_name_the_option() {
    for (flag, value) in [
        ("--top_p", "1.5"),
        ("--temperature", "0"),
        ("--num_return_sequences", "0"),
        ("--max_new_tokens", "0"),
    ] {
        let out = trl_with_stdin(&greedy_args("-", &[flag, value]), "hello\n");
        assert!(!out.status.success(), "{flag} {value} accepted");
        assert!(stderr(&out).contains(flag), "{flag}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}

/// A chat through a pipe: the streamed greedy reply equals what `trl generate` writes for
/// the same conversation, `/clear` forgets it, `/exit` ends the session.
#[test]
fn chat_streams_replies_and_obeys_clear_and_exit() {
    let question = "What is the capital of Germany?";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chat.jsonl");
    let row = serde_json::json!({"prompt": [{"role": "user", "content": question}]});
    std::fs::write(&file, row.to_string()).unwrap();
    let generated = trl_with_stdin(&greedy_args(file.to_str().unwrap(), &[]), "");
    assert!(generated.status.success(), "{}", stderr(&generated));
    let expected =
        json_lines(&String::from_utf8_lossy(&generated.stdout))[0]["completion"][0]["content"]
            .as_str()
            .unwrap()
            .to_string();

    let args = [
        "chat",
        "--model_name_or_path",
        MODEL,
        "--do_sample",
        "false",
        "--max_new_tokens",
        "12",
    ];
    let input = format!("{question}\n/clear\n{question}\n/exit\nnever read\n");
    let out = trl_with_stdin(&args, &input);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        format!("{expected}\n(conversation cleared)\n{expected}\n")
    );
}
