use std::fs::File;
use std::sync::Arc;

use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use serde_json::json;

use super::*;
use crate::data::Method;
use crate::data::scan::{ScanOptions, scan_files};

fn json_rows(bytes: &[u8]) -> (Vec<LocatedRow>, Vec<String>) {
    let mut problems = ProblemList::default();
    let rows = read_json(Path::new("d.jsonl"), bytes, None, &mut problems);
    (
        rows,
        problems
            .into_parts()
            .0
            .iter()
            .map(ToString::to_string)
            .collect(),
    )
}

/// The rows of a Parquet file, in pieces of 1 row to test the cutting too.
fn read_parquet(path: &Path, problems: &mut ProblemList) -> Vec<LocatedRow> {
    let mut rows = Vec::new();
    for_each_parquet_piece(path, 1, problems, &mut |piece| {
        assert_eq!(piece.len(), 1);
        rows.extend(piece);
    });
    rows
}

fn positions(rows: &[LocatedRow]) -> Vec<Position> {
    rows.iter().map(|(position, _)| *position).collect()
}

#[test]
fn json_lines_skip_blank_lines_and_keep_line_numbers() {
    let (rows, problems) = json_rows(b"{\"text\": \"a\"}\n\n{\"text\": \"b\", \"id\": 2}\r\n   \n");
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(positions(&rows), [Position::Line(1), Position::Line(3)]);
    assert_eq!(
        Value::Object(rows[1].1.clone()),
        json!({"text": "b", "id": 2})
    );
}

#[test]
fn every_bad_line_is_reported_and_the_good_ones_kept() {
    let bytes =
        b"{\"text\": \"a\"}\n{\"text\": \"b\"\n[1, 2]\n{\"text\": \"\xff\"}\n{\"text\": \"e\"}\n";
    let (rows, problems) = json_rows(bytes);
    assert_eq!(positions(&rows), [Position::Line(1), Position::Line(5)]);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems[0].starts_with(
            "d.jsonl line 2: expected a JSON object (one row), found invalid JSON (EOF"
        ),
        "{}",
        problems[0]
    );
    assert_eq!(
        problems[1],
        "d.jsonl line 3: expected a JSON object (one row), found a list of 2 items"
    );
    assert_eq!(
        problems[2],
        "d.jsonl line 4: expected UTF-8 text, found the byte 0xff at column 11, which is not UTF-8"
    );
}

#[test]
fn objects_spanning_lines_are_rows_numbered_by_their_first_line() {
    let (rows, problems) = json_rows(b"{\n  \"text\": \"a\"\n}\n\n{\"text\":\n \"b\"}\n");
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(positions(&rows), [Position::Line(1), Position::Line(5)]);
}

#[test]
fn arrays_hold_objects_or_strings() {
    let (rows, problems) = json_rows(b"\xef\xbb\xbf[{\"text\": \"a\"}, \"b\", 3]");
    assert_eq!(positions(&rows), [Position::Row(1), Position::Row(2)]);
    assert_eq!(rows[1].1["text"], "b");
    assert_eq!(
        problems,
        ["d.jsonl row 3: expected a JSON object (one row) or a string, found the number 3"]
    );

    let (rows, problems) = json_rows(b"[\n{\"text\": \"a\"},\n{\"text\": }\n]");
    assert!(rows.is_empty());
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].starts_with("d.jsonl line 3: expected a valid JSON array, found invalid JSON"),
        "{}",
        problems[0]
    );
}

#[test]
fn empty_files_are_a_problem() {
    for bytes in [&b""[..], b"\n \n", b"\xef\xbb\xbf"] {
        let (rows, problems) = json_rows(bytes);
        assert!(rows.is_empty());
        assert_eq!(
            problems,
            ["d.jsonl: expected rows of JSON, found an empty file"]
        );
    }
}

#[test]
fn a_config_field_holds_records_or_columns() {
    let mut problems = ProblemList::default();
    let path = Path::new("d.json");
    let rows = read_json(
        path,
        br#"{"data": [{"text": "a"}], "version": 1}"#,
        Some("data"),
        &mut problems,
    );
    assert_eq!(rows.len(), 1);
    let rows = read_json(
        path,
        br#"{"data": {"text": ["a", "b"], "id": [1, 2]}}"#,
        Some("data"),
        &mut problems,
    );
    assert_eq!(
        Value::Object(rows[1].1.clone()),
        json!({"text": "b", "id": 2})
    );
    assert_eq!(problems.total(), 0);
    let rows = read_json(
        path,
        br#"{"data": {"text": ["a", "b"], "id": [1]}}"#,
        Some("data"),
        &mut problems,
    );
    assert!(rows.is_empty());
    let rows = read_json(path, br#"{"rows": []}"#, Some("data"), &mut problems);
    assert!(rows.is_empty());
    let listed: Vec<String> = problems
        .into_parts()
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        listed,
        [
            "d.json: expected columns as equally long arrays, found columns of different lengths or types",
            "d.json: expected rows under the key `data` (the config's field), found no such key",
        ]
    );
}

