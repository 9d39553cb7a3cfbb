//! `trl push FOLDER namespace/name`: pushes any folder (a trained model, a LoRA adapter, GGUF
//! files) to the Hugging Face Hub in one commit, creating the repo if missing. A folder without
//! `README.md` gets a generated model card (a README that is there is pushed unchanged). See
//! the `trl-hub-push` crate for the protocol and what is skipped.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use trl_hub_push::{FolderPush, HubClient, HubSettings, RetryPolicy};

/// Arguments of `trl push`.
#[derive(Args)]
pub struct PushArgs {
    /// The folder to push.
    folder: PathBuf,
    /// The repo: `namespace/name`, or `name` under the token's user.
    repo_id: String,
    /// Token with write access; else HF_TOKEN, else the token file of `hf auth login`.
    #[arg(long = "hub_token", alias = "token", value_name = "TOKEN")]
    hub_token: Option<String>,
    /// Create the repo private (an existing repo keeps its visibility).
    #[arg(long = "private", alias = "hub_private_repo")]
    private: bool,
    /// The commit's message.
    #[arg(long = "commit_message", default_value = "Upload folder with trl-rs")]
    commit_message: String,
    /// Also push the top-level `checkpoint-*/` folders (skipped by default: they hold optimizer states).
    #[arg(long = "include_checkpoints")]
    include_checkpoints: bool,
}

// Written by hand so that the token never reaches a debug print.
impl std::fmt::Debug for PushArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushArgs")
            .field("folder", &self.folder)
            .field("repo_id", &self.repo_id)
            .field("private", &self.private)
            .finish_non_exhaustive()
    }
}

/// Pushes the folder and prints where it went.
pub fn run(args: &PushArgs) -> Result<()> {
    if !args.folder.is_dir() {
        anyhow::bail!("{} is not a folder", args.folder.display());
    }
    trl_hub_push::check_repo_id(&args.repo_id)?;
    let settings = HubSettings::from_env(args.hub_token.as_deref())?;
    let endpoint = settings.endpoint.clone();
    let client = HubClient::new(settings, RetryPolicy::default());
    let (repo_id, created) = client.ensure_repo(&args.repo_id, args.private.then_some(true))?;
    if created {
        eprintln!("created repo {endpoint}/{repo_id}");
    }
    let options = FolderPush {
        path_in_repo: String::new(),
        include_checkpoints: args.include_checkpoints,
    };
    let (report, skipped) =
        client.push_folder(&repo_id, &args.folder, &options, &args.commit_message)?;
    if !args.folder.join(trl_hub_push::README).exists() {
        eprintln!("README.md: a model card was generated");
    }
    if !skipped.is_empty() {
        // .git/, .cache/ and half-written checkpoints never go; checkpoint-*/ on request.
        eprintln!(
            "not pushed: {} (checkpoint-*/ folders go with --include_checkpoints)",
            skipped.join(", ")
        );
    }
    println!(
        "pushed {} files ({} through LFS) to {endpoint}/{repo_id}: {}",
        report.regular.len() + report.lfs.len(),
        report.lfs.len(),
        report.commit_url
    );
    Ok(())
}
