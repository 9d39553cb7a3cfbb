//! The token: read from the file `hf auth login` writes, and kept out of every message.

use std::fs;
use std::path::Path;

use crate::{Error, Result};

pub(super) fn read_token_file(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(content) => Ok(Some(content.trim().to_owned()).filter(|token| !token.is_empty())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::io(path, source)),
    }
}

/// Removes secrets from text meant for a user: the token wherever it appears, and the
/// `user:password@` part of any URL.
pub(super) fn redact(text: &str, token: Option<&str>) -> String {
    let mut clean = text.to_owned();
    if let Some(token) = token {
        for secret in [token, token.trim()] {
            if !secret.is_empty() {
                clean = clean.replace(secret, "<token>");
            }
        }
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
    use crate::hub::test_hub::TOKEN;

    #[test]
    fn redact_removes_the_token_and_url_credentials() {
        let text = format!("GET https://me:{TOKEN}@hub.test/x failed: Bearer {TOKEN}");
        let clean = redact(&text, Some(TOKEN));
        assert_eq!(
            clean,
            "GET https://<credentials>@hub.test/x failed: Bearer <token>"
        );
        assert_eq!(
            redact("see https://hub.test/a@b", None),
            "see https://hub.test/a@b"
        );
    }
}
