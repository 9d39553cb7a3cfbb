//! A split that passed every check, with where each row came from: what training commands get
//! from [`super::load_dataset`] (built there, in `validate`).

use std::path::{Path, PathBuf};

use super::format::{DatasetFormat, Row};
use super::problem::Position;

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
    /// The rows, in file order (files in the order of the split).
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The rows, for a recipe that rewrites them (prompt extraction, unpairing).
    pub fn into_rows(self) -> Vec<Row> {
        self.rows
    }

    /// How many rows the split has.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the split has no rows.
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

impl Dataset {
    /// The rows of a split that passed every check, `origins` holding (index into `files`,
    /// position) per row.
    pub(crate) fn new(
        format: DatasetFormat,
        text_field: String,
        files: Vec<PathBuf>,
        rows: Vec<Row>,
        origins: Vec<(usize, Position)>,
    ) -> Self {
        Dataset {
            format,
            text_field,
            files,
            rows,
            origins,
        }
    }
}
