//! Resolving model and dataset ids to local files through the Hugging Face cache.
//!
//! A name that exists on disk is used as is. Anything else must be a hub id (`org/name` or
//! `name`); its files are downloaded with the `hf-hub` crate into the cache that Python's
//! `huggingface_hub` uses, so both share downloads:
//! `<cache>/models--org--name/{blobs/<etag>, refs/<revision>, snapshots/<commit>/<file>}`
//! (`datasets--org--name` for datasets), snapshot files being symlinks into `blobs/`.
//!
//! The environment means what it means to `huggingface_hub` (read by [`HubOptions::from_env`]):
//! - `HF_HOME`: default `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
//! - `HF_HUB_CACHE`: the cache, default `$HF_HOME/hub`.
//! - `HF_ENDPOINT`: default `https://huggingface.co` (a mirror or a test server).
//! - `HF_TOKEN`, else the file `HF_TOKEN_PATH` (default `$HF_HOME/token`, what `hf auth login`
//!   writes): sent as `Authorization: Bearer ...`, never printed.
//! - `HF_HUB_OFFLINE=1`: no network; ids resolve only from the cache.
//! - `HF_HUB_DISABLE_PROGRESS_BARS=1`: no download progress bars on stderr.
//!
//! Why hf-hub 0.4 (its sync `ureq` API, rustls): it is the crate candle and text-generation
//! tooling use, it writes the shared cache layout with locks and resumable `.part` files, and it
//! needs no async runtime (hf-hub 1.x brings tokio, reqwest and the Xet client). Its gaps, and
//! what this module does about them:
//! - no offline mode: offline resolution reads `refs/` and `snapshots/` here;
//! - `download` fetches again even when the file is cached: the snapshot is checked first;
//! - each file lands in the snapshot of the commit its own response names: every file is fetched
//!   at the commit the repo API returned, so one folder holds them all; hf-hub then writes a
//!   `refs/<commit>` file, removed here (`huggingface_hub` writes only `refs/<revision>`);
//! - its errors carry URLs and server messages: every message is redacted before it leaves;
//! - for a weight file the hub redirects to its CDN, hf-hub's size probe sends the token to that
//!   (Hugging Face-owned) host, where `huggingface_hub` would drop it;
//! - it takes proxies from `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and ignores `NO_PROXY`.
//!
//! One idea per file, in dependency order: [`options`](HubOptions) (the environment) and `auth`
//! (the token, redaction), `ids` (what an argument names), `cache` (the cache layout), `files`
//! (which files make a model or a dataset), `snapshot` (downloading one revision) and `failure`
//! (what a failed request tells the user), and `resolve` (the public entry points).

mod auth;
mod cache;
mod failure;
mod files;
mod ids;
mod options;
mod resolve;
mod snapshot;

pub use options::HubOptions;
pub use resolve::{
    fetch_dataset_file, resolve_dataset_files, resolve_dataset_files_with, resolve_model,
    resolve_model_with,
};

use crate::Error;

fn hub_error(message: String) -> Error {
    Error::Hub { message }
}

#[cfg(test)]
mod test_hub;
