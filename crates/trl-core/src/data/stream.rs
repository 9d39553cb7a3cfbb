//! Reading a file a piece at a time (a few MiB of whole rows), so that a split of any size is
//! checked in memory that does not grow with it, and the pieces are parsed on every core.
//!
//! JSON lines are cut after a newline; a stream of multi-line objects (the fallback of
//! [`super::read`], split by [`super::parse`]) is cut after an object, found by counting brackets outside strings. JSON
//! arrays, a config's `field` and Parquet files arrive as rows already parsed.

use std::io::{self, Read};
use std::ops::Range;
use std::path::Path;

use serde_json::Value;

use super::parse::{LocatedRow, ObjectSplitter, parse_lines, parse_object};
use super::problem::{Position, ProblemList};

/// Bytes of a piece, and how many bytes a read asks for.
pub(crate) const PIECE_BYTES: usize = 2 << 20;

/// Rows per piece when rows arrive already parsed.
pub(crate) const PIECE_ROWS: usize = 2048;

/// A piece of one file, in file order.
pub(crate) enum Piece {
    /// Whole lines of a JSON lines file, the first of them line `first_line` (1-based).
    Lines { first_line: usize, bytes: Vec<u8> },
    /// Whole objects of a stream of objects: each one's first line and its bytes.
    Objects {
        bytes: Vec<u8>,
        objects: Vec<(usize, Range<usize>)>,
    },
    /// Rows already parsed (JSON arrays, a config's `field`, Parquet).
    Rows(Vec<LocatedRow>),
}

/// A piece, parsed.
#[derive(Default)]
pub(crate) struct Parsed {
    pub rows: Vec<LocatedRow>,
    /// What could not be read, in file order.
    pub problems: ProblemList,
    /// Lines that are not blank (a JSON lines file with none is empty).
    pub nonblank_lines: usize,
}

impl Piece {
    pub(crate) fn parse(self, path: &Path) -> Parsed {
        let mut parsed = Parsed::default();
        match self {
            Piece::Lines { first_line, bytes } => {
                parsed.nonblank_lines = parse_lines(
                    path,
                    first_line,
                    &bytes,
                    &mut parsed.rows,
                    &mut parsed.problems,
                );
            }
            Piece::Objects { bytes, objects } => {
                for (line, range) in objects {
                    match parse_object(path, Position::Line(line), &bytes[range]) {
                        Ok(row) => parsed.rows.push((Position::Line(line), row)),
                        Err(problem) => parsed.problems.push(*problem),
                    }
                }
            }
            Piece::Rows(rows) => parsed.rows = rows,
        }
        parsed
    }

    /// Whether every object of an `Objects` piece is valid JSON (checked without keeping it).
    pub(crate) fn objects_are_valid(&self) -> bool {
        match self {
            Piece::Objects { bytes, objects } => objects.iter().all(|(_, range)| {
                serde_json::from_slice::<Value>(&bytes[range.clone()]).is_ok_and(|v| v.is_object())
            }),
            _ => true,
        }
    }
}

/// How a JSON file starts, which decides how it is read (as `datasets`' JSON builder does).
pub(crate) enum JsonStart {
    /// A JSON array (or, with a config's `field`, any document): read whole.
    Document(Vec<u8>),
    /// Anything else: JSON lines, read piece by piece from the reader after `head`.
    Lines { head: Vec<u8> },
}

/// Reads the start of a JSON file (a UTF-8 byte-order mark dropped), and the whole of it when it
/// is one document.
pub(crate) fn json_start(
    reader: &mut impl Read,
    whole_document: bool,
    piece_bytes: usize,
) -> io::Result<JsonStart> {
    let mut head = Vec::new();
    fill(reader, &mut head, piece_bytes.max(3))?;
    if head.starts_with(b"\xef\xbb\xbf") {
        head.drain(..3);
    }
    if whole_document || head.starts_with(b"[") {
        reader.read_to_end(&mut head)?;
        return Ok(JsonStart::Document(head));
    }
    Ok(JsonStart::Lines { head })
}

/// Hands whole lines of `head` followed by the rest of `reader` to `each`, about `piece_bytes`
/// at a time (more when one line is longer).
pub(crate) fn for_each_lines_piece(
    reader: &mut impl Read,
    head: Vec<u8>,
    piece_bytes: usize,
    each: &mut dyn FnMut(Piece),
) -> io::Result<()> {
    let mut buffer = head;
    let mut first_line = 1;
    let mut want = piece_bytes;
    loop {
        let at_end = fill(reader, &mut buffer, want)?;
        let cut = if at_end {
            buffer.len()
        } else {
            match memchr::memrchr(b'\n', &buffer) {
                Some(newline) => newline + 1,
                None => {
                    want = buffer.len() + piece_bytes;
                    continue;
                }
            }
        };
        let rest = buffer.split_off(cut);
        let newlines = memchr::memchr_iter(b'\n', &buffer).count();
        if !buffer.is_empty() {
            each(Piece::Lines {
                first_line,
                bytes: buffer,
            });
        }
        if at_end {
            return Ok(());
        }
        first_line += newlines;
        buffer = rest;
        want = piece_bytes;
    }
}

