//! Parsing bytes into rows: one JSON object, JSON lines, and whitespace-separated objects that
//! may span lines (cut apart by counting brackets outside strings). Both whole-file reading
//! ([`super::read`]) and piece-by-piece reading ([`super::stream`]) call these.

use std::ops::Range;
use std::path::Path;

use serde_json::Value;

use super::format::Row;
use super::problem::{Position, Problem, ProblemList, describe};

/// A row and where it is in its file.
pub(crate) type LocatedRow = (Position, Row);

/// Parses JSON lines, the first of them line `first_line`: rows to `rows`, lines that are not
/// one object to `problems`, blank lines skipped. Returns how many lines were not blank.
pub(crate) fn parse_lines(
    path: &Path,
    first_line: usize,
    bytes: &[u8],
    rows: &mut Vec<LocatedRow>,
    problems: &mut ProblemList,
) -> usize {
    let mut nonblank = 0;
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let position = Position::Line(first_line + index);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        nonblank += 1;
        match parse_object(path, position, line) {
            Ok(row) => rows.push((position, row)),
            Err(problem) => problems.push(*problem),
        }
    }
    nonblank
}

/// One row from the bytes of one JSON object.
pub(crate) fn parse_object(
    path: &Path,
    position: Position,
    bytes: &[u8],
) -> Result<Row, Box<Problem>> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let found = format!(
            "the byte 0x{:02x} at column {}, which is not UTF-8",
            bytes[error.valid_up_to()],
            error.valid_up_to() + 1
        );
        Box::new(Problem::row(path, position, "UTF-8 text", found))
    })?;
    let expected = "a JSON object (one row)";
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(row)) => Ok(row),
        Ok(other) => Err(Box::new(Problem::row(
            path,
            position,
            expected,
            describe(&other),
        ))),
        Err(error) => Err(Box::new(Problem::row(
            path,
            position,
            expected,
            json_error(&error),
        ))),
    }
}

pub(crate) fn json_error(error: &serde_json::Error) -> String {
    format!("invalid JSON ({error})")
}

/// The objects of a whole stream held in memory: each one's first line and bytes, or `None` when
/// the bytes are not whitespace-separated objects.
pub(crate) fn split_objects(bytes: &[u8]) -> Option<Vec<(usize, Range<usize>)>> {
    let mut splitter = ObjectSplitter::default();
    let mut objects = Vec::new();
    (splitter.scan(bytes, 0, &mut objects) && !splitter.is_inside_object()).then_some(objects)
}

/// Finds where the top-level objects of `{...} {...}` start and end by counting brackets outside
/// strings; whether each is valid JSON is for the parser to say.
#[derive(Default)]
pub(crate) struct ObjectSplitter {
    /// Open brackets; 0 between objects.
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Newlines seen so far.
    newlines: usize,
    /// Line and offset of the `{` of the object being scanned.
    start: Option<(usize, usize)>,
}

impl ObjectSplitter {
    /// Scans `bytes[from..]`, adding each object that ends there; `false` at anything but
    /// JSON whitespace between objects.
    pub(crate) fn scan(
        &mut self,
        bytes: &[u8],
        from: usize,
        objects: &mut Vec<(usize, Range<usize>)>,
    ) -> bool {
        for (offset, &byte) in bytes.iter().enumerate().skip(from) {
            if byte == b'\n' {
                self.newlines += 1;
            }
            if self.depth == 0 {
                match byte {
                    b' ' | b'\t' | b'\n' | b'\r' => {}
                    b'{' => {
                        self.depth = 1;
                        self.start = Some((self.newlines + 1, offset));
                    }
                    _ => return false,
                }
                continue;
            }
            if self.in_string {
                match (self.escaped, byte) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0
                        && let Some((line, start)) = self.start.take()
                    {
                        objects.push((line, start..offset + 1));
                    }
                }
                _ => {}
            }
        }
        true
    }

    pub(crate) fn is_inside_object(&self) -> bool {
        self.depth > 0
    }

    /// The first `bytes` were taken away from the buffer scanned.
    pub(crate) fn shift(&mut self, bytes: usize) {
        if let Some((_, start)) = &mut self.start {
            *start -= bytes;
        }
    }
}
