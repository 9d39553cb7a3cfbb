//! Checking every row of a training split before any training starts: `trl validate` prints
//! the report, and every training command loads its data through [`load_dataset`], which
//! refuses data with any problem.
//!
//! The format is decided by the rows, not by the first one alone: each row is recognised on its
//! own, the most common format is the dataset's, and every row that differs is reported.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::format::{DatasetFormat, FormatKind, Row, RowShape, Style, check_row, detect_row};
use super::lengths::{TokenLengths, measure};
use super::method::Method;
use super::problem::{Position, Problem, ProblemList};
use super::read::read_rows;
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
        finish(raw, format, text_field, problems, |problems, total| {
            format!(
                "{} row(s) for {method}: {}",
                total,
                listing(problems, total)
            )
        })
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

/// What `trl validate` prints: the split, its format, and every problem found (the first
/// [`super::MAX_LISTED_PROBLEMS`] listed, the rest counted).
#[derive(Debug, Clone)]
pub struct ValidationReport {
    pub dataset: String,
    pub split: String,
    pub method: Method,
    pub files: Vec<PathBuf>,
    pub rows: usize,
    /// The format of most rows, when any row has one.
    pub format: Option<DatasetFormat>,
    pub problems: Vec<Problem>,
    /// All problems, including those not listed.
    pub problem_count: usize,
    /// Present when a tokenizer was given and the rows are valid.
    pub token_lengths: Option<TokenLengths>,
}

impl ValidationReport {
    /// Whether the method can train on the split as it is.
    pub fn is_valid(&self) -> bool {
        self.problem_count == 0
    }
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = if self.files.len() == 1 {
            "1 file".to_owned()
        } else {
            format!("{} files", self.files.len())
        };
        writeln!(
            f,
            "dataset: {} (split {}, {files})",
            self.dataset, self.split
        )?;
        writeln!(f, "rows: {}", self.rows)?;
        match self.format {
            Some(format) => writeln!(f, "format: {format}")?,
            None => writeln!(f, "format: none recognised")?,
        }
        if let Some(lengths) = &self.token_lengths {
            writeln!(f, "{}", lengths.summary(self.method))?;
        }
        if self.is_valid() {
            write!(f, "valid for {}", self.method)
        } else {
            write!(
                f,
                "not valid for {}: {}",
                self.method,
                listing(&self.problems, self.problem_count)
            )
        }
    }
}

/// "N problem(s):" and one problem a line, then "... and M more".
fn listing(problems: &[Problem], total: usize) -> String {
    let mut text = format!("{total} problem{}:", if total == 1 { "" } else { "s" });
    for problem in problems {
        text.push_str(&format!("\n  {problem}"));
    }
    if total > problems.len() {
        text.push_str(&format!("\n  ... and {} more", total - problems.len()));
    }
    text
}

/// Reads the split `args` names and checks every row for `method`; with a tokenizer (and the
/// method's `max_length`), also measures the token length of every row. `Err` only when the
/// data cannot be found (no such file, folder, split or hub dataset); everything wrong with the
/// data itself is in the report.
pub fn validate(
    args: &DatasetArgs,
    method: Method,
    tokenizer: Option<(&Tokenizer, Option<usize>)>,
) -> Result<ValidationReport> {
    let (raw, format, mut problems) = read_and_check(args, method)?;
    let mut token_lengths = None;
    if let (Some(format), Some((tokenizer, max_length)), 0) = (format, tokenizer, problems.total())
    {
        let dataset = Dataset {
            format,
            text_field: args.dataset_text_field.clone(),
            files: raw.files.clone(),
            rows: raw.rows,
            origins: raw.origins,
        };
        token_lengths = measure(&dataset, tokenizer, max_length, &mut problems);
        return Ok(report(
            args,
            method,
            dataset.files,
            dataset.rows.len(),
            Some(format),
            problems,
            token_lengths,
        ));
    }
    Ok(report(
        args,
        method,
        raw.files,
        raw.rows.len(),
        format,
        problems,
        token_lengths,
    ))
}

/// Reads the split `args` names for `method`, failing with every problem found unless all rows
/// are valid. Training commands load their data through this.
pub fn load_dataset(args: &DatasetArgs, method: Method) -> Result<Dataset> {
    let (raw, format, problems) = read_and_check(args, method)?;
    finish(
        raw,
        format,
        &args.dataset_text_field,
        problems,
        |problems, total| {
            format!(
                "`{}` (split {}) cannot be used for {method}: {}",
                args.dataset_name,
                args.dataset_train_split,
                listing(problems, total)
            )
        },
    )
}

