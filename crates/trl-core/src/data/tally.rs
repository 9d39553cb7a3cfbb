//! What checking rows found, kept small enough to hold for a split of any size: row and format
//! counts, the first problems of each kind with a count of the rest, and a histogram of token
//! lengths. Tallies of consecutive pieces merge in file order, so that a split checked piece by
//! piece on many cores reports exactly what one pass over all its rows would.
//!
//! The dataset's format is the one most rows have, known only after the last row. A row is
//! checked against a guessed format (that of most rows in the first piece); when the guess turns
//! out wrong the caller checks the split again with the right one ([`super::scan`]).

use std::path::{Path, PathBuf};

use super::format::{DatasetFormat, FormatKind, Row, RowShape, Style, check_row, detect_row};
use super::lengths::{Measured, TokenLengths, row_length};
use super::method::Method;
use super::problem::{Capped, Position, Problem, ProblemList};
use crate::tokenizer::Tokenizer;

/// How the rows of one piece are checked.
pub(crate) struct Checking<'a> {
    /// Index of the file among the split's files, and its path.
    pub file: usize,
    pub path: &'a Path,
    pub text_field: &'a str,
    /// The format rows are checked against; `None` while no row has one.
    pub format: Option<DatasetFormat>,
    /// Measure the token length of each valid row.
    pub measure: Option<&'a Tokenizer>,
    /// Keep the rows (to build a [`super::Dataset`]).
    pub keep: bool,
}

/// A row kept for the dataset: file index, position, row.
pub(crate) type KeptRow = (usize, Position, Row);

/// What checking a run of consecutive rows found.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub rows: usize,
    /// Lines of JSON lines files that were not blank.
    pub nonblank_lines: usize,
    formats: FormatCounts,
    /// What could not be read.
    pub read: ProblemList,
    /// Rows of no format.
    unrecognised: ProblemList,
    /// Rows that differ from the format or break its rules.
    checked: Capped<Pending>,
    measured: Measured,
    /// The rows, while [`Checking::keep`] and no problem was found.
    pub kept: Vec<KeptRow>,
}

impl Tally {
    /// Problems found so far, token lengths aside.
    pub(crate) fn problem_count(&self) -> usize {
        self.read.total() + self.unrecognised.total() + self.checked.total()
    }

    /// Recognises and checks one row.
    pub(crate) fn add(&mut self, position: Position, row: Row, checking: &Checking) {
        let index = self.rows;
        self.rows += 1;
        let locate = |problem: Problem| Problem {
            file: Some(checking.path.to_path_buf()),
            position: Some(position),
            ..problem
        };
        match detect_row(&row, checking.text_field) {
            Err(problem) => self.unrecognised.push(locate(*problem)),
            Ok(shape) => {
                self.formats.add(shape, 1, index);
                if let Some(format) = checking.format {
                    match mismatch(shape, format, checking.text_field) {
                        Some(mismatch) => self.checked.push(Pending::Mismatch(
                            checking.path.to_path_buf(),
                            position,
                            mismatch,
                        )),
                        None => {
                            let problems = check_row(&row, format, checking.text_field);
                            if let (true, Some(tokenizer)) = (problems.is_empty(), checking.measure)
                            {
                                let length =
                                    row_length(&row, format, checking.text_field, tokenizer);
                                self.measured
                                    .add(length, || (checking.path.to_path_buf(), position));
                            }
                            for problem in problems {
                                self.checked.push(Pending::Found(locate(problem)));
                            }
                        }
                    }
                }
            }
        }
        if checking.keep && self.problem_count() == 0 {
            self.kept.push((checking.file, position, row));
        }
    }

