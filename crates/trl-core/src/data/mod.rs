//! Training data in TRL's formats, read from files, folders or the hub and checked row by row.
//!
//! - [`format`](FormatKind): the formats (language modeling, prompt-only, prompt-completion,
//!   preference with an explicit or implicit prompt, unpaired preference), standard or
//!   conversational, and the rules each row must follow;
//! - [`Method`]: which formats each TRL method trains on;
//! - [`DatasetArgs`] / [`resolve_split_files`]: `--dataset_name`, `--dataset_config` and
//!   `--dataset_train_split` resolved to files the way `datasets.load_dataset` resolves them;
//! - [`validate`] (what `trl validate` prints) and [`load_dataset`] (what training commands call):
//!   every row read and checked, every problem named by file, line or row, and column; files are
//!   read a few MiB at a time and checked on every core, so `validate` runs in bounded memory
//!   on a split of any size;
//! - [`token_lengths`]: token lengths under the tokenizer and chat template;
//! - [`token_cache`]: tokenized examples cached on disk, keyed by the content of the data, the
//!   tokenizer files and the options;
//! - [`extract_prompt`], [`maybe_extract_prompt`], [`unpair_preference`]: TRL's rewrites of
//!   preference rows, for the DPO and KTO recipes.
//!
//! A row is a JSON object ([`Row`]); columns that no format uses are kept for the method (GRPO's
//! reward functions read them).

// Module order: each module uses only those above it (tests aside), from reading to checking
// to reporting; no import circles.
//   problem                         positions, problems, their listing (a leaf)
//   messages -> format -> method    the message rules, the formats, which methods take which
//   prompt                          TRL's prompt rewrites (format)
//   glob -> splits -> source        --dataset_name/config/split resolved to files (and hub)
//   parse -> read, stream           bytes to rows; whole files; files piece by piece
//   dataset                         a split that passed every check
//   lengths -> tally -> scan        token lengths; per-row checks summed; files scanned
//   report -> validate              what `trl validate` prints; validate / load_dataset
//   token_cache                     on its own (tokenized examples on disk)
mod dataset;
mod format;
mod glob;
mod lengths;
mod messages;
mod method;
mod parse;
mod problem;
mod prompt;
mod read;
mod report;
mod scan;
mod source;
mod splits;
mod stream;
mod tally;
pub mod token_cache;
mod validate;

pub use dataset::Dataset;
pub use format::{DatasetFormat, FormatKind, Row, Style};
pub use lengths::{TokenLengths, token_lengths};
pub use method::Method;
pub use problem::{MAX_LISTED_PROBLEMS, Position, Problem};
pub use prompt::{extract_prompt, is_conversation, maybe_extract_prompt, unpair_preference};
pub use report::ValidationReport;
pub use source::{DatasetArgs, SplitFiles, resolve_split_files, resolve_split_files_with};
pub use validate::{load_dataset, validate};
