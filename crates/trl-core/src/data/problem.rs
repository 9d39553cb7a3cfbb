//! What is wrong with a dataset, said so that the user can find the row and fix it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// How many problems a report lists before it only counts the rest.
pub const MAX_LISTED_PROBLEMS: usize = 50;

/// Where a row sits in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Position {
    /// 1-based line of a JSON lines file (where the row's object starts).
    Line(usize),
    /// 1-based record of a JSON array or a Parquet file.
    Row(usize),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(line) => write!(f, "line {line}"),
            Position::Row(row) => write!(f, "row {row}"),
        }
    }
}

/// One thing wrong with the data: where (file, line or row, column, place inside the value),
/// what was expected and what was found. Dataset-wide problems (a format the method does not
/// take) have no file; file-wide ones (a corrupt Parquet file) have no position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: Option<PathBuf>,
    pub position: Option<Position>,
    pub column: Option<String>,
    /// Where inside the column's value, e.g. `message 2`.
    pub place: Option<String>,
    pub expected: String,
    pub found: String,
}

impl Problem {
    /// A problem with the dataset as a whole.
    pub fn dataset(expected: impl Into<String>, found: impl Into<String>) -> Self {
        Problem {
            file: None,
            position: None,
            column: None,
            place: None,
            expected: expected.into(),
            found: found.into(),
        }
    }

    /// A problem with a whole file (unreadable, empty, not Parquet).
    pub fn file(path: &Path, expected: impl Into<String>, found: impl Into<String>) -> Self {
        Problem {
            file: Some(path.to_path_buf()),
            ..Problem::dataset(expected, found)
        }
    }

    /// A problem with one row of a file.
    pub fn row(
        path: &Path,
        position: Position,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Problem {
            position: Some(position),
            ..Problem::file(path, expected, found)
        }
    }

    /// The same problem, narrowed to a column.
    pub fn in_column(mut self, column: &str) -> Self {
        self.column = Some(column.to_owned());
        self
    }

    /// The same problem, narrowed to a place inside the column's value.
    pub fn at(mut self, place: impl Into<String>) -> Self {
        self.place = Some(place.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut wrote_location = false;
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            wrote_location = true;
        }
        if let Some(position) = &self.position {
            write!(f, " {position}")?;
        }
        if let Some(column) = &self.column {
            let separator = if wrote_location { ", " } else { "" };
            write!(f, "{separator}column \"{column}\"")?;
            wrote_location = true;
        }
        if let Some(place) = &self.place {
            write!(f, ", {place}")?;
        }
        if wrote_location {
            write!(f, ": ")?;
        }
        write!(f, "expected {}, found {}", self.expected, self.found)
    }
}

/// Problems as they are found: the first [`MAX_LISTED_PROBLEMS`] are kept, the rest counted.
pub(crate) type ProblemList = Capped<Problem>;

/// The first [`MAX_LISTED_PROBLEMS`] items pushed, and how many were pushed in all: what a report
/// needs, in memory that does not grow with the data.
#[derive(Debug, Clone)]
pub(crate) struct Capped<T> {
    listed: Vec<T>,
    total: usize,
}

impl<T> Default for Capped<T> {
    fn default() -> Self {
        Capped {
            listed: Vec::new(),
            total: 0,
        }
    }
}

impl<T> Capped<T> {
    pub(crate) fn push(&mut self, item: T) {
        self.total += 1;
        if self.listed.len() < MAX_LISTED_PROBLEMS {
            self.listed.push(item);
        }
    }

    /// Everything pushed into `later`, as if pushed here after what is here already.
    pub(crate) fn append(&mut self, later: Capped<T>) {
        let unlisted = later.total - later.listed.len();
        for item in later.listed {
            self.push(item);
        }
        self.total += unlisted;
    }

    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// The same list with every kept item turned into another.
    pub(crate) fn map<U>(self, f: impl FnMut(T) -> U) -> Capped<U> {
        Capped {
            listed: self.listed.into_iter().map(f).collect(),
            total: self.total,
        }
    }
}

