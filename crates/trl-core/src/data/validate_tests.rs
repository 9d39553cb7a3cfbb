use std::path::Path;

use serde_json::{Value, json};

use super::*;
use crate::data::{DatasetFormat, MAX_LISTED_PROBLEMS, Style};

fn sample(name: &str) -> String {
    format!("{}/../../datasets/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn validate_file(path: &str, method: Method) -> ValidationReport {
    validate(&DatasetArgs::new(path), method, None).expect("the file is found")
}

/// Writes `content` to a temporary `name` and validates it.
fn validate_text(
    name: &str,
    content: &[u8],
    method: Method,
) -> (ValidationReport, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    (validate_file(path.to_str().unwrap(), method), dir)
}

fn lines(rows: &[Value]) -> Vec<u8> {
    rows.iter()
        .map(|row| format!("{row}\n"))
        .collect::<String>()
        .into_bytes()
}

fn found(report: &ValidationReport) -> Vec<String> {
    report.problems.iter().map(|p| p.to_string()).collect()
}

/// Every sample dataset of the repository is valid for the methods that take its format, and
/// refused by one that does not.
#[test]
fn sample_datasets_are_valid_for_their_methods() {
    use FormatKind::*;
    let cases = [
        (
            "text.jsonl",
            LanguageModeling,
            Style::Standard,
            Method::Sft,
            Method::Dpo,
        ),
        (
            "messages.jsonl",
            LanguageModeling,
            Style::Conversational,
            Method::Sft,
            Method::Grpo,
        ),
        (
            "prompt_completion.jsonl",
            PromptCompletion,
            Style::Standard,
            Method::Sft,
            Method::Kto,
        ),
        (
            "prompt_completion_conversational.jsonl",
            PromptCompletion,
            Style::Conversational,
            Method::Sft,
            Method::Reward,
        ),
        (
            "prompt_only.jsonl",
            PromptOnly,
            Style::Standard,
            Method::Grpo,
            Method::Sft,
        ),
        (
            "preference.jsonl",
            Preference,
            Style::Standard,
            Method::Dpo,
            Method::Sft,
        ),
        (
            "preference_implicit.jsonl",
            ImplicitPreference,
            Style::Standard,
            Method::Reward,
            Method::Grpo,
        ),
        (
            "preference_conversational.jsonl",
            Preference,
            Style::Conversational,
            Method::Kto,
            Method::Rloo,
        ),
        (
            "unpaired_preference.jsonl",
            UnpairedPreference,
            Style::Standard,
            Method::Kto,
            Method::Dpo,
        ),
        (
            "unpaired_preference_conversational.jsonl",
            UnpairedPreference,
            Style::Conversational,
            Method::Kto,
            Method::Sft,
        ),
    ];
    for (name, kind, style, accepting, refusing) in cases {
        let report = validate_file(&sample(name), accepting);
        assert!(report.is_valid(), "{name}: {report}");
        assert_eq!(report.format, Some(DatasetFormat { kind, style }), "{name}");
        assert!(report.rows >= 48, "{name}: {} rows", report.rows);

        let refused = validate_file(&sample(name), refusing);
        assert_eq!(refused.problem_count, 1, "{name} for {refusing}: {refused}");
        assert!(refused.problems[0].file.is_none());
        assert!(
            refused.problems[0]
                .expected
                .starts_with(&format!("data {refusing} trains on: ")),
            "{}",
            refused.problems[0]
        );
    }
}

#[test]
fn a_valid_report_names_format_and_rows() {
    let report = validate_file(&sample("preference.jsonl"), Method::Dpo);
    let text = report.to_string();
    assert!(
        text.contains("rows: 48\nformat: preference, standard\nvalid for dpo"),
        "{text}"
    );
    let dataset = load_dataset(&DatasetArgs::new(sample("preference.jsonl")), Method::Dpo).unwrap();
    assert_eq!(dataset.len(), 48);
    assert!(
        dataset.origin(47).ends_with("preference.jsonl line 48"),
        "{}",
        dataset.origin(47)
    );
}

#[test]
fn mixed_formats_report_the_rows_that_differ() {
    let mut rows: Vec<Value> = (0..5)
        .map(|i| json!({"prompt": format!("p{i}"), "completion": "c"}))
        .collect();
    rows.insert(2, json!({"text": "just text"}));
    rows.push(json!({"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": "yo"}]}));
    let (report, _dir) = validate_text("mixed.jsonl", &lines(&rows), Method::Sft);
    assert_eq!(
        report.format,
        Some(DatasetFormat {
            kind: FormatKind::PromptCompletion,
            style: Style::Standard
        })
    );
    let problems = found(&report);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].ends_with(
        "mixed.jsonl line 3: expected a prompt-completion row like 6 of the 7 rows (`prompt`, `completion`), \
         found a language modeling row (`text` or `messages`)"
    ), "{}", problems[0]);
    assert!(problems[1].ends_with(
        "mixed.jsonl line 7: expected standard values like 5 of the 7 rows (strings), found conversational values (lists of messages)"
    ), "{}", problems[1]);
}

