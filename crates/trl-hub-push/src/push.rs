//! A push: the repo made sure of, then one commit of a set of files (preupload, large files
//! through LFS, commit). What callers use: [`HubClient`].

use std::path::Path;

use crate::card::{MARKER, RunInfo, model_card};
use crate::commit::{UploadMode, commit_payload, create_commit, upload_modes};
use crate::error::{Error, Result};
use crate::facts::folder_facts;
use crate::files::{UploadFile, folder_files};
use crate::http::{Client, RetryPolicy};
use crate::lfs::upload_lfs_files;
use crate::repo::{create_repo, full_repo_id};
use crate::settings::HubSettings;

/// The model card's file name.
pub const README: &str = "README.md";

/// A connection to the Hub for pushes (blocking; one request at a time).
pub struct HubClient {
    client: Client,
}

/// What a commit did.
#[derive(Debug, Clone)]
pub struct PushReport {
    /// `namespace/name`.
    pub repo_id: String,
    /// The commit's URL as the Hub gave it.
    pub commit_url: String,
    /// Paths committed inline and through LFS, and those the repo's `.gitignore` dropped.
    pub regular: Vec<String>,
    pub lfs: Vec<String>,
    pub ignored: Vec<String>,
}

/// What of a folder a push takes, and where it puts it.
#[derive(Debug, Clone, Default)]
pub struct FolderPush {
    /// A folder in the repo ("" for the root, else `name/`).
    pub path_in_repo: String,
    /// Take the top-level `checkpoint-*/` folders too.
    pub include_checkpoints: bool,
}

impl HubClient {
    /// A client for `settings` retrying as `retry` says.
    pub fn new(settings: HubSettings, retry: RetryPolicy) -> Self {
        HubClient {
            client: Client::new(settings, retry),
        }
    }

    /// Makes sure the model repo exists: `id` completed with the token's user when it has no
    /// namespace, created with `private`'s visibility if missing. Returns the full id and
    /// whether it was created. Fails (401/403/404...) before anything is uploaded.
    pub fn ensure_repo(&self, id: &str, private: Option<bool>) -> Result<(String, bool)> {
        let full = full_repo_id(&self.client, id)?;
        let created = create_repo(&self.client, &full, private)?;
        Ok((full, created))
    }

    /// Commits `files` to `repo_id`'s `main` with `message`. Large files are uploaded first;
    /// if any upload fails the commit is not made, and the error names the file.
    pub fn push_files(
        &self,
        repo_id: &str,
        files: &[UploadFile],
        message: &str,
    ) -> Result<PushReport> {
        let modes = upload_modes(&self.client, repo_id, files)?;
        let pick = |mode: UploadMode| -> Vec<&UploadFile> {
            files
                .iter()
                .zip(&modes)
                .filter(|(_, m)| **m == mode)
                .map(|(f, _)| f)
                .collect()
        };
        let large = pick(UploadMode::Lfs);
        upload_lfs_files(&self.client, repo_id, &large)?;
        let body = commit_payload(message, files, &modes)?;
        let commit_url = create_commit(&self.client, repo_id, &body)?;
        let names = |list: Vec<&UploadFile>| list.iter().map(|f| f.path_in_repo.clone()).collect();
        Ok(PushReport {
            repo_id: repo_id.to_owned(),
            commit_url,
            regular: names(pick(UploadMode::Regular)),
            lfs: names(large),
            ignored: names(pick(UploadMode::Ignored)),
        })
    }

    /// Commits the files of `dir` (see `files.rs` for what is skipped; the skipped entries are
    /// returned). At the repo root, a folder without `README.md` gets a generated model card
    /// (uploaded, not written into `dir`).
    pub fn push_folder(
        &self,
        repo_id: &str,
        dir: &Path,
        options: &FolderPush,
        message: &str,
    ) -> Result<(PushReport, Vec<String>)> {
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "not a folder"),
            ));
        }
        let (mut files, skipped) =
            folder_files(dir, &options.path_in_repo, options.include_checkpoints)?;
        if options.path_in_repo.is_empty() && !dir.join(README).exists() {
            let card = model_card(repo_id, &folder_facts(dir)?, &RunInfo::default());
            files.push(UploadFile::from_bytes(README.into(), card.into_bytes()));
        }
        if files.is_empty() {
            return Err(Error::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no file to push in this folder",
                ),
            ));
        }
        Ok((self.push_files(repo_id, &files, message)?, skipped))
    }
}

/// Writes the model card of a training run into `dir/README.md` (as transformers' Trainer
/// does before its push), unless `dir` holds a README that trl-rs did not write: that one is
/// the user's and is kept. Returns whether the card was written.
pub fn write_model_card(dir: &Path, repo_id: &str, run: &RunInfo) -> Result<bool> {
    let path = dir.join(README);
    if let Ok(existing) = std::fs::read_to_string(&path)
        && !existing.contains(MARKER)
    {
        return Ok(false);
    }
    let card = model_card(repo_id, &folder_facts(dir)?, run);
    std::fs::write(&path, card).map_err(|e| Error::io(&path, e))?;
    Ok(true)
}
