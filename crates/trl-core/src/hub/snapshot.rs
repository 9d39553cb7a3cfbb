//! Downloading: one revision of one hub repo, filled file by file into the shared cache.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use hf_hub::api::sync::{Api, ApiBuilder};
use hf_hub::{Cache, Repo};

use super::cache::{RepoKind, cached_commit, list_files};
use super::failure::describe;
use super::ids::is_safe_repo_path;
use super::options::HubOptions;
use crate::{Error, Result};

/// Attempts to resume an interrupted download before giving up.
pub(super) const DOWNLOAD_RETRIES: usize = 3;

/// One revision of one hub repo as a cache folder being filled: the code model and dataset
/// resolution share. Online, the repo API gives the commit and the file list; offline, the
/// commit comes from `refs/<revision>` and the file list from the snapshot on disk. As in
/// `huggingface_hub`, a hub that cannot be reached (no answer at all, not an HTTP error) falls
/// back to the cached snapshot of the revision when there is one.
pub(super) struct Snapshot<'a> {
    pub(super) options: &'a HubOptions,
    pub(super) kind: RepoKind,
    pub(super) id: &'a str,
    pub(super) revision: &'a str,
    /// `<cache>/models--org--name`.
    pub(super) repo_dir: PathBuf,
    /// The commit `revision` points to; `None` offline when this revision was never cached.
    pub(super) commit: Option<String>,
    /// Online only.
    pub(super) remote: Option<Remote>,
    /// Why the hub could not be reached, when the cache stands in for it.
    pub(super) unreachable: Option<String>,
}

pub(super) struct Remote {
    pub(super) api: Api,
    /// Every file of the repo at `commit`, `/`-separated.
    pub(super) files: BTreeSet<String>,
}

impl<'a> Snapshot<'a> {
    pub(super) fn open(
        kind: RepoKind,
        id: &'a str,
        revision: &'a str,
        options: &'a HubOptions,
    ) -> Result<Self> {
        let mut snapshot = Snapshot {
            options,
            kind,
            id,
            revision,
            repo_dir: options.cache_dir.join(kind.folder_name(id)),
            commit: None,
            remote: None,
            unreachable: None,
        };
        if !is_safe_repo_path(revision) {
            return Err(snapshot.error(format!(
                "revision `{revision}` is not a branch, tag or commit name"
            )));
        }
        if options.offline {
            snapshot.commit = cached_commit(&snapshot.repo_dir, revision);
            return Ok(snapshot);
        }
        // hf-hub reads a token file next to the cache; the token we resolved replaces it.
        let api = ApiBuilder::from_cache(Cache::new(options.cache_dir.clone()))
            .with_endpoint(options.endpoint.clone())
            .with_token(options.token.clone())
            .with_progress(options.progress)
            .with_retries(DOWNLOAD_RETRIES)
            .with_user_agent("trl-rs", env!("CARGO_PKG_VERSION"))
            .build()
            .map_err(|error| {
                let detail = describe(error).detail;
                snapshot.error(format!("cannot set up the hub client: {detail}"))
            })?;
        let repo = Repo::with_revision(id.to_owned(), kind.repo_type(), revision.to_owned());
        let info = match api.repo(repo).info() {
            Ok(info) => info,
            Err(error) => {
                let failure = describe(error);
                let cached = cached_commit(&snapshot.repo_dir, revision);
                if failure.status.is_some() || cached.is_none() {
                    return Err(snapshot.repo_error(failure));
                }
                snapshot.commit = cached;
                snapshot.unreachable = Some(failure.detail);
                return Ok(snapshot);
            }
        };
        if info.sha.is_empty() || !info.sha.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(snapshot.error(format!(
                "the hub answered an invalid commit `{}` for {} `{id}`",
                info.sha,
                kind.noun()
            )));
        }
        snapshot.commit = Some(info.sha);
        let files = info
            .siblings
            .into_iter()
            .map(|file| file.rfilename)
            .collect();
        snapshot.remote = Some(Remote { api, files });
        Ok(snapshot)
    }

    /// `<repo_dir>/snapshots/<commit>`, once the commit is known.
    pub(super) fn dir(&self) -> Option<PathBuf> {
        let commit = self.commit.as_ref()?;
        Some(self.repo_dir.join("snapshots").join(commit))
    }

    /// Whether the repo has `file` (online) or the cached snapshot has it (offline).
    pub(super) fn has(&self, file: &str) -> bool {
        match (&self.remote, self.dir()) {
            (Some(remote), _) => remote.files.contains(file),
            (None, Some(dir)) => dir.join(file).is_file(),
            (None, None) => false,
        }
    }

    /// The repo's files (online) or the cached snapshot's files (offline), sorted.
    pub(super) fn files(&self) -> Result<Vec<String>> {
        match (&self.remote, self.dir()) {
            (Some(remote), _) => Ok(remote.files.iter().cloned().collect()),
            (None, Some(dir)) if dir.is_dir() => list_files(&dir),
            (None, _) => Ok(Vec::new()),
        }
    }

    /// The local path of `file` in this snapshot, downloading it unless it is cached.
    pub(super) fn fetch(&self, file: &str) -> Result<PathBuf> {
        if !is_safe_repo_path(file) {
            return Err(self.error(format!(
                "{} `{}` names a file `{file}` outside the repo; refusing to write it",
                self.kind.noun(),
                self.id
            )));
        }
        let (Some(dir), Some(commit)) = (self.dir(), self.commit.as_deref()) else {
            return Err(self.missing(file));
        };
        let local = dir.join(file);
        if local.is_file() {
            return Ok(local);
        }
        let Some(remote) = self
            .remote
            .as_ref()
            .filter(|remote| remote.files.contains(file))
        else {
            return Err(self.missing(file));
        };
        // A dangling link left by an interrupted run would make hf-hub's symlink fail.
        if local.symlink_metadata().is_ok() {
            let _ = fs::remove_file(&local);
        }
        // Pinned to the commit, so every file lands in this one snapshot even if the branch moves.
        let pinned = Repo::with_revision(self.id.to_owned(), self.kind.repo_type(), commit.into());
        let downloaded = remote
            .api
            .repo(pinned)
            .download(file)
            .map_err(|error| self.file_error(file, describe(error)))?;
        if downloaded != local {
            return Err(self.error(format!(
                "the hub served `{file}` of {} `{}` from another commit than {commit}; run again",
                self.kind.noun(),
                self.id
            )));
        }
        Ok(local)
    }

    /// Points `refs/<revision>` at the commit, as `huggingface_hub` does, so that offline runs
    /// find this snapshot; drops the `refs/<commit>` that hf-hub writes for pinned downloads.
    pub(super) fn record_revision(&self) -> Result<()> {
        let (Some(commit), Some(_)) = (&self.commit, &self.remote) else {
            return Ok(());
        };
        let refs = self.repo_dir.join("refs");
        let ref_path = refs.join(self.revision);
        if let Some(parent) = ref_path.parent() {
            fs::create_dir_all(parent).map_err(|source| Error::io(parent, source))?;
        }
        fs::write(&ref_path, commit).map_err(|source| Error::io(&ref_path, source))?;
        if self.revision != commit {
            let _ = fs::remove_file(refs.join(commit));
        }
        Ok(())
    }
}