#[test]
fn null_and_missing_columns_are_named_not_called_another_format() {
    let rows = [
        json!({"prompt": "p", "completion": " c", "label": true}),
        json!({"prompt": "p", "completion": " c", "label": null}),
        json!({"prompt": "p", "completion": null, "label": false}),
        json!({"prompt": "p", "completion": " c", "label": "yes"}),
    ];
    let (report, _dir) = validate_text("kto.jsonl", &lines(&rows), Method::Kto);
    let problems = found(&report);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0]
            .ends_with("kto.jsonl line 2, column \"label\": expected true or false, found null"),
        "{}",
        problems[0]
    );
    assert!(
        problems[1]
            .ends_with("kto.jsonl line 3, column \"completion\": expected a string, found null"),
        "{}",
        problems[1]
    );
    assert!(
        problems[2].ends_with(
            "kto.jsonl line 4, column \"label\": expected true or false, found the string \"yes\""
        ),
        "{}",
        problems[2]
    );
}

#[test]
fn file_errors_are_reported_with_their_lines() {
    let (report, _dir) = validate_text(
        "bad.jsonl",
        b"{\"text\": \"ok\"}\n{\"text\": \xff}\n{oops}\n{\"text\": 3}\n",
        Method::Sft,
    );
    assert!(!report.is_valid());
    assert_eq!(report.rows, 2);
    let problems = found(&report);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0].contains("bad.jsonl line 2: expected UTF-8 text"),
        "{}",
        problems[0]
    );
    assert!(
        problems[1]
            .contains("bad.jsonl line 3: expected a JSON object (one row), found invalid JSON"),
        "{}",
        problems[1]
    );
    assert!(
        problems[2]
            .contains("bad.jsonl line 4, column \"text\": expected a string, found the number 3"),
        "{}",
        problems[2]
    );

    let (report, _dir) = validate_text("empty.jsonl", b"", Method::Sft);
    assert_eq!(found(&report).len(), 1);
    assert!(
        found(&report)[0].ends_with("empty.jsonl: expected rows of JSON, found an empty file"),
        "{report}"
    );
    assert_eq!(report.format, None);

    let (report, _dir) = validate_text("broken.parquet", b"PAR1 not really", Method::Sft);
    assert_eq!(report.problem_count, 1, "{report}");
    assert!(
        found(&report)[0].contains("broken.parquet: expected a valid Parquet file"),
        "{report}"
    );
}

#[test]
fn many_problems_are_counted_past_the_limit() {
    let rows: Vec<Value> = (0..MAX_LISTED_PROBLEMS + 20)
        .map(|i| json!({"text": i}))
        .collect();
    let (report, _dir) = validate_text("numbers.jsonl", &lines(&rows), Method::Sft);
    assert_eq!(report.problems.len(), MAX_LISTED_PROBLEMS);
    assert_eq!(report.problem_count, MAX_LISTED_PROBLEMS + 20);
    let text = report.to_string();
    assert!(
        text.contains(&format!(
            "not valid for sft: {} problems:",
            MAX_LISTED_PROBLEMS + 20
        )),
        "{text}"
    );
    assert!(text.ends_with("\n  ... and 20 more"), "{text}");
    let error = load_dataset(&DatasetArgs::new(report.dataset.clone()), Method::Sft)
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("dataset: `"), "{error}");
    assert!(
        error.contains("cannot be used for sft: 70 problems:\n  "),
        "{error}"
    );
}

#[test]
fn a_row_whose_only_format_column_is_null_names_that_column() {
    let rows = [
        json!({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}),
        json!({"messages": null, "id": 7}),
    ];
    let (report, _dir) = validate_text("chat.jsonl", &lines(&rows), Method::Sft);
    let problems = found(&report);
    assert_eq!(problems.len(), 1, "{report}");
    assert!(
        problems[0].ends_with(
            "/chat.jsonl line 2, column \"messages\": expected a value (a missing value is \
             written as null), found null"
        ),
        "{report}"
    );
}

#[test]
fn an_unknown_role_is_named_with_file_line_and_column() {
    let rows = [
        json!({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}),
        json!({"messages": [{"role": "user", "content": "Q"}, {"role": "robot", "content": "A"}]}),
    ];
    let (report, _dir) = validate_text("chat.jsonl", &lines(&rows), Method::Sft);
    let problems = found(&report);
    assert_eq!(problems.len(), 1, "{report}");
    assert!(
        problems[0].ends_with(
            "/chat.jsonl line 2, column \"messages\", message 2: expected a role among system, \
             developer, user, assistant, tool, ipython, found the role \"robot\""
        ),
        "{report}"
    );
}

#[test]
fn unrecognised_rows_and_no_rows() {
    let (report, _dir) = validate_text(
        "qa.json",
        br#"[{"question": "Q", "answer": "A"}]"#,
        Method::Sft,
    );
    assert_eq!(report.format, None);
    assert_eq!(report.problem_count, 1);
    assert!(
        found(&report)[0].contains("qa.json row 1: expected the columns of a TRL format"),
        "{report}"
    );
    assert!(report.to_string().contains("format: none recognised"));
}

