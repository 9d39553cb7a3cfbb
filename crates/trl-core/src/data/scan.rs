//! Checking a split in pieces on every core: each file is read a few MiB at a time
//! ([`super::stream`]); a batch of pieces is parsed in parallel, then checked (and measured in
//! tokens) in parallel, and the tallies are merged in file order. Memory holds one batch of rows
//! and what the report needs, whatever the size of the split.
//!
//! Rows are checked against the format of most rows of the first batch; in the rare split where
//! another format wins overall, every file is read and checked a second time against it.

use std::fs::File;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::format::{DatasetFormat, Row};
use super::lengths::TokenLengths;
use super::method::Method;
use super::parse::LocatedRow;
use super::problem::{Position, Problem, ProblemList};
use super::read::{for_each_parquet_piece, read_json};
use super::stream::{
    JsonStart, PIECE_BYTES, PIECE_ROWS, Piece, for_each_lines_piece, for_each_objects_piece,
    json_start,
};
use super::tally::{Checking, KeptRow, Tally, method_problem};
use crate::tokenizer::Tokenizer;

/// Rows checked by one task: small enough to balance the cores, large enough to make the
/// task's cost negligible.
const CHECK_ROWS: usize = 64;

/// What to do with the rows of a split.
#[derive(Clone, Copy)]
pub(crate) struct ScanOptions<'a> {
    pub method: Method,
    pub text_field: &'a str,
    /// The config's `field` of JSON files.
    pub json_field: Option<&'a str>,
    /// Measure token lengths with this tokenizer and compare them with this `max_length`.
    pub tokenizer: Option<(&'a Tokenizer, Option<usize>)>,
    /// Keep the rows, to build a [`super::Dataset`].
    pub keep_rows: bool,
    /// Bytes of a piece of a JSON lines file.
    pub piece_bytes: usize,
}

impl<'a> ScanOptions<'a> {
    /// Check the rows for `method`, nothing more.
    pub(crate) fn new(method: Method, text_field: &'a str) -> Self {
        ScanOptions {
            method,
            text_field,
            json_field: None,
            tokenizer: None,
            keep_rows: false,
            piece_bytes: PIECE_BYTES,
        }
    }
}

/// What a scan found.
pub(crate) struct Scanned {
    pub rows: usize,
    pub format: Option<DatasetFormat>,
    pub problems: ProblemList,
    pub token_lengths: Option<TokenLengths>,
    /// Every row with its file index and position, when kept and there is no problem.
    pub kept: Vec<KeptRow>,
}

/// Reads and checks every row of `files`.
pub(crate) fn scan_files(files: &[PathBuf], options: ScanOptions) -> Scanned {
    let read_all = |guess: Option<DatasetFormat>| {
        let mut pass = Pass::new(options, guess);
        for (index, path) in files.iter().enumerate() {
            pass.read_file(index, path);
        }
        pass
    };
    let mut pass = read_all(None);
    let majority = pass.tally.majority_format();
    if majority.is_some() && majority != pass.guess {
        pass = read_all(majority);
    }
    pass.finish(files)
}

/// Checks rows held in memory, as if read from the file `path`, numbered from 1.
pub(crate) fn scan_rows(rows: Vec<Row>, path: &Path, options: ScanOptions) -> Scanned {
    // Rows in memory can be looked at twice: recognise them all first, so one pass suffices.
    let guess = Tally::guess_format(rows.iter(), options.text_field);
    let mut pass = Pass::new(options, guess);
    let rows = rows.into_iter().enumerate();
    pass.push_rows(
        0,
        path,
        rows.map(|(index, row)| (Position::Row(index + 1), row)),
    );
    pass.end_file(0, path);
    pass.finish(&[path.to_path_buf()])
}

/// One reading of the split, with the format rows are checked against.
struct Pass<'a> {
    options: ScanOptions<'a>,
    guess: Option<DatasetFormat>,
    /// The files done.
    tally: Tally,
    /// The file being read.
    file: Tally,
    /// Pieces waiting to be parsed and checked.
    batch: Vec<Piece>,
}

impl<'a> Pass<'a> {
    fn new(options: ScanOptions<'a>, guess: Option<DatasetFormat>) -> Self {
        Pass {
            options,
            guess,
            tally: Tally::default(),
            file: Tally::default(),
            batch: Vec::new(),
        }
    }

    /// Pieces checked at a time: enough to keep every core busy while one piece is slow.
    fn batch_len() -> usize {
        2 * rayon::current_num_threads()
    }

    fn read_file(&mut self, index: usize, path: &Path) {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        match extension.as_str() {
            "parquet" => {
                let mut problems = ProblemList::default();
                for_each_parquet_piece(path, PIECE_ROWS, &mut problems, &mut |rows| {
                    self.push(index, path, Piece::Rows(rows));
                });
                self.flush(index, path);
                self.file.read.append(problems);
            }
            "json" | "jsonl" => self.read_json_file(index, path),
            _ => self.file.read.push(Problem::file(
                path,
                "a .jsonl, .json or .parquet file",
                format!("the extension {extension:?}"),
            )),
        }
        self.end_file(index, path);
    }