#[test]
fn unknown_extensions_and_missing_files_are_problems() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("d.csv");
    std::fs::write(&csv, "text\na\n").unwrap();
    let files = [csv, dir.path().join("gone.jsonl")];
    let scanned = scan_files(&files, ScanOptions::new(Method::Sft, "text"));
    assert_eq!(scanned.rows, 0);
    let listed = scanned.problems.into_parts().0;
    assert_eq!(listed[0].expected, "a .jsonl, .json or .parquet file");
    assert_eq!(listed[1].expected, "a readable file");
}

/// Writes two rows the way `datasets` lays out a conversation column (a LIST of structs):
/// `{prompt: "p1", label: true, messages: [user, assistant]}` and
/// `{prompt: null, label: false, messages: null}`.
fn write_parquet(path: &Path, compression: Compression) {
    let schema = parse_message_type(
        "message schema {
            OPTIONAL BYTE_ARRAY prompt (UTF8);
            REQUIRED BOOLEAN label;
            OPTIONAL group messages (LIST) {
                REPEATED group list {
                    OPTIONAL group element {
                        OPTIONAL BYTE_ARRAY content (UTF8);
                        OPTIONAL BYTE_ARRAY role (UTF8);
                    }
                }
            }
        }",
    )
    .unwrap();
    let properties = WriterProperties::builder()
        .set_compression(compression)
        .build();
    let mut writer = SerializedFileWriter::new(
        File::create(path).unwrap(),
        Arc::new(schema),
        Arc::new(properties),
    )
    .unwrap();
    let mut row_group = writer.next_row_group().unwrap();
    let bytes = |values: &[&str]| {
        values
            .iter()
            .map(|v| ByteArray::from(*v))
            .collect::<Vec<_>>()
    };

    let mut prompt = row_group.next_column().unwrap().unwrap();
    prompt
        .typed::<ByteArrayType>()
        .write_batch(&bytes(&["p1"]), Some(&[1, 0]), None)
        .unwrap();
    prompt.close().unwrap();
    let mut label = row_group.next_column().unwrap().unwrap();
    label
        .typed::<BoolType>()
        .write_batch(&[true, false], None, None)
        .unwrap();
    label.close().unwrap();
    // Leaves of messages: definition 4 = value present, 0 = messages null; repetition 1 = same list.
    for values in [["hi", "yo"], ["user", "assistant"]] {
        let mut column = row_group.next_column().unwrap().unwrap();
        column
            .typed::<ByteArrayType>()
            .write_batch(&bytes(&values), Some(&[4, 4, 0]), Some(&[0, 1, 0]))
            .unwrap();
        column.close().unwrap();
    }
    row_group.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn parquet_rows_become_json_objects_with_every_codec() {
    let dir = tempfile::tempdir().unwrap();
    for compression in [
        Compression::SNAPPY,
        Compression::ZSTD(ZstdLevel::default()),
        Compression::LZ4_RAW,
        Compression::UNCOMPRESSED,
    ] {
        let path = dir.path().join("train.parquet");
        write_parquet(&path, compression);
        let mut problems = ProblemList::default();
        let rows = read_parquet(&path, &mut problems);
        assert_eq!(
            problems.total(),
            0,
            "{compression:?}: {:?}",
            problems.into_parts().0
        );
        let values: Vec<Value> = rows
            .iter()
            .map(|(_, row)| Value::Object(row.clone()))
            .collect();
        assert_eq!(
            values,
            [
                json!({"prompt": "p1", "label": true, "messages": [
                    {"content": "hi", "role": "user"}, {"content": "yo", "role": "assistant"}]}),
                json!({"prompt": null, "label": false, "messages": null}),
            ],
            "{compression:?}"
        );
        assert_eq!(positions(&rows), [Position::Row(1), Position::Row(2)]);
    }
}

#[test]
fn a_null_parquet_value_is_named_by_column_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.parquet");
    write_parquet(&path, Compression::UNCOMPRESSED);
    let scanned = scan_files(&[path], ScanOptions::new(Method::Sft, "text"));
    let listed: Vec<String> = scanned
        .problems
        .into_parts()
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    let row_two: Vec<&String> = listed.iter().filter(|p| p.contains(" row 2")).collect();
    assert_eq!(row_two.len(), 1, "{listed:?}");
    assert!(
        row_two[0].ends_with(
            "train.parquet row 2, column \"messages\": expected a value (a missing value is \
             written as null), found null"
        ),
        "{listed:?}"
    );
}

#[test]
fn corrupt_parquet_is_a_problem_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.parquet");
    write_parquet(&good, Compression::SNAPPY);
    let bytes = std::fs::read(&good).unwrap();

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("text.parquet", b"{\"text\": \"not parquet\"}\n".to_vec()),
        ("empty.parquet", Vec::new()),
        ("truncated.parquet", bytes[..bytes.len() / 2].to_vec()),
        // Damage the data pages but keep the footer: the decoder meets garbage mid-file.
        (
            "scrambled.parquet",
            bytes
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    if (4..bytes.len() / 2).contains(&i) {
                        b ^ 0x5a
                    } else {
                        *b
                    }
                })
                .collect(),
        ),
    ];
    for (name, content) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let mut problems = ProblemList::default();
        let _rows = read_parquet(&path, &mut problems);
        let (listed, total) = problems.into_parts();
        assert!(total >= 1, "{name}: no problem reported");
        assert!(
            listed
                .iter()
                .all(|p| p.file.as_deref() == Some(path.as_path())),
            "{name}: {listed:?}"
        );
    }
}
