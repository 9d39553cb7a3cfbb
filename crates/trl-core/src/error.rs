//! The one error type of trl-core. Every message says what was expected and what to do.

use std::path::PathBuf;

/// Errors a user can cause (bad files, bad configs, unknown devices) or meet (network).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is not valid JSON or does not have the expected shape.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A model `config.json` names something we cannot build.
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    /// A weight file is missing a tensor, has a wrong shape or dtype, or is truncated.
    #[error("{message}")]
    Weights { message: String },
    /// The tokenizer files cannot be loaded or used.
    #[error("tokenizer: {message}")]
    Tokenizer { message: String },
    /// A chat template failed to parse or render (including `raise_exception` from the template).
    #[error("chat template: {message}")]
    ChatTemplate { message: String },
    /// A model id could not be resolved or downloaded from the hub.
    #[error("hub: {message}")]
    Hub { message: String },
    /// `--device` names a device that is not compiled in or does not parse.
    #[error("device: {message}")]
    Device { message: String },
    /// A dataset cannot be found, read, or used by the method: the message lists every problem
    /// found, each with its file, line or row, and column.
    #[error("dataset: {message}")]
    Data { message: String },
    /// Training stopped on request (Ctrl-C, SIGTERM) after saving a resumable checkpoint.
    #[error(
        "interrupted at step {step}; saved {} (resume with --resume_from_checkpoint true)",
        checkpoint.display()
    )]
    Interrupted { step: u64, checkpoint: PathBuf },
    /// The loss became NaN or infinite; the checkpoints written before are intact.
    #[error(
        "loss became {value} at step {step}; training stopped (earlier checkpoints are intact). \
         Lower learning_rate or check the data"
    )]
    NonFiniteLoss { step: u64, value: f64 },
    /// A generation option is out of range (the message names it) or generation cannot run.
    #[error("generation: {message}")]
    Generation { message: String },
}

/// Result with trl-core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps a JSON error with the file it came from.
    pub fn json(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        Error::Json {
            path: path.into(),
            source,
        }
    }
}