    /// JSON lines piece by piece; a JSON document (an array, or a config's `field`) whole. When
    /// some line is not an object but the file is a stream of multi-line objects, the objects
    /// are the rows, as in [`super::read`].
    fn read_json_file(&mut self, index: usize, path: &Path) {
        let unreadable =
            |error: std::io::Error| Problem::file(path, "a readable file", error.to_string());
        let opened = File::open(path).and_then(|mut file| {
            let start = json_start(
                &mut file,
                self.options.json_field.is_some(),
                self.options.piece_bytes,
            )?;
            Ok((file, start))
        });
        let (mut file, head) = match opened {
            Ok((_, JsonStart::Document(bytes))) => {
                let mut problems = ProblemList::default();
                let rows = read_json(path, &bytes, self.options.json_field, &mut problems);
                drop(bytes);
                self.file.read.append(problems);
                return self.push_rows(index, path, rows);
            }
            Ok((file, JsonStart::Lines { head })) => (file, head),
            Err(error) => return self.file.read.push(unreadable(error)),
        };
        let piece_bytes = self.options.piece_bytes;
        let read = for_each_lines_piece(&mut file, head, piece_bytes, &mut |piece| {
            self.push(index, path, piece);
        });
        self.flush(index, path);
        if let Err(error) = read {
            return self.file.read.push(unreadable(error));
        }
        if self.file.nonblank_lines == 0 && self.file.read.total() == 0 {
            self.file
                .read
                .push(Problem::file(path, "rows of JSON", "an empty file"));
            return;
        }
        if self.file.read.total() > 0 && self.is_object_stream(path) {
            self.file = Tally::default();
            let streamed = File::open(path).and_then(|mut file| {
                for_each_objects_piece(&mut file, piece_bytes, &mut |piece| {
                    self.push(index, path, piece);
                    true
                })
            });
            self.flush(index, path);
            if let Err(error) = streamed {
                self.file.read.push(unreadable(error));
            }
        }
    }

    /// Whether the file is whitespace-separated JSON objects, read without keeping them.
    fn is_object_stream(&self, path: &Path) -> bool {
        let Ok(mut file) = File::open(path) else {
            return false;
        };
        let mut batch = Vec::new();
        let mut valid = true;
        let complete = for_each_objects_piece(&mut file, self.options.piece_bytes, &mut |piece| {
            batch.push(piece);
            if batch.len() >= Self::batch_len() {
                valid = batch.par_iter().all(Piece::objects_are_valid);
                batch.clear();
            }
            valid
        });
        complete.unwrap_or(false) && batch.par_iter().all(Piece::objects_are_valid)
    }

    /// Queues a piece of file `index`, checking the queue when it is full.
    fn push(&mut self, index: usize, path: &Path, piece: Piece) {
        self.batch.push(piece);
        if self.batch.len() >= Self::batch_len() {
            self.flush(index, path);
        }
    }

    /// Queues rows already parsed, [`PIECE_ROWS`] to a piece, and checks them all.
    fn push_rows(&mut self, index: usize, path: &Path, rows: impl IntoIterator<Item = LocatedRow>) {
        let mut rows = rows.into_iter();
        loop {
            let piece: Vec<_> = rows.by_ref().take(PIECE_ROWS).collect();
            if piece.is_empty() {
                return self.flush(index, path);
            }
            self.push(index, path, Piece::Rows(piece));
        }
    }

    /// Checks what is queued and adds the file's tally to the split's.
    fn end_file(&mut self, index: usize, path: &Path) {
        self.flush(index, path);
        let file = std::mem::take(&mut self.file);
        self.tally.append(file);
    }

    /// Parses and checks the waiting pieces on every core, adding them to the file's tally.
    fn flush(&mut self, index: usize, path: &Path) {
        let pieces = std::mem::take(&mut self.batch);
        if pieces.is_empty() {
            return;
        }
        let parsed: Vec<_> = pieces
            .into_par_iter()
            .map(|piece| piece.parse(path))
            .collect();
        let mut rows = Vec::new();
        let mut unreadable = Tally::default();
        for piece in parsed {
            unreadable.read.append(piece.problems);
            unreadable.nonblank_lines += piece.nonblank_lines;
            rows.extend(piece.rows);
        }
        self.file.append(unreadable);
        let options = self.options;
        if self.guess.is_none() {
            let rows = rows.iter().map(|(_, row)| row);
            self.guess = Tally::guess_format(rows, options.text_field);
        }
        // Token lengths and kept rows are only wanted while nothing is wrong.
        let clean = self.tally.problem_count() == 0
            && self.file.problem_count() == 0
            && self.guess.is_some_and(|format| {
                method_problem(options.method, format, options.text_field).is_none()
            });
        let checking = Checking {
            file: index,
            path,
            text_field: options.text_field,
            format: self.guess,
            measure: options
                .tokenizer
                .filter(|_| clean)
                .map(|(tokenizer, _)| tokenizer),
            keep: options.keep_rows && clean,
        };
        // Rows are checked a few at a time, so that every core stays busy to the end of the
        // batch even when rows differ in cost (the tokenizer dominates).
        let tallies: Vec<Tally> = rows
            .into_par_iter()
            .chunks(CHECK_ROWS)
            .map(|rows| {
                let mut tally = Tally::default();
                for (position, row) in rows {
                    tally.add(position, row, &checking);
                }
                tally
            })
            .collect();
        for tally in tallies {
            self.file.append(tally);
        }
    }

    fn finish(self, files: &[PathBuf]) -> Scanned {
        let rows = self.tally.rows;
        let max_length = self.options.tokenizer.map(|(_, max_length)| max_length);
        let text_field = self.options.text_field;
        let mut tally = self.tally;
        let kept = std::mem::take(&mut tally.kept);
        let (format, problems, token_lengths) =
            tally.finish(self.options.method, text_field, files, max_length);
        Scanned {
            rows,
            format,
            kept: if problems.total() == 0 {
                kept
            } else {
                Vec::new()
            },
            problems,
            token_lengths,
        }
    }
}
