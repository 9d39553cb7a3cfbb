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
//!
//! These functions read a whole file; [`super::stream`] cuts big files into pieces; both call
//! the parsers of [`super::parse`].

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::Value;

use super::format::Row;
use super::parse::{LocatedRow, json_error, parse_lines, parse_object, split_objects};
use super::problem::{Position, Problem, ProblemList, describe};

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
    let mut line_problems = ProblemList::default();
    parse_lines(path, 1, bytes, &mut rows, &mut line_problems);
    if line_problems.total() == 0 {
        return rows;
    }
    if let Some(rows) = read_object_stream(path, bytes) {
        return rows;
    }
    problems.append(line_problems);
    rows
}

/// The file as whitespace-separated objects, or `None` if it is not exactly that.
fn read_object_stream(path: &Path, bytes: &[u8]) -> Option<Vec<LocatedRow>> {
    split_objects(bytes)?
        .into_iter()
        .map(|(line, range)| {
            let position = Position::Line(line);
            parse_object(path, position, &bytes[range])
                .ok()
                .map(|row| (position, row))
        })
        .collect()
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

/// Hands the rows of a Parquet file to `each`, `piece_rows` at a time. The decoder is someone
/// else's code fed untrusted bytes: a panic in it is caught and reported as a corrupt file
/// rather than taking the process down.
pub(crate) fn for_each_parquet_piece(
    path: &Path,
    piece_rows: usize,
    problems: &mut ProblemList,
    each: &mut dyn FnMut(Vec<LocatedRow>),
) {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) => {
            problems.push(Problem::file(path, "a readable file", error.to_string()));
            return;
        }
    };
    let reader = match decode(path, || SerializedFileReader::new(file)) {
        Ok(reader) => reader,
        Err(problem) => return problems.push(*problem),
    };
    let mut records = match decode(path, || reader.get_row_iter(None)) {
        Ok(records) => records,
        Err(problem) => return problems.push(*problem),
    };
    let mut piece = Vec::with_capacity(piece_rows);
    for index in 0.. {
        let position = Position::Row(index + 1);
        match catch_unwind(AssertUnwindSafe(|| records.next())) {
            Ok(None) => break,
            Ok(Some(Ok(record))) => match record.to_json_value() {
                Value::Object(object) => piece.push((position, object)),
                other => problems.push(Problem::row(path, position, "a record", describe(&other))),
            },
            Ok(Some(Err(error))) => {
                // The decoder cannot resynchronise after a bad page: stop at the first one.
                problems.push(Problem::row(
                    path,
                    position,
                    "a readable record",
                    parquet_error(&error),
                ));
                break;
            }
            Err(_) => {
                problems.push(crashed(path));
                break;
            }
        }
        if piece.len() == piece_rows {
            each(std::mem::replace(
                &mut piece,
                Vec::with_capacity(piece_rows),
            ));
        }
    }
    if !piece.is_empty() {
        each(piece);
    }
}

/// One step of the Parquet decoder (opening the file, starting the rows): its error, or its
/// panic, becomes a problem with the file.
fn decode<T>(
    path: &Path,
    step: impl FnOnce() -> parquet::errors::Result<T>,
) -> Result<T, Box<Problem>> {
    match catch_unwind(AssertUnwindSafe(step)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(Box::new(Problem::file(
            path,
            "a valid Parquet file",
            parquet_error(&error),
        ))),
        Err(_) => Err(Box::new(crashed(path))),
    }
}

/// A panic inside the decoder, which only corrupt data should cause.
fn crashed(path: &Path) -> Problem {
    Problem::file(
        path,
        "a valid Parquet file",
        "data the Parquet decoder cannot read (it crashed): the file is probably corrupt",
    )
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
