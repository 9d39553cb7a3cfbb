//! The report `trl validate` prints and training commands fail with.

use std::fmt;
use std::path::PathBuf;

use super::format::DatasetFormat;
use super::lengths::TokenLengths;
use super::method::Method;
use super::problem::{Problem, listing};

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
