//! Reading rows from `.jsonl`, `.json` and `.parquet` files as `datasets`' JSON and Parquet
//! loaders read them, reporting every unreadable row instead of stopping at the first.
//!
//! JSON (datasets' `json` builder, which hands the bytes to pyarrow):
//! - a file starting with `[` is one array: of objects (rows), or of strings (`{"text": ...}`);
//! - otherwise it is a sequence of objects, normally one per line (JSON lines); blank lines are
//!   skipped, and an object may span several lines;
//! - with a config's `field`, the file is one object whose `field` holds the rows (an array of
//!   objects, or an object of equally long column arrays).
//!
//! Parquet goes through the `parquet` crate's record API, one JSON object per row.

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::Value;

use super::format::Row;
use super::problem::{Position, Problem, ProblemList, describe};

/// A row and where it is in its file.
pub(crate) type LocatedRow = (Position, Row);

/// Reads every row of `path` (by its extension); what cannot be read becomes a problem.
pub(crate) fn read_rows(
    path: &Path,
    json_field: Option<&str>,
    problems: &mut ProblemList,
) -> Vec<LocatedRow> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match extension.as_str() {
        "parquet" => read_parquet(path, problems),
        "json" | "jsonl" => match std::fs::read(path) {
            Ok(bytes) => read_json(path, &bytes, json_field, problems),
            Err(error) => {
                problems.push(Problem::file(path, "a readable file", error.to_string()));
                Vec::new()
            }
        },
        _ => {
            problems.push(Problem::file(
                path,
                "a .jsonl, .json or .parquet file",
                format!("the extension {extension:?}"),
            ));
            Vec::new()
        }
    }
}

/// Rows of JSON bytes (see the module docs for the shapes accepted).
pub(crate) fn read_json(
    path: &Path,
    bytes: &[u8],
    json_field: Option<&str>,
    problems: &mut ProblemList,
) -> Vec<LocatedRow> {
    let bytes = bytes
        .strip_prefix(b"\xef\xbb\xbf".as_slice())
        .unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        problems.push(Problem::file(path, "rows of JSON", "an empty file"));
        return Vec::new();
    }
    if let Some(field) = json_field {
        return read_json_field(path, bytes, field, problems);
    }
    if bytes.starts_with(b"[") {
        return match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Array(items)) => rows_of_array(path, items, problems),
            Ok(other) => {
                problems.push(Problem::file(path, "a JSON array", describe(&other)));
                Vec::new()
            }
            Err(error) => {
                let position = Position::Line(error.line());
                problems.push(Problem::row(
                    path,
                    position,
                    "a valid JSON array",
                    json_error(&error),
                ));
                Vec::new()
            }
        };
    }
    read_json_lines(path, bytes, problems)
}

fn rows_of_array(path: &Path, items: Vec<Value>, problems: &mut ProblemList) -> Vec<LocatedRow> {
    let mut rows = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let position = Position::Row(index + 1);
        match item {
            Value::Object(row) => rows.push((position, row)),
            Value::String(text) => {
                let mut row = Row::new();
                row.insert("text".to_owned(), Value::String(text));
                rows.push((position, row));
            }
            other => problems.push(Problem::row(
                path,
                position,
                "a JSON object (one row) or a string",
                describe(&other),
            )),
        }
    }
    rows
}

/// One object per line; when some line does not parse but the whole file is a sequence of
/// (multi-line) objects, the objects are the rows, numbered by the line they start on.
fn read_json_lines(path: &Path, bytes: &[u8], problems: &mut ProblemList) -> Vec<LocatedRow> {
    let mut rows = Vec::new();
    let mut line_problems = Vec::new();
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let position = Position::Line(index + 1);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = match std::str::from_utf8(line) {
            Ok(text) => text,
            Err(error) => {
                let found = format!(
                    "the byte 0x{:02x} at column {}, which is not UTF-8",
                    line[error.valid_up_to()],
                    error.valid_up_to() + 1
                );
                line_problems.push(Problem::row(path, position, "UTF-8 text", found));
                continue;
            }
        };
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(row)) => rows.push((position, row)),
            Ok(other) => line_problems.push(Problem::row(
                path,
                position,
                "a JSON object (one row)",
                describe(&other),
            )),
            Err(error) => line_problems.push(Problem::row(
                path,
                position,
                "a JSON object (one row)",
                json_error(&error),
            )),
        }
    }
    if line_problems.is_empty() {
        return rows;
    }
    if let Some(rows) = read_object_stream(bytes) {
        return rows;
    }
    for problem in line_problems {
        problems.push(problem);
    }
    rows
}