impl Capped<Problem> {
    /// The listed problems in reading order (dataset-wide ones first, then by file and row),
    /// and the count of all.
    pub(crate) fn into_parts(mut self) -> (Vec<Problem>, usize) {
        self.listed
            .sort_by(|a, b| (&a.file, a.position).cmp(&(&b.file, b.position)));
        (self.listed, self.total)
    }
}

/// A short description of a JSON value for "found ...": its type, and the value when short.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => format!("the boolean {flag}"),
        Value::Number(number) => format!("the number {number}"),
        Value::String(text) if text.is_empty() => "an empty string".to_owned(),
        Value::String(text) => format!("the string {}", quote(text)),
        Value::Array(items) if items.is_empty() => "an empty list".to_owned(),
        Value::Array(items) if items.len() == 1 => "a list of 1 item".to_owned(),
        Value::Array(items) => format!("a list of {} items", items.len()),
        Value::Object(map) if map.is_empty() => "an empty object".to_owned(),
        Value::Object(map) => {
            let keys: Vec<&str> = map.keys().map(String::as_str).take(6).collect();
            let more = if map.len() > keys.len() { ", ..." } else { "" };
            format!("an object with keys {}{more}", keys.join(", "))
        }
    }
}

/// "found ..." for a value a check needed: its description, or "no such column" when absent.
pub(crate) fn missing(value: Option<&Value>) -> String {
    value.map_or_else(|| "no such column".to_owned(), describe)
}

/// "N problem(s):" and one problem a line, then "... and M more": how a report and an error
/// list what was found.
pub(crate) fn listing(problems: &[Problem], total: usize) -> String {
    let mut text = format!("{total} problem{}:", if total == 1 { "" } else { "s" });
    for problem in problems {
        text.push_str(&format!("\n  {problem}"));
    }
    if total > problems.len() {
        text.push_str(&format!("\n  ... and {} more", total - problems.len()));
    }
    text
}

/// A string in double quotes, cut to 40 characters.
pub fn quote(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    let mut cut: String = text.chars().take(MAX_CHARS).collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        cut.push_str("...");
    }
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn displays_every_part_of_the_location() {
        let problem = Problem::row(Path::new("d.jsonl"), Position::Line(3), "a string", "null")
            .in_column("chosen")
            .at("message 2");
        assert_eq!(
            problem.to_string(),
            "d.jsonl line 3, column \"chosen\", message 2: expected a string, found null"
        );
        let dataset = Problem::dataset("preference data", "prompt-only data");
        assert_eq!(
            dataset.to_string(),
            "expected preference data, found prompt-only data"
        );
        let file = Problem::file(Path::new("x.parquet"), "a Parquet file", "3 bytes");
        assert_eq!(
            file.to_string(),
            "x.parquet: expected a Parquet file, found 3 bytes"
        );
    }

    #[test]
    fn keeps_the_first_problems_and_counts_the_rest() {
        let mut list = ProblemList::default();
        for i in 0..MAX_LISTED_PROBLEMS + 7 {
            list.push(Problem::dataset("x", i.to_string()));
        }
        let (listed, total) = list.into_parts();
        assert_eq!(listed.len(), MAX_LISTED_PROBLEMS);
        assert_eq!(total, MAX_LISTED_PROBLEMS + 7);
        assert_eq!(listed[0].found, "0");
    }

    #[test]
    fn appending_keeps_the_first_pushed_and_counts_all() {
        let pushed = |range: std::ops::Range<usize>| {
            let mut list = Capped::default();
            range.for_each(|i| list.push(i));
            list
        };
        let mut list = pushed(0..30);
        list.append(pushed(30..100));
        assert_eq!(list.listed, (0..MAX_LISTED_PROBLEMS).collect::<Vec<_>>());
        assert_eq!(list.total, 100);
    }

    #[test]
    fn describes_values_briefly() {
        assert_eq!(describe(&json!(null)), "null");
        assert_eq!(describe(&json!(42)), "the number 42");
        assert_eq!(describe(&json!([])), "an empty list");
        assert_eq!(describe(&json!({"a": 1})), "an object with keys a");
        let long = "x".repeat(50);
        assert_eq!(
            describe(&json!(long)),
            format!("the string \"{}...\"", "x".repeat(40))
        );
    }
}
