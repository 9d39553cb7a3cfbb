//! Checking every row of a training split before any training starts: `trl validate` prints
//! the report, and every training command loads its data through [`load_dataset`], which
//! refuses data with any problem.
//!
//! The format is decided by the rows, not by the first one alone: each row is recognised on its
//! own, the most common format is the dataset's, and every row that differs is reported.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::format::{DatasetFormat, FormatKind, Row, RowShape, Style, check_row, detect_row};
use super::lengths::measure;
use super::method::Method;
use super::problem::{Position, Problem, ProblemList};
use super::read::read_rows;
use super::report::{ValidationReport, listing};
use super::source::{DatasetArgs, resolve_split_files};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// A split that passed every check: its rows (extra columns kept) and where each came from.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The format every row has.
    pub format: DatasetFormat,
    /// The column of standard language-modeling text (`dataset_text_field`).
    pub text_field: String,
    files: Vec<PathBuf>,
    rows: Vec<Row>,
    /// Per row: index into `files`, position in that file.
    origins: Vec<(usize, Position)>,
}

impl Dataset {
    /// Checks rows built in memory (tests, embedders) as if they came from a file; rows are
    /// numbered from 1.
    pub fn from_rows(rows: Vec<Row>, method: Method, text_field: &str) -> Result<Dataset> {
        let origins = (0..rows.len()).map(|i| (0, Position::Row(i + 1))).collect();
        let raw = RawSplit {
            files: vec![PathBuf::from("<rows>")],
            rows,
            origins,
        };
        let mut problems = ProblemList::default();
        let format = check_rows(&raw, method, text_field, &mut problems);
        finish(raw, format, text_field, problems, "the rows", method)
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn into_rows(self) -> Vec<Row> {
        self.rows
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The files the rows were read from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Where row `index` came from, e.g. `datasets/dpo.jsonl line 12`, for error messages of
    /// later stages (tokenization, collation).
    pub fn origin(&self, index: usize) -> String {
        let (file, position) = self.origin_parts(index);
        format!("{} {position}", file.display())
    }

    pub(crate) fn origin_parts(&self, index: usize) -> (&Path, Position) {
        let (file, position) = self.origins[index];
        (&self.files[file], position)
    }
}

/// Reads the split `args` names and checks every row for `method`; with a tokenizer (and the
/// `max_length` to compare with), also measures the token length of every row. `Err` only when
/// the data cannot be found (no such file, folder, split or hub dataset); everything wrong with
/// the data itself is in the report.
pub fn validate(
    args: &DatasetArgs,
    method: Method,
    tokenizer: Option<(&Tokenizer, Option<usize>)>,
) -> Result<ValidationReport> {
    let (raw, format, mut problems) = read_and_check(args, method)?;
    let (files, rows) = (raw.files.clone(), raw.rows.len());
    let token_lengths = match (format, tokenizer) {
        (Some(format), Some((tokenizer, max_length))) if problems.total() == 0 => {
            let dataset = raw.into_dataset(format, &args.dataset_text_field);
            measure(&dataset, tokenizer, max_length, &mut problems)
        }
        _ => None,
    };
    let (problems, problem_count) = problems.into_parts();
    Ok(ValidationReport {
        dataset: args.dataset_name.clone(),
        split: args.dataset_train_split.clone(),
        method,
        files,
        rows,
        format,
        problems,
        problem_count,
        token_lengths,
    })
}

/// Reads the split `args` names for `method`, failing with every problem found unless all rows
/// are valid. Training commands load their data through this.
pub fn load_dataset(args: &DatasetArgs, method: Method) -> Result<Dataset> {
    let (raw, format, problems) = read_and_check(args, method)?;
    let what = format!(
        "`{}` (split {})",
        args.dataset_name, args.dataset_train_split
    );
    finish(
        raw,
        format,
        &args.dataset_text_field,
        problems,
        &what,
        method,
    )
}

/// The dataset, or an error listing every problem.
fn finish(
    raw: RawSplit,
    format: Option<DatasetFormat>,
    text_field: &str,
    problems: ProblemList,
    what: &str,
    method: Method,
) -> Result<Dataset> {
    match format {
        Some(format) if problems.total() == 0 => Ok(raw.into_dataset(format, text_field)),
        _ => {
            let (listed, total) = problems.into_parts();
            let message = format!(
                "{what} cannot be used for {method}: {}",
                listing(&listed, total)
            );
            Err(Error::Data { message })
        }
    }
}

/// Rows as read, before checking.
struct RawSplit {
    files: Vec<PathBuf>,
    rows: Vec<Row>,
    origins: Vec<(usize, Position)>,
}

impl RawSplit {
    fn into_dataset(self, format: DatasetFormat, text_field: &str) -> Dataset {
        Dataset {
            format,
            text_field: text_field.to_owned(),
            files: self.files,
            rows: self.rows,
            origins: self.origins,
        }
    }
}

fn read_and_check(
    args: &DatasetArgs,
    method: Method,
) -> Result<(RawSplit, Option<DatasetFormat>, ProblemList)> {
    let split = resolve_split_files(args)?;
    let mut problems = ProblemList::default();
    let mut raw = RawSplit {
        files: split.files,
        rows: Vec::new(),
        origins: Vec::new(),
    };
    for (file_index, path) in raw.files.iter().enumerate() {
        for (position, row) in read_rows(path, split.json_field.as_deref(), &mut problems) {
            raw.rows.push(row);
            raw.origins.push((file_index, position));
        }
    }
    let format = check_rows(&raw, method, &args.dataset_text_field, &mut problems);
    Ok((raw, format, problems))
}

/// Recognises every row, picks the dataset's format, and checks the format against the method
/// and every row against the format. Returns the format of most rows.
fn check_rows(
    raw: &RawSplit,
    method: Method,
    text_field: &str,
    problems: &mut ProblemList,
) -> Option<DatasetFormat> {
    let locate = |index: usize, problem: Problem| {
        let (file, position) = raw.origins[index];
        Problem {
            file: Some(raw.files[file].clone()),
            position: Some(position),
            ..problem
        }
    };
    let mut unrecognised = Vec::new();
    let shapes: Vec<Option<RowShape>> = raw
        .rows
        .iter()
        .enumerate()
        .map(|(index, row)| {
            detect_row(row, text_field)
                .map_err(|problem| unrecognised.push(locate(index, *problem)))
                .ok()
        })
        .collect();
    let Some(format) = majority_format(&shapes) else {
        if raw.rows.is_empty() && problems.total() == 0 {
            let files: Vec<String> = raw.files.iter().map(|f| f.display().to_string()).collect();
            let found = format!("none in {}", files.join(", "));
            problems.push(Problem::dataset("at least one row", found));
        }
        unrecognised.into_iter().for_each(|p| problems.push(p));
        return None;
    };
    if let Some(problem) = method_problem(method, format, text_field) {
        problems.push(problem);
    }
    unrecognised.into_iter().for_each(|p| problems.push(p));
    let census = Census::of(&shapes, format);
    for (index, (row, shape)) in raw.rows.iter().zip(&shapes).enumerate() {
        let Some(shape) = shape else { continue };
        match mismatch(*shape, format, &census, text_field) {
            Some(problem) => problems.push(locate(index, problem)),
            None => {
                for problem in check_row(row, format, text_field) {
                    problems.push(locate(index, problem));
                }
            }
        }
    }
    Some(format)
}

/// The format is not one the method trains on.
fn method_problem(method: Method, format: DatasetFormat, text_field: &str) -> Option<Problem> {
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

impl Census {
    fn of(shapes: &[Option<RowShape>], format: DatasetFormat) -> Census {
        let same_kind = || shapes.iter().flatten().filter(|s| s.kind == format.kind);
        Census {
            rows: shapes.len(),
            same_kind: same_kind().count(),
            same_format: same_kind()
                .filter(|s| s.style == Some(format.style))
                .count(),
        }
    }
}

/// Why a row does not fit the dataset's format; `None` when its values are to be checked
/// (its format matches, or it only lacks columns of the format, which the value checks name).
fn mismatch(
    shape: RowShape,
    format: DatasetFormat,
    census: &Census,
    text_field: &str,
) -> Option<Problem> {
    let dataset_columns = format.kind.columns(Style::Standard, text_field);
    let row_columns = shape.kind.columns(Style::Standard, text_field);
    if !row_columns.iter().all(|c| dataset_columns.contains(c)) {
        return Some(Problem::dataset(
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
        ));
    }
    let style = shape
        .style
        .filter(|&style| shape.kind == format.kind && style != format.style)?;
    Some(Problem::dataset(
        format!(
            "{} values like {} of the {} rows ({})",
            format.style,
            census.same_format,
            census.rows,
            style_values(format.style)
        ),
        format!("{style} values ({})", style_values(style)),
    ))
}

fn style_values(style: Style) -> &'static str {
    match style {
        Style::Standard => "strings",
        Style::Conversational => "lists of messages",
    }
}

/// The most common kind (ties go to the one seen first) and, among its rows, the most common
/// style.
fn majority_format(shapes: &[Option<RowShape>]) -> Option<DatasetFormat> {
    let kind = most_common(shapes.iter().flatten().map(|s| s.kind))?;
    let style = most_common(
        shapes
            .iter()
            .flatten()
            .filter(|s| s.kind == kind)
            .filter_map(|s| s.style),
    )
    .unwrap_or(Style::Standard);
    Some(DatasetFormat { kind, style })
}

fn most_common<T: Copy + Eq + std::hash::Hash>(items: impl Iterator<Item = T>) -> Option<T> {
    let mut counts: HashMap<T, (usize, usize)> = HashMap::new();
    for (seen, item) in items.enumerate() {
        counts.entry(item).or_insert((0, seen)).0 += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(_, (count, first))| (count, std::cmp::Reverse(first)))
        .map(|(item, _)| item)
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