/// Hands the whitespace-separated objects of `reader` (from its start, a byte-order mark
/// dropped) to `each`, about `piece_bytes` at a time, while `each` returns `true`. `Ok(false)`
/// when the file is not such a stream (something else between objects, or an object left open)
/// or `each` said stop; what was handed is then to be thrown away.
pub(crate) fn for_each_objects_piece(
    reader: &mut impl Read,
    piece_bytes: usize,
    each: &mut dyn FnMut(Piece) -> bool,
) -> io::Result<bool> {
    let mut buffer = Vec::new();
    let mut splitter = ObjectSplitter::default();
    let mut objects = Vec::new();
    let mut at_start = true;
    loop {
        let scanned = buffer.len();
        let at_end = fill(reader, &mut buffer, scanned + piece_bytes.max(3))?;
        if at_start && buffer.starts_with(b"\xef\xbb\xbf") {
            buffer.drain(..3);
        }
        let from = if at_start { 0 } else { scanned };
        at_start = false;
        if !splitter.scan(&buffer, from, &mut objects) {
            return Ok(false);
        }
        if at_end && splitter.is_inside_object() {
            return Ok(false);
        }
        let complete = objects
            .last()
            .map_or(0, |(_, range): &(usize, Range<usize>)| range.end);
        if complete >= piece_bytes || (at_end && !objects.is_empty()) {
            let rest = buffer.split_off(complete);
            let more = each(Piece::Objects {
                bytes: std::mem::replace(&mut buffer, rest),
                objects: std::mem::take(&mut objects),
            });
            if !more {
                return Ok(false);
            }
            splitter.shift(complete);
        }
        if at_end {
            return Ok(true);
        }
    }
}

/// Reads until `buffer` holds `want` bytes; `true` when the reader ran out first.
fn fill(reader: &mut impl Read, buffer: &mut Vec<u8>, want: usize) -> io::Result<bool> {
    while buffer.len() < want {
        let start = buffer.len();
        buffer.resize(want.min(start + (8 << 20)), 0);
        match reader.read(&mut buffer[start..]) {
            Ok(0) => {
                buffer.truncate(start);
                return Ok(true);
            }
            Ok(read) => buffer.truncate(start + read),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => buffer.truncate(start),
            Err(error) => {
                buffer.truncate(start);
                return Err(error);
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::parse::split_objects;

    fn lines_pieces(text: &[u8], piece_bytes: usize) -> Vec<(usize, Vec<u8>)> {
        let mut pieces = Vec::new();
        for_each_lines_piece(&mut &text[..], Vec::new(), piece_bytes, &mut |piece| {
            if let Piece::Lines { first_line, bytes } = piece {
                pieces.push((first_line, bytes));
            }
        })
        .unwrap();
        pieces
    }

    #[test]
    fn lines_are_cut_after_newlines_and_numbered() {
        let text = b"a\nbb\n\nccc\nd";
        for piece_bytes in [1, 2, 3, 5, 100] {
            let pieces = lines_pieces(text, piece_bytes);
            let joined: Vec<u8> = pieces.iter().flat_map(|(_, b)| b.clone()).collect();
            assert_eq!(joined, text, "{piece_bytes}");
            let mut line = 1;
            for (first_line, bytes) in &pieces {
                assert_eq!(*first_line, line, "{piece_bytes}");
                assert!(bytes.ends_with(b"\n") || bytes.ends_with(b"d"));
                line += bytes.iter().filter(|&&b| b == b'\n').count();
            }
        }
        assert_eq!(lines_pieces(b"", 4), []);
    }

    #[test]
    fn objects_are_split_at_their_closing_bracket() {
        let text = b"\xef\xbb\xbf{\"a\": \"}{\\\"\",\n \"b\": [1, {}]}\n\n  {\"c\": 2}{}";
        for piece_bytes in [1, 4, 1000] {
            let mut found = Vec::new();
            let complete = for_each_objects_piece(&mut &text[..], piece_bytes, &mut |piece| {
                if let Piece::Objects { bytes, objects } = piece {
                    for (line, range) in objects {
                        found.push((line, String::from_utf8(bytes[range].to_vec()).unwrap()));
                    }
                }
                true
            })
            .unwrap();
            assert!(complete);
            assert_eq!(
                found,
                [
                    (1, "{\"a\": \"}{\\\"\",\n \"b\": [1, {}]}".to_owned()),
                    (4, "{\"c\": 2}".to_owned()),
                    (4, "{}".to_owned()),
                ],
                "{piece_bytes}"
            );
        }
        for not_objects in [&b"{} 3"[..], b"{\"a\": 1", b"[{}]"] {
            let complete = for_each_objects_piece(&mut &not_objects[..], 2, &mut |_| true).unwrap();
            assert!(!complete, "{not_objects:?}");
            assert!(split_objects(not_objects).is_none());
        }
    }
}
