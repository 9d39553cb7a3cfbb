//! Checking every row of a training split before any training starts: `trl validate` prints
//! the report, and every training command loads its data through [`load_dataset`], which
//! refuses data with any problem.
//!
//! The format is decided by the rows, not by the first one alone: each row is recognised on its
//! own, the most common format is the dataset's, and every row that differs is reported.

use std::path::PathBuf;

use super::dataset::Dataset;
#[cfg(test)]
use super::format::FormatKind;
use super::format::Row;
use super::method::Method;
use super::problem::listing;
use super::report::ValidationReport;
use super::scan::{ScanOptions, Scanned, scan_files, scan_rows};
use super::source::{DatasetArgs, resolve_split_files};
use super::stream::PIECE_BYTES;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

impl Dataset {
    /// Checks rows built in memory (tests, embedders) as if they came from a file; rows are
    /// numbered from 1.
    pub fn from_rows(rows: Vec<Row>, method: Method, text_field: &str) -> Result<Dataset> {
        let path = PathBuf::from("<rows>");
        let options = ScanOptions {
            keep_rows: true,
            ..ScanOptions::new(method, text_field)
        };
        let scanned = scan_rows(rows, &path, options);
        finish(vec![path], scanned, text_field, "the rows", method)
    }
}

/// Reads the split `args` names and checks every row for `method`; with a tokenizer (and the
/// `max_length` to compare with), also measures the token length of every row. `Err` only when
/// the data cannot be found (no such file, folder, split or hub dataset); everything wrong with
/// the data itself is in the report.
///
/// JSON lines and Parquet files are read a few MiB (or rows) at a time and checked on every
/// core; memory holds the rows being checked and the report, whatever the size of the split. A
/// JSON array (or a config's `field`) is one document and is parsed whole.
pub fn validate(
    args: &DatasetArgs,
    method: Method,
    tokenizer: Option<(&Tokenizer, Option<usize>)>,
) -> Result<ValidationReport> {
    validate_in_pieces(args, method, tokenizer, PIECE_BYTES)
}

fn validate_in_pieces(
    args: &DatasetArgs,
    method: Method,
    tokenizer: Option<(&Tokenizer, Option<usize>)>,
    piece_bytes: usize,
) -> Result<ValidationReport> {
    let split = resolve_split_files(args)?;
    let options = ScanOptions {
        json_field: split.json_field.as_deref(),
        tokenizer,
        piece_bytes,
        ..ScanOptions::new(method, &args.dataset_text_field)
    };
    let scanned = scan_files(&split.files, options);
    let (problems, problem_count) = scanned.problems.into_parts();
    Ok(ValidationReport {
        dataset: args.dataset_name.clone(),
        split: args.dataset_train_split.clone(),
        method,
        files: split.files,
        rows: scanned.rows,
        format: scanned.format,
        problems,
        problem_count,
        token_lengths: scanned.token_lengths,
    })
}

/// Reads the split `args` names for `method`, failing with every problem found unless all rows
/// are valid. Training commands load their data through this.
pub fn load_dataset(args: &DatasetArgs, method: Method) -> Result<Dataset> {
    let split = resolve_split_files(args)?;
    let options = ScanOptions {
        json_field: split.json_field.as_deref(),
        keep_rows: true,
        ..ScanOptions::new(method, &args.dataset_text_field)
    };
    let scanned = scan_files(&split.files, options);
    let what = format!(
        "`{}` (split {})",
        args.dataset_name, args.dataset_train_split
    );
    finish(
        split.files,
        scanned,
        &args.dataset_text_field,
        &what,
        method,
    )
}

/// The dataset, or an error listing every problem.
fn finish(
    files: Vec<PathBuf>,
    scanned: Scanned,
    text_field: &str,
    what: &str,
    method: Method,
) -> Result<Dataset> {
    match scanned.format {
        Some(format) if scanned.problems.total() == 0 => {
            let (origins, rows) = scanned
                .kept
                .into_iter()
                .map(|(file, position, row)| ((file, position), row))
                .unzip();
            Ok(Dataset::new(
                format,
                text_field.to_owned(),
                files,
                rows,
                origins,
            ))
        }
        _ => {
            let (listed, total) = scanned.problems.into_parts();
            let message = format!(
                "{what} cannot be used for {method}: {}",
                listing(&listed, total)
            );
            Err(Error::Data { message })
        }
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