    /// Adds what `later` found in the rows after these.
    pub(crate) fn append(&mut self, later: Tally) {
        self.formats.append(later.formats, self.rows);
        self.rows += later.rows;
        self.nonblank_lines += later.nonblank_lines;
        self.read.append(later.read);
        self.unrecognised.append(later.unrecognised);
        self.checked.append(later.checked);
        self.measured.append(later.measured);
        if self.problem_count() == 0 {
            self.kept.extend(later.kept);
        } else {
            self.kept = Vec::new();
        }
    }

    /// The format most of `rows` have (see [`Tally::majority_format`]), without checking them.
    pub(crate) fn guess_format<'r>(
        rows: impl Iterator<Item = &'r Row>,
        text_field: &str,
    ) -> Option<DatasetFormat> {
        let mut formats = FormatCounts::default();
        for (index, row) in rows.enumerate() {
            if let Ok(shape) = detect_row(row, text_field) {
                formats.add(shape, 1, index);
            }
        }
        formats.majority()
    }

    /// The format most rows have: the most common kind (ties go to the one seen first) and,
    /// among its rows, the most common style.
    pub(crate) fn majority_format(&self) -> Option<DatasetFormat> {
        self.formats.majority()
    }

    /// The split's format and every problem, in the order the report lists them: unreadable
    /// data, the dataset as a whole, unrecognised rows, rows that break the format, and, when
    /// all else is fine, rows the tokenizer rejects.
    pub(crate) fn finish(
        self,
        method: Method,
        text_field: &str,
        files: &[PathBuf],
        max_length: Option<Option<usize>>,
    ) -> (Option<DatasetFormat>, ProblemList, Option<TokenLengths>) {
        let mut problems = self.read;
        let Some(format) = self.formats.majority() else {
            if self.rows == 0 && problems.total() == 0 {
                let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                let found = format!("none in {}", files.join(", "));
                problems.push(Problem::dataset("at least one row", found));
            }
            problems.append(self.unrecognised);
            return (None, problems, None);
        };
        if let Some(problem) = method_problem(method, format, text_field) {
            problems.push(problem);
        }
        problems.append(self.unrecognised);
        let census = self.formats.census(format, self.rows);
        problems.append(self.checked.map(|pending| match pending {
            Pending::Found(problem) => problem,
            Pending::Mismatch(file, position, mismatch) => Problem {
                file: Some(file),
                position: Some(position),
                ..mismatch_problem(mismatch, format, &census, text_field)
            },
        }));
        let lengths = match max_length {
            Some(max_length) if problems.total() == 0 => {
                self.measured.finish(max_length, &mut problems)
            }
            _ => None,
        };
        (Some(format), problems, lengths)
    }
}

/// A problem as found, or a row of another format, described once the counts in its message
/// are known.
#[derive(Debug)]
enum Pending {
    Found(Problem),
    Mismatch(PathBuf, Position, Mismatch),
}

/// Rows per shape, and the index of the first row of each.
#[derive(Debug, Default)]
struct FormatCounts(Vec<(RowShape, usize, usize)>);

impl FormatCounts {
    fn add(&mut self, shape: RowShape, rows: usize, first: usize) {
        match self.0.iter_mut().find(|(s, _, _)| *s == shape) {
            Some((_, count, seen)) => {
                *count += rows;
                *seen = (*seen).min(first);
            }
            None => self.0.push((shape, rows, first)),
        }
    }

    /// Counts of the rows after `offset` earlier ones.
    fn append(&mut self, later: FormatCounts, offset: usize) {
        for (shape, rows, first) in later.0 {
            self.add(shape, rows, offset + first);
        }
    }

    /// Rows and first row among the shapes that `select` keeps.
    fn sum(&self, select: impl Fn(RowShape) -> bool) -> (usize, usize) {
        self.0
            .iter()
            .filter(|(shape, _, _)| select(*shape))
            .fold((0, usize::MAX), |(rows, first), &(_, count, seen)| {
                (rows + count, first.min(seen))
            })
    }

