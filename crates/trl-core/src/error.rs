//! The one error type of trl-core. Every message says what was expected and what to do.

use std::path::PathBuf;

/// Errors a user can cause (bad files, bad configs, unknown devices) or meet (network).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written. The cause is part of the message and deliberately
    /// not the error's `source()` (nor is the field named `source`): a printed chain, such as
    /// anyhow's `{:#}` in the `trl` binary, would otherwise repeat it.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// A JSON file is not valid JSON or does not have the expected shape (the cause is in the
    /// message only, as for [`Error::Io`]).
    #[error("{path}: invalid JSON: {cause}")]
    Json {
        path: PathBuf,
        cause: serde_json::Error,
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
    /// A reward function of an online method failed (its message names the function or
    /// command and, for a command, shows the end of its stderr).
    #[error("{message}")]
    Reward { message: String },
}

/// Result with trl-core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause: source,
        }
    }

    /// Wraps a JSON error with the file it came from.
    pub fn json(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        Error::Json {
            path: path.into(),
            cause: source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error and its sources joined by ": ", as anyhow's `{:#}` prints them.
    fn chain(error: &Error) -> String {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    }

    #[test]
    fn an_io_cause_is_printed_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let cause = std::fs::read(&path).unwrap_err();
        let cause_text = cause.to_string();
        let printed = chain(&Error::io(&path, cause));
        assert_eq!(printed.matches(&cause_text).count(), 1, "{printed}");
        assert!(
            printed.starts_with(&path.display().to_string()),
            "{printed}"
        );
    }

    #[test]
    fn a_json_cause_is_printed_once() {
        let cause = serde_json::from_str::<serde_json::Value>("{\"a\": ").unwrap_err();
        let cause_text = cause.to_string();
        let printed = chain(&Error::json("config.json", cause));
        assert_eq!(printed.matches(&cause_text).count(), 1, "{printed}");
        assert!(printed.contains("config.json: invalid JSON"), "{printed}");
    }
}