#[test]
fn dataset_text_field_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("content.jsonl");
    std::fs::write(
        &path,
        lines(&[json!({"content": "a"}), json!({"content": "b"})]),
    )
    .unwrap();
    let args = DatasetArgs {
        dataset_text_field: "content".to_owned(),
        ..DatasetArgs::new(path.to_str().unwrap())
    };
    let report = validate(&args, Method::Sft, None).unwrap();
    assert!(report.is_valid(), "{report}");
    let refused = validate_file(path.to_str().unwrap(), Method::Sft);
    assert!(!refused.is_valid());
}

#[test]
fn rows_built_in_memory_are_checked_the_same_way() {
    let row = |value: Value| value.as_object().unwrap().clone();
    let dataset = Dataset::from_rows(
        vec![row(json!({"prompt": "2+2=", "answer": "4"}))],
        Method::Grpo,
        "text",
    )
    .unwrap();
    assert_eq!(dataset.rows()[0]["answer"], "4");
    assert_eq!(dataset.origin(0), "<rows> row 1");
    let error = Dataset::from_rows(vec![row(json!({"prompt": 4}))], Method::Grpo, "text")
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "dataset: the rows cannot be used for grpo: 1 problem:\n  <rows> row 1, column \"prompt\": expected a string, found the number 4"
    );
}

#[test]
fn folders_pick_the_train_split() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("train.jsonl"),
        lines(&[json!({"text": "a"})]),
    )
    .unwrap();
    std::fs::write(dir.path().join("test.jsonl"), lines(&[json!({"oops": 1})])).unwrap();
    let report = validate_file(dir.path().to_str().unwrap(), Method::Sft);
    assert!(report.is_valid(), "{report}");
    assert_eq!(report.files, [dir.path().join("train.jsonl")]);
    assert_eq!(report.rows, 1);
    assert!(Path::new(&report.files[0]).ends_with("train.jsonl"));
}

#[test]
fn grpo_on_prompt_completion_data_says_how_to_keep_the_completion() {
    let report = validate_file(&sample("prompt_completion.jsonl"), Method::Grpo);
    assert_eq!(report.problem_count, 1);
    assert!(
        report.problems[0]
            .found
            .ends_with("rename the column (e.g. to `solution`)"),
        "{}",
        report.problems[0]
    );
}

/// Reading in pieces of any size (so that the format guessed from the first piece may be wrong)
/// reports exactly what reading every file in one piece does, token lengths included.
#[test]
fn reports_do_not_depend_on_the_piece_size() {
    let tokenizer = crate::tokenizer::Tokenizer::from_dir(format!(
        "{}/../../fixtures/models/tiny-qwen2",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, content: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.to_str().unwrap().to_owned()
    };
    // 40 rows of one format, then 60 of the one most rows have.
    let minority_first: Vec<Value> = (0..100)
        .map(|i| match i {
            0..40 => json!({"text": format!("t{i}")}),
            _ => json!({"prompt": format!("p{i}"), "completion": "c"}),
        })
        .collect();
    let numbers: Vec<Value> = (0..80).map(|i| json!({"text": i})).collect();
    let cases = [
        (sample("messages.jsonl"), Method::Sft),
        (sample("preference_conversational.jsonl"), Method::Dpo),
        (sample("prompt_only.jsonl"), Method::Grpo),
        (write("minority_first.jsonl", &lines(&minority_first)), Method::Sft),
        (write("numbers.jsonl", &lines(&numbers)), Method::Sft),
        (
            write(
                "bad.jsonl",
                b"{\"text\": \"ok\"}\n{\"text\": \xff}\n\n{oops}\r\n{\"text\": 3}\n{\"text\": \"end\"}",
            ),
            Method::Sft,
        ),
        (
            write(
                "multiline.jsonl",
                b"\xef\xbb\xbf{\"messages\": [\n  {\"role\": \"user\", \"content\": \"hi\"},\n  \
                  {\"role\": \"assistant\", \"content\": \"yo\"}\n]}\n\n{\"messages\": [{\"role\": \
                  \"user\", \"content\": \"a\\\"}{\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}\n",
            ),
            Method::Sft,
        ),
        (write("blank.jsonl", b"\n  \r\n"), Method::Sft),
    ];
    for (path, method) in cases {
        let args = DatasetArgs::new(&path);
        let tokenizer = Some((&tokenizer, Some(60)));
        let whole = validate_in_pieces(&args, method, tokenizer, usize::MAX).unwrap();
        for piece_bytes in [1, 7, 64, 4096] {
            let pieces = validate_in_pieces(&args, method, tokenizer, piece_bytes).unwrap();
            assert_eq!(
                format!("{pieces:?}"),
                format!("{whole:?}"),
                "{path} in pieces of {piece_bytes} bytes"
            );
        }
    }
    let multiline = validate_file(
        &dir.path().join("multiline.jsonl").to_string_lossy(),
        Method::Sft,
    );
    assert!(multiline.is_valid(), "{multiline}");
    assert_eq!(multiline.rows, 2);
    let minority = validate_file(
        &dir.path().join("minority_first.jsonl").to_string_lossy(),
        Method::Sft,
    );
    assert_eq!(minority.problem_count, 40, "{minority}");
}
