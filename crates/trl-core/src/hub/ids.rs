//! What a user's model or dataset argument names: an existing local path, or a hub id checked
//! as `huggingface_hub` checks it; and which repo paths stay inside a folder.

use std::path::PathBuf;

use super::hub_error;
use super::options::expand_home;
use crate::Result;

/// What a user's model or dataset argument names.
pub(super) enum Location {
    Local(PathBuf),
    Hub,
}

/// An existing path wins (as `transformers` does); a path-like name that does not exist is an
/// error rather than a doomed hub request; anything else must be a valid hub id.
pub(super) fn locate(id_or_path: &str) -> Result<Location> {
    if id_or_path.trim().is_empty() {
        return Err(hub_error(
            "empty model or dataset name: pass a local path or a hub id such as `org/name`".into(),
        ));
    }
    let path = if id_or_path == "~" || id_or_path.starts_with("~/") {
        expand_home(id_or_path, std::env::home_dir().as_deref())?
    } else {
        PathBuf::from(id_or_path)
    };
    if path.exists() {
        return Ok(Location::Local(path));
    }
    if looks_like_path(id_or_path) {
        return Err(hub_error(format!(
            "local path `{id_or_path}` does not exist (a hub id has the form `org/name`)"
        )));
    }
    if !is_valid_repo_id(id_or_path) {
        return Err(hub_error(format!(
            "`{id_or_path}` is neither an existing local path nor a valid hub id: hub ids look like \
             `org/name`, made of letters, digits, `-`, `_` and `.`, without `--` or `..`"
        )));
    }
    Ok(Location::Hub)
}

pub(super) fn looks_like_path(name: &str) -> bool {
    ["./", "../", "/", "~"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || name == "."
        || name == ".."
        || name.contains('\\')
        || name.matches('/').count() > 1
}

/// `huggingface_hub`'s `validate_repo_id`: `name` or `org/name`, each part of word characters,
/// `-` and `.`, starting and ending with a word character; no `--`, no `..`, at most 96 chars.
pub(super) fn is_valid_repo_id(id: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let valid_part = |part: &str| {
        part.chars().all(|c| is_word(c) || c == '-' || c == '.')
            && part.starts_with(is_word)
            && part.ends_with(is_word)
    };
    id.split('/').count() <= 2
        && id.split('/').all(valid_part)
        && !id.contains("--")
        && !id.contains("..")
        && id.len() <= 96
}

/// A relative `/`-separated path that stays inside the folder it is joined to.
pub(super) fn is_safe_repo_path(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\\')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}
