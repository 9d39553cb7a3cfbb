//! What can go wrong while pushing, each message saying what to do. No message ever holds
//! the token: every text that comes from a server or the network goes through [`redact`].

use std::path::{Path, PathBuf};

/// A failed push. Nothing is committed unless [`crate::push_folder`] returned `Ok`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No token anywhere: checked before any request is made.
    #[error(
        "no Hugging Face token: pass --hub_token, set HF_TOKEN, or run `hf auth login` \
         (it writes {token_file}); a token with write access is needed to push"
    )]
    NoToken { token_file: String },
    /// A repo id that the Hub would refuse.
    #[error("invalid Hub repo id {id:?}: {reason}")]
    RepoId { id: String, reason: String },
    /// The server answered with an error status (after retries, for the retried statuses).
    #[error("{what}: {hint} (HTTP {status}){message}")]
    Status {
        what: String,
        status: u16,
        hint: String,
        message: String,
    },
    /// The server could not be reached (after retries).
    #[error("{what}: network failure after {attempts} attempts: {message}")]
    Network {
        what: String,
        attempts: usize,
        message: String,
    },
    /// The server answered something this client cannot read.
    #[error("{what}: unexpected answer from the Hub: {message}")]
    Protocol { what: String, message: String },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An I/O error naming its file.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// This crate's result.
pub type Result<T> = std::result::Result<T, Error>;

/// Removes the token from text meant for a user, wherever it appears (a server echoing the
/// Authorization header, a proxy message), and the `user:password@` part of any URL.
pub fn redact(text: &str, token: &str) -> String {
    let mut clean = text.to_owned();
    let token = token.trim();
    if !token.is_empty() {
        clean = clean.replace(token, "<token>");
    }
    let mut out = String::with_capacity(clean.len());
    let mut rest = clean.as_str();
    while let Some(scheme_end) = rest.find("://") {
        let (head, tail) = rest.split_at(scheme_end + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("<credentials>");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_removes_the_token_and_url_credentials() {
        let text = "PUT https://me:hf_abc@hub.test/x failed: Bearer hf_abc";
        assert_eq!(
            redact(text, "hf_abc"),
            "PUT https://<credentials>@hub.test/x failed: Bearer <token>"
        );
        assert_eq!(
            redact("see https://hub.test/a@b", ""),
            "see https://hub.test/a@b"
        );
    }
}
