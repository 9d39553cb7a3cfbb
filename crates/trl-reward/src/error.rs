//! What can go wrong preparing reward data or configuring the method.

/// Errors of this crate; model and I/O errors stay [`trl_core::Error`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A row that cannot be tokenized; `row` is its 0-based index in the dataset, so the
    /// caller can name the file and line.
    #[error("row {row}: {message}")]
    Row { row: usize, message: String },
    /// A config value trl-rs cannot honour.
    #[error("{0}")]
    Config(String),
    /// Loading or running the model.
    #[error(transparent)]
    Model(#[from] trl_core::Error),
}

impl Error {
    pub(crate) fn row(row: usize, message: impl Into<String>) -> Self {
        Error::Row {
            row,
            message: message.into(),
        }
    }
}