fn finish(
    raw: RawSplit,
    format: Option<DatasetFormat>,
    text_field: &str,
    problems: ProblemList,
    message: impl FnOnce(&[Problem], usize) -> String,
) -> Result<Dataset> {
    match format {
        Some(format) if problems.total() == 0 => Ok(Dataset {
            format,
            text_field: text_field.to_owned(),
            files: raw.files,
            rows: raw.rows,
            origins: raw.origins,
        }),
        _ => {
            let (listed, total) = problems.into_parts();
            Err(Error::Data {
                message: message(&listed, total),
            })
        }
    }
}

fn report(
    args: &DatasetArgs,
    method: Method,
    files: Vec<PathBuf>,
    rows: usize,
    format: Option<DatasetFormat>,
    problems: ProblemList,
    token_lengths: Option<TokenLengths>,
) -> ValidationReport {
    let (problems, problem_count) = problems.into_parts();
    ValidationReport {
        dataset: args.dataset_name.clone(),
        split: args.dataset_train_split.clone(),
        method,
        files,
        rows,
        format,
        problems,
        problem_count,
        token_lengths,
    }
}

/// Rows as read, before checking.
struct RawSplit {
    files: Vec<PathBuf>,
    rows: Vec<Row>,
    origins: Vec<(usize, Position)>,
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

/// Recognises every row, picks the dataset's format, and checks every row against it and the
/// format against the method. Returns the format of most rows.
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
    let mut row_problems = Vec::new();
    let shapes: Vec<Option<RowShape>> = raw
        .rows
        .iter()
        .enumerate()
        .map(|(index, row)| {
            detect_row(row, text_field)
                .map_err(|p| row_problems.push(locate(index, *p)))
                .ok()
        })
        .collect();
    let Some(format) = majority_format(&shapes) else {
        if raw.rows.is_empty() && problems.total() == 0 {
            let files: Vec<String> = raw.files.iter().map(|f| f.display().to_string()).collect();
            problems.push(Problem::dataset(
                "at least one row",
                format!("none in {}", files.join(", ")),
            ));
        }
        row_problems.into_iter().for_each(|p| problems.push(p));
        return None;
    };
    if !method.accepts(format.kind) {
        let accepted: Vec<String> = method
            .formats()
            .iter()
            .map(|k| format!("{k} ({})", k.column_list(text_field)))
            .collect();
        let mut found = format!(
            "{} data ({})",
            format.kind,
            format.kind.column_list(text_field)
        );
        if format.kind == FormatKind::PromptCompletion && method.accepts(FormatKind::PromptOnly) {
            found.push_str(
                "; to pass the completion to reward functions, rename the column (e.g. to `solution`)",
            );
        }
        problems.push(Problem::dataset(
            format!("{method} data: {}", accepted.join(" or ")),
            found,
        ));
    }
    row_problems.into_iter().for_each(|p| problems.push(p));
    let count = |kind: FormatKind| shapes.iter().flatten().filter(|s| s.kind == kind).count();
    let format_rows = count(format.kind);
    for (index, (row, shape)) in raw.rows.iter().zip(&shapes).enumerate() {
        let Some(shape) = shape else { continue };
        if shape.kind != format.kind && !needs_subset(shape.kind, format.kind, text_field) {
            problems.push(locate(
                index,
                Problem::dataset(
                    format!(
                        "a {} row like {format_rows} of the {} rows ({})",
                        format.kind,
                        raw.rows.len(),
                        format.kind.column_list(text_field)
                    ),
                    format!(
                        "a {} row ({})",
                        shape.kind,
                        shape.kind.column_list(text_field)
                    ),
                ),
            ));
        } else if shape.kind == format.kind
            && shape.style.is_some_and(|style| style != format.style)
        {
            let style_rows = shapes
                .iter()
                .flatten()
                .filter(|s| s.kind == format.kind && s.style == Some(format.style))
                .count();
            problems.push(locate(
                index,
                Problem::dataset(
                    format!(
                        "{} values like {style_rows} of the {} rows ({})",
                        format.style,
                        raw.rows.len(),
                        style_values(format.style)
                    ),
                    format!(
                        "{} values ({})",
                        format.style.other(),
                        style_values(format.style.other())
                    ),
                ),
            ));
        } else {
            for problem in check_row(row, format, text_field) {
                problems.push(locate(index, problem));
            }
        }
    }
    Some(format)
}

/// Whether a row of `kind` only lacks columns of `dataset` (so its missing or null columns are
/// the problem to report, rather than its format).
fn needs_subset(kind: FormatKind, dataset: FormatKind, text_field: &str) -> bool {
    let dataset_columns = dataset.columns(Style::Standard, text_field);
    kind.columns(Style::Standard, text_field)
        .iter()
        .all(|c| dataset_columns.contains(c))
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
