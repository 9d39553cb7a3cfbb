//! Pushing a folder to the Hugging Face Hub through its HTTP API, as `huggingface_hub`'s
//! `upload_folder` does, and the model card that goes with it.
//!
//! One push is one commit on `main`: create the repo if missing (`repo.rs`), ask the Hub which
//! files are large (`commit.rs`'s preupload), upload those through git-lfs (`lfs.rs`), then
//! commit every file at once. Any failure before the commit leaves the repo as it was.
//! The entry point is [`HubClient`].
//!
//! The token ([`HubSettings`]) goes only to the Hub, in the Authorization header; every error
//! message is redacted ([`redact`]). No burn, no trl-core: the `trl` binary's training
//! commands and `trl push` call [`HubClient::push_folder`].

mod card;
mod commit;
mod error;
mod facts;
mod files;
mod http;
mod lfs;
mod push;
mod repo;
mod settings;
#[cfg(feature = "test-server")]
pub mod testing;

pub use card::{MARKER, RunInfo, is_hub_id, model_card};
pub use error::{Error, Result, redact};
pub use facts::{FolderFacts, Library, folder_facts, readme_license};
pub use files::{UploadFile, folder_files};
pub use http::RetryPolicy;
pub use push::{FolderPush, HubClient, PushReport, README, write_model_card};
pub use repo::check_repo_id;
pub use settings::{DEFAULT_ENDPOINT, HubSettings};