/// The file as whitespace-separated objects, or `None` if it is not exactly that.
fn read_object_stream(bytes: &[u8]) -> Option<Vec<LocatedRow>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut rows = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let start = stream.byte_offset();
        let value = match stream.next() {
            None => break,
            Some(value) => value.ok()?,
        };
        let Value::Object(row) = value else {
            return None;
        };
        let skipped = text[start..].len() - text[start..].trim_start().len();
        let line = text[..start + skipped].matches('\n').count() + 1;
        rows.push((Position::Line(line), row));
    }
    Some(rows)
}

fn read_json_field(
    path: &Path,
    bytes: &[u8],
    field: &str,
    problems: &mut ProblemList,
) -> Vec<LocatedRow> {
    let document = match serde_json::from_slice::<Value>(bytes) {
        Ok(document) => document,
        Err(error) => {
            problems.push(Problem::row(
                path,
                Position::Line(error.line()),
                "valid JSON",
                json_error(&error),
            ));
            return Vec::new();
        }
    };
    match document.get(field) {
        Some(Value::Array(items)) => rows_of_array(path, items.clone(), problems),
        Some(Value::Object(columns)) => rows_of_columns(path, columns, problems),
        other => {
            let found = other.map_or_else(|| "no such key".to_owned(), describe);
            problems.push(Problem::file(
                path,
                format!("rows under the key `{field}` (the config's field)"),
                found,
            ));
            Vec::new()
        }
    }
}

/// `{"a": [1, 2], "b": [3, 4]}` -> rows `{a: 1, b: 3}`, `{a: 2, b: 4}`.
fn rows_of_columns(
    path: &Path,
    columns: &serde_json::Map<String, Value>,
    problems: &mut ProblemList,
) -> Vec<LocatedRow> {
    let lengths: Vec<Option<usize>> = columns
        .values()
        .map(|v| v.as_array().map(Vec::len))
        .collect();
    let Some(Some(count)) = lengths.first().copied() else {
        problems.push(Problem::file(
            path,
            "columns as equally long arrays",
            "no column arrays",
        ));
        return Vec::new();
    };
    if lengths.iter().any(|length| *length != Some(count)) {
        problems.push(Problem::file(
            path,
            "columns as equally long arrays",
            "columns of different lengths or types",
        ));
        return Vec::new();
    }
    (0..count)
        .map(|index| {
            let row = columns
                .iter()
                .map(|(name, values)| (name.clone(), values[index].clone()))
                .collect();
            (Position::Row(index + 1), row)
        })
        .collect()
}

fn json_error(error: &serde_json::Error) -> String {
    format!("invalid JSON ({error})")
}

/// Rows of a Parquet file. The decoder is someone else's code fed untrusted bytes: a panic in it
/// is caught and reported as a corrupt file rather than taking the process down.
pub(crate) fn read_parquet(path: &Path, problems: &mut ProblemList) -> Vec<LocatedRow> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) => {
            problems.push(Problem::file(path, "a readable file", error.to_string()));
            return Vec::new();
        }
    };
    let mut rows = Vec::new();
    let mut row_problems = ProblemList::default();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        read_parquet_rows(path, file, &mut rows, &mut row_problems)
    }));
    for problem in row_problems.into_parts().0 {
        problems.push(problem);
    }
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(error)) => problems.push(Problem::file(path, "a valid Parquet file", error)),
        Err(_) => problems.push(Problem::file(
            path,
            "a valid Parquet file",
            "data the Parquet decoder cannot read (it crashed): the file is probably corrupt",
        )),
    }
    rows
}

fn read_parquet_rows(
    path: &Path,
    file: File,
    rows: &mut Vec<LocatedRow>,
    problems: &mut ProblemList,
) -> std::result::Result<(), String> {
    let reader = SerializedFileReader::new(file).map_err(|e| parquet_error(&e))?;
    let iter = reader.get_row_iter(None).map_err(|e| parquet_error(&e))?;
    for (index, row) in iter.enumerate() {
        let position = Position::Row(index + 1);
        match row {
            Ok(row) => match row.to_json_value() {
                Value::Object(object) => rows.push((position, object)),
                other => problems.push(Problem::row(path, position, "a record", describe(&other))),
            },
            Err(error) => {
                // The decoder cannot resynchronise after a bad page: stop at the first one.
                problems.push(Problem::row(
                    path,
                    position,
                    "a readable record",
                    parquet_error(&error),
                ));
                break;
            }
        }
    }
    Ok(())
}

/// The decoder's message, plus what to do about a codec left out of this build.
fn parquet_error(error: &parquet::errors::ParquetError) -> String {
    let message = error.to_string();
    if message.contains("Disabled feature") {
        format!(
            "{message} (trl reads Parquet compressed with snappy, zstd, lz4 or gzip: rewrite the \
             file with one of them, e.g. pyarrow's `pq.write_table(table, path, compression=\"zstd\")`)"
        )
    } else {
        message
    }
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
