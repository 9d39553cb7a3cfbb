//! The cache layout `huggingface_hub` writes and reads: `<cache>/models--org--name/
//! {refs/<revision>, snapshots/<commit>/<file>}`, and the files of a folder in it.

use std::fs;
use std::path::Path;

use hf_hub::RepoType;

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RepoKind {
    Model,
    Dataset,
}

impl RepoKind {
    pub(super) fn noun(self) -> &'static str {
        match self {
            RepoKind::Model => "model",
            RepoKind::Dataset => "dataset",
        }
    }

    pub(super) fn repo_type(self) -> RepoType {
        match self {
            RepoKind::Model => RepoType::Model,
            RepoKind::Dataset => RepoType::Dataset,
        }
    }

    /// The repo's folder in the cache: `models--org--name`, `datasets--org--name`.
    pub(super) fn folder_name(self, id: &str) -> String {
        format!("{}s--{id}", self.noun()).replace('/', "--")
    }
}

/// The commit `refs/<revision>` points to; a full commit hash names its snapshot directly.
pub(super) fn cached_commit(repo_dir: &Path, revision: &str) -> Option<String> {
    if let Ok(commit) = fs::read_to_string(repo_dir.join("refs").join(revision)) {
        let commit = commit.trim();
        return (!commit.is_empty()).then(|| commit.to_owned());
    }
    let is_hash = revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit());
    (is_hash && repo_dir.join("snapshots").join(revision).is_dir()).then(|| revision.to_owned())
}

/// Files under `root` as sorted `/`-separated relative paths, skipping hidden entries and not
/// entering linked folders (snapshot files are links to blobs and are followed).
pub(super) fn list_files(root: &Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let entries = fs::read_dir(&dir).map_err(|source| Error::io(&dir, source))?;
        for entry in entries {
            let entry = entry.map_err(|source| Error::io(&dir, source))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let relative = format!("{prefix}{name}");
            let is_real_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
            if is_real_dir {
                pending.push((entry.path(), format!("{relative}/")));
            } else if entry.path().is_file() {
                found.push(relative);
            }
        }
    }
    found.sort();
    Ok(found)
}
