//! Where and how to reach the hub: [`HubOptions`], read from the `HF_*` variables with
//! `huggingface_hub`'s defaults (the variables are listed in the module docs of `hub`).

use std::fmt;
use std::path::{Path, PathBuf};

use super::auth::{read_token_file, redact};
use super::hub_error;
use crate::{Error, Result};

const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where and how to reach the hub. [`HubOptions::from_env`] reads it from the environment;
/// tests and embedders fill the fields directly instead of changing the process environment.
#[derive(Clone)]
pub struct HubOptions {
    /// Base URL of the hub, without a trailing slash (`HF_ENDPOINT`).
    pub endpoint: String,
    /// The hub cache, the folder holding `models--org--name` (`HF_HUB_CACHE`, `$HF_HOME/hub`).
    pub cache_dir: PathBuf,
    /// Token for private and gated repos (`HF_TOKEN`, else the token file). Never printed.
    pub token: Option<String>,
    /// Resolve from the cache only and never touch the network (`HF_HUB_OFFLINE`).
    pub offline: bool,
    /// Draw download progress bars on stderr (off with `HF_HUB_DISABLE_PROGRESS_BARS`).
    pub progress: bool,
}

impl fmt::Debug for HubOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubOptions")
            .field("endpoint", &redact(&self.endpoint, None))
            .field("cache_dir", &self.cache_dir)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("offline", &self.offline)
            .field("progress", &self.progress)
            .finish()
    }
}

impl HubOptions {
    /// Reads the `HF_*` variables with `huggingface_hub`'s defaults (see the module docs),
    /// including the token file. Fails when no home folder is known and `HF_HOME` is unset, or
    /// when the token file exists but cannot be read.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(&|name| std::env::var(name).ok(), std::env::home_dir())
    }

    fn from_vars(var: &dyn Fn(&str) -> Option<String>, home: Option<PathBuf>) -> Result<Self> {
        let set = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        let expand = |value: String| expand_home(&value, home.as_deref());
        let hf_home = match set("HF_HOME") {
            Some(value) => expand(value)?,
            None => {
                let cache_home = match set("XDG_CACHE_HOME") {
                    Some(value) => expand(value)?,
                    None => home.clone().ok_or_else(no_home_error)?.join(".cache"),
                };
                cache_home.join("huggingface")
            }
        };
        let cache_dir = match set("HF_HUB_CACHE").or_else(|| set("HUGGINGFACE_HUB_CACHE")) {
            Some(value) => expand(value)?,
            None => hf_home.join("hub"),
        };
        let endpoint = set("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let token = match set("HF_TOKEN").or_else(|| set("HUGGING_FACE_HUB_TOKEN")) {
            Some(token) => Some(token.trim().to_owned()),
            None => {
                let token_path = match set("HF_TOKEN_PATH") {
                    Some(value) => expand(value)?,
                    None => hf_home.join("token"),
                };
                read_token_file(&token_path)?
            }
        };
        Ok(Self {
            endpoint: endpoint.trim().trim_end_matches('/').to_owned(),
            cache_dir,
            token,
            offline: is_true(var("HF_HUB_OFFLINE")),
            progress: !is_true(var("HF_HUB_DISABLE_PROGRESS_BARS")),
        })
    }
}

pub(super) fn expand_home(value: &str, home: Option<&Path>) -> Result<PathBuf> {
    let rest = match value.strip_prefix('~') {
        Some("") => "",
        Some(rest) if rest.starts_with('/') => rest.trim_start_matches('/'),
        _ => return Ok(PathBuf::from(value)),
    };
    let home = home.ok_or_else(no_home_error)?;
    Ok(if rest.is_empty() {
        home.to_path_buf()
    } else {
        home.join(rest)
    })
}

/// `huggingface_hub`'s reading of boolean variables.
pub(super) fn is_true(value: Option<String>) -> bool {
    value.is_some_and(|value| {
        matches!(
            value.trim().to_ascii_uppercase().as_str(),
            "1" | "ON" | "YES" | "TRUE"
        )
    })
}

pub(super) fn no_home_error() -> Error {
    hub_error(
        "cannot find the home folder: set HF_HOME to the Hugging Face folder (it holds hub/ and token)"
            .into(),
    )
}

#[cfg(test)]
#[path = "options_tests.rs"]
mod tests;