    fn majority(&self) -> Option<DatasetFormat> {
        let most_common = |candidates: &mut dyn Iterator<Item = (usize, usize)>| {
            candidates
                .enumerate()
                .filter(|(_, (rows, _))| *rows > 0)
                .max_by_key(|&(_, (rows, first))| (rows, std::cmp::Reverse(first)))
                .map(|(index, _)| index)
        };
        let kind = FormatKind::ALL[most_common(
            &mut FormatKind::ALL
                .iter()
                .map(|&kind| self.sum(|s| s.kind == kind)),
        )?];
        let styles = [Style::Standard, Style::Conversational];
        let style = most_common(
            &mut styles
                .iter()
                .map(|&style| self.sum(|s| s.kind == kind && s.style == Some(style))),
        )
        .map_or(Style::Standard, |index| styles[index]);
        Some(DatasetFormat { kind, style })
    }

    fn census(&self, format: DatasetFormat, rows: usize) -> Census {
        Census {
            rows,
            same_kind: self.sum(|s| s.kind == format.kind).0,
            same_format: self
                .sum(|s| s.kind == format.kind && s.style == Some(format.style))
                .0,
        }
    }
}

/// The format is not one the method trains on.
pub(crate) fn method_problem(
    method: Method,
    format: DatasetFormat,
    text_field: &str,
) -> Option<Problem> {
    if method.accepts(format.kind) {
        return None;
    }
    let described = |kind: FormatKind| format!("{kind} ({})", kind.column_list(text_field));
    let accepted: Vec<String> = method.formats().iter().map(|&k| described(k)).collect();
    let mut found = described(format.kind);
    if format.kind == FormatKind::PromptCompletion && method.accepts(FormatKind::PromptOnly) {
        found.push_str(
            "; to pass the completion to reward functions, rename the column (e.g. to `solution`)",
        );
    }
    Some(Problem::dataset(
        format!("data {method} trains on: {}", accepted.join(" or ")),
        found,
    ))
}

/// How many rows share the dataset's format, for messages about the rows that do not.
struct Census {
    rows: usize,
    same_kind: usize,
    same_format: usize,
}

/// How a row differs from the dataset's format.
#[derive(Debug, Clone, Copy)]
enum Mismatch {
    /// It has columns the format does not.
    Columns(RowShape),
    /// Same columns, other style.
    Style(Style),
}

/// Why a row does not fit the dataset's format; `None` when its values are to be checked
/// (its format matches, or it only lacks columns of the format, which the value checks name).
fn mismatch(shape: RowShape, format: DatasetFormat, text_field: &str) -> Option<Mismatch> {
    let dataset_columns = format.kind.columns(Style::Standard, text_field);
    let row_columns = shape.kind.columns(Style::Standard, text_field);
    if !row_columns.iter().all(|c| dataset_columns.contains(c)) {
        return Some(Mismatch::Columns(shape));
    }
    shape
        .style
        .filter(|&style| shape.kind == format.kind && style != format.style)
        .map(Mismatch::Style)
}

fn mismatch_problem(
    mismatch: Mismatch,
    format: DatasetFormat,
    census: &Census,
    text_field: &str,
) -> Problem {
    match mismatch {
        Mismatch::Columns(shape) => Problem::dataset(
            format!(
                "a {} row like {} of the {} rows ({})",
                format.kind,
                census.same_kind,
                census.rows,
                format.kind.column_list(text_field)
            ),
            format!(
                "a {} row ({})",
                shape.kind,
                shape.kind.column_list(text_field)
            ),
        ),
        Mismatch::Style(style) => Problem::dataset(
            format!(
                "{} values like {} of the {} rows ({})",
                format.style,
                census.same_format,
                census.rows,
                style_values(format.style)
            ),
            format!("{style} values ({})", style_values(style)),
        ),
    }
}

fn style_values(style: Style) -> &'static str {
    match style {
        Style::Standard => "strings",
        Style::Conversational => "lists of messages",
    }
}
