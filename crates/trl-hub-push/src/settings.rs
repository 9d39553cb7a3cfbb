//! Where to push and with which token, read as `huggingface_hub` reads them: the token from
//! `--hub_token`, else `HF_TOKEN`, else the file `HF_TOKEN_PATH` (default `$HF_HOME/token`,
//! `$HF_HOME` defaulting to `$XDG_CACHE_HOME/huggingface` or `~/.cache/huggingface`: what
//! `hf auth login` writes); the server from `HF_ENDPOINT` (default `https://huggingface.co`).
//!
//! trl-core's `hub::HubOptions` reads the same variables for downloads; this crate keeps its
//! own copy so that it does not depend on trl-core (and burn).

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// The Hub's address when `HF_ENDPOINT` is unset.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The server and the token a push uses. `Debug` never shows the token.
#[derive(Clone)]
pub struct HubSettings {
    /// Base URL without a trailing slash.
    pub endpoint: String,
    /// Sent as `Authorization: Bearer ...` to the Hub (never to the storage URLs it hands
    /// out for large files), and never printed.
    pub token: String,
}

impl fmt::Debug for HubSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSettings")
            .field("endpoint", &self.endpoint)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl HubSettings {
    /// Reads the settings from the process environment; `explicit_token` (`--hub_token`)
    /// wins over the environment. No token at all is [`Error::NoToken`], before any request.
    pub fn from_env(explicit_token: Option<&str>) -> Result<Self> {
        Self::from_vars(
            explicit_token,
            &|name| std::env::var(name).ok(),
            std::env::home_dir(),
        )
    }

    /// [`HubSettings::from_env`] over any variable source (tests).
    pub fn from_vars(
        explicit_token: Option<&str>,
        var: &dyn Fn(&str) -> Option<String>,
        home: Option<PathBuf>,
    ) -> Result<Self> {
        let set = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        let endpoint = set("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let token_file = match set("HF_TOKEN_PATH") {
            Some(path) => expand_home(&path, home.as_ref()),
            None => hf_home(&set, home.as_ref()).join("token"),
        };
        let explicit = explicit_token
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .map(str::to_owned);
        let token = match explicit.or_else(|| set("HF_TOKEN").map(|t| t.trim().to_owned())) {
            Some(token) => token,
            None => read_token_file(&token_file)?.ok_or_else(|| Error::NoToken {
                token_file: token_file.display().to_string(),
            })?,
        };
        Ok(HubSettings {
            endpoint: endpoint.trim().trim_end_matches('/').to_owned(),
            token,
        })
    }
}

fn hf_home(set: &dyn Fn(&str) -> Option<String>, home: Option<&PathBuf>) -> PathBuf {
    if let Some(path) = set("HF_HOME") {
        return expand_home(&path, home);
    }
    let cache = match set("XDG_CACHE_HOME") {
        Some(path) => expand_home(&path, home),
        None => home.cloned().unwrap_or_default().join(".cache"),
    };
    cache.join("huggingface")
}

fn expand_home(value: &str, home: Option<&PathBuf>) -> PathBuf {
    match (value.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ if value == "~" && home.is_some() => home.cloned().unwrap_or_default(),
        _ => PathBuf::from(value),
    }
}

fn read_token_file(path: &std::path::Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(
        explicit: Option<&str>,
        vars: &[(&str, &str)],
        home: &std::path::Path,
    ) -> Result<HubSettings> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubSettings::from_vars(
            explicit,
            &|name| vars.get(name).cloned(),
            Some(home.to_path_buf()),
        )
    }

    #[test]
    fn the_token_comes_from_the_flag_then_hf_token_then_the_token_file() {
        let home = tempfile::tempdir().unwrap();
        let hf_home = home.path().join("hf");
        std::fs::create_dir_all(&hf_home).unwrap();
        std::fs::write(hf_home.join("token"), "hf_file\n").unwrap();
        let hf_home_var = hf_home.to_str().unwrap();
        let vars = [("HF_HOME", hf_home_var), ("HF_TOKEN", "hf_env")];
        assert_eq!(
            settings(Some("hf_flag"), &vars, home.path()).unwrap().token,
            "hf_flag"
        );
        assert_eq!(settings(None, &vars, home.path()).unwrap().token, "hf_env");
        let file_only = settings(None, &vars[..1], home.path()).unwrap();
        assert_eq!(file_only.token, "hf_file");
        assert_eq!(file_only.endpoint, DEFAULT_ENDPOINT);
        assert!(!format!("{file_only:?}").contains("hf_file"));
    }

    #[test]
    fn no_token_is_an_error_naming_the_token_file_and_endpoint_is_trimmed() {
        let home = tempfile::tempdir().unwrap();
        let err = settings(None, &[], home.path()).unwrap_err().to_string();
        assert!(
            err.contains("HF_TOKEN") && err.contains(".cache/huggingface/token"),
            "{err}"
        );
        let vars = [("HF_TOKEN", "t"), ("HF_ENDPOINT", "http://127.0.0.1:9/ ")];
        assert_eq!(
            settings(None, &vars, home.path()).unwrap().endpoint,
            "http://127.0.0.1:9"
        );
    }
}
