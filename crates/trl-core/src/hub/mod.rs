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

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

use crate::{Error, Result};

const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
const DEFAULT_REVISION: &str = "main";
/// Attempts to resume an interrupted download before giving up.
const DOWNLOAD_RETRIES: usize = 3;

/// The files trl-rs builds a model and its tokenizer from.
const REQUIRED_MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "tokenizer_config.json"];
/// Fetched when the repo has them.
const OPTIONAL_MODEL_FILES: [&str; 3] = [
    "generation_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
];
const SINGLE_WEIGHTS: &str = "model.safetensors";
const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
/// Extensions of the data files a dataset repo is read from.
const DATA_EXTENSIONS: [&str; 3] = ["jsonl", "json", "parquet"];
/// JSON files `datasets` writes next to the data, which are not data.
const DATASET_METADATA_FILES: [&str; 4] = [
    "dataset_info.json",
    "dataset_infos.json",
    "dataset_dict.json",
    "state.json",
];

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

/// Returns the folder of a model: `id_or_path` itself when it is an existing folder (`revision`
/// is then ignored), else the cache snapshot of hub repo `id_or_path` at `revision` (default
/// `main`) holding `config.json`, the tokenizer files, `model.safetensors` or the index and every
/// shard it lists, and whichever of `generation_config.json`, `special_tokens_map.json` and
/// `chat_template.jinja` the repo has. Offline (`HF_HUB_OFFLINE`), or when the hub cannot be
/// reached at all, the cached snapshot of the revision is used. Options come from the
/// environment ([`HubOptions::from_env`]).
pub fn resolve_model(id_or_path: &str, revision: Option<&str>) -> Result<PathBuf> {
    match locate(id_or_path)? {
        Location::Local(path) => local_model(path),
        Location::Hub => download_model(id_or_path, revision, &HubOptions::from_env()?),
    }
}

/// [`resolve_model`] with explicit options instead of the environment.
pub fn resolve_model_with(
    id_or_path: &str,
    revision: Option<&str>,
    options: &HubOptions,
) -> Result<PathBuf> {
    match locate(id_or_path)? {
        Location::Local(path) => local_model(path),
        Location::Hub => download_model(id_or_path, revision, options),
    }
}

/// Returns the data files (`.jsonl`, `.json`, `.parquet`, sorted by path) of a dataset: an
/// existing file as is, the data files under an existing folder, or those of hub dataset repo
/// `id_or_path` at `revision` (default `main`), downloaded into the cache. Offline, only the files
/// already cached are returned. Options come from the environment ([`HubOptions::from_env`]).
pub fn resolve_dataset_files(id_or_path: &str, revision: Option<&str>) -> Result<Vec<PathBuf>> {
    match locate(id_or_path)? {
        Location::Local(path) => local_dataset_files(path, &|_| true),
        Location::Hub => {
            download_dataset_files(id_or_path, revision, &|_| true, &HubOptions::from_env()?)
        }
    }
}

/// [`resolve_dataset_files`] with explicit options, keeping only the data files for which `keep`
/// (given the path inside the repo or folder, `/`-separated, e.g. `data/train-00000.parquet`)
/// is true, so that a split can be chosen without downloading the others.
pub fn resolve_dataset_files_with(
    id_or_path: &str,
    revision: Option<&str>,
    keep: &dyn Fn(&str) -> bool,
    options: &HubOptions,
) -> Result<Vec<PathBuf>> {
    match locate(id_or_path)? {
        Location::Local(path) => local_dataset_files(path, keep),
        Location::Hub => download_dataset_files(id_or_path, revision, keep, options),
    }
}

/// One named file of a hub dataset repo (its `README.md`, which declares the dataset's
/// `configs:`), downloaded into the cache; `None` when the repo has no such file.
pub fn fetch_dataset_file(
    id: &str,
    revision: Option<&str>,
    file: &str,
    options: &HubOptions,
) -> Result<Option<PathBuf>> {
    let revision = revision.unwrap_or(DEFAULT_REVISION);
    let snapshot = Snapshot::open(RepoKind::Dataset, id, revision, options)?;
    if !snapshot.has(file) {
        return Ok(None);
    }
    let path = snapshot.fetch(file)?;
    snapshot.record_revision()?;
    Ok(Some(path))
}

fn download_model(id: &str, revision: Option<&str>, options: &HubOptions) -> Result<PathBuf> {
    let revision = revision.unwrap_or(DEFAULT_REVISION);
    let snapshot = Snapshot::open(RepoKind::Model, id, revision, options)?;
    for file in REQUIRED_MODEL_FILES {
        snapshot.fetch(file)?;
    }
    for file in OPTIONAL_MODEL_FILES {
        if snapshot.has(file) {
            snapshot.fetch(file)?;
        }
    }
    if snapshot.has(SINGLE_WEIGHTS) {
        snapshot.fetch(SINGLE_WEIGHTS)?;
    } else if snapshot.has(WEIGHTS_INDEX) {
        let index = snapshot.fetch(WEIGHTS_INDEX)?;
        for shard in shard_files(&index)? {
            snapshot.fetch(&shard)?;
        }
    } else {
        return Err(snapshot.missing_weights());
    }
    snapshot.record_revision()?;
    snapshot
        .dir()
        .ok_or_else(|| snapshot.missing(SINGLE_WEIGHTS))
}

fn download_dataset_files(
    id: &str,
    revision: Option<&str>,
    keep: &dyn Fn(&str) -> bool,
    options: &HubOptions,
) -> Result<Vec<PathBuf>> {
    let revision = revision.unwrap_or(DEFAULT_REVISION);
    let snapshot = Snapshot::open(RepoKind::Dataset, id, revision, options)?;
    let wanted: Vec<String> = snapshot
        .files()?
        .into_iter()
        .filter(|file| is_data_file(file) && keep(file))
        .collect();
    if wanted.is_empty() {
        let message = if options.offline {
            format!(
                "no data files of dataset `{id}` (revision `{revision}`) are in the cache at {}, and \
                 HF_HUB_OFFLINE is set so nothing is downloaded: unset it to download them once",
                snapshot.repo_dir.display()
            )
        } else {
            format!(
                "dataset `{id}` (revision `{revision}`) has no .jsonl, .json or .parquet data files \
                 that were asked for"
            )
        };
        return Err(snapshot.error(message));
    }
    let paths = wanted
        .iter()
        .map(|file| snapshot.fetch(file))
        .collect::<Result<Vec<_>>>()?;
    snapshot.record_revision()?;
    Ok(paths)
}

/// The names in a `model.safetensors.index.json`'s `weight_map`, each once, sorted.
fn shard_files(index: &Path) -> Result<BTreeSet<String>> {
    let bytes = fs::read(index).map_err(|source| Error::io(index, source))?;
    let parsed: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| Error::json(index, source))?;
    let shape_error = || Error::Hub {
        message: format!(
            "{}: expected a `weight_map` object mapping tensor names to shard file names",
            index.display()
        ),
    };
    let weight_map = parsed
        .get("weight_map")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(shape_error)?;
    let shards = weight_map
        .values()
        .map(|shard| shard.as_str().map(str::to_owned).ok_or_else(shape_error))
        .collect::<Result<BTreeSet<_>>>()?;
    if shards.is_empty() {
        return Err(shape_error());
    }
    Ok(shards)
}

fn local_model(path: PathBuf) -> Result<PathBuf> {
    if path.is_dir() {
        Ok(path)
    } else {
        Err(hub_error(format!(
            "`{}` is a file: pass the model folder that holds config.json",
            path.display()
        )))
    }
}

fn local_dataset_files(path: PathBuf, keep: &dyn Fn(&str) -> bool) -> Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path]);
    }
    let files: Vec<PathBuf> = list_files(&path)?
        .into_iter()
        .filter(|file| is_data_file(file) && keep(file))
        .map(|file| path.join(file))
        .collect();
    if files.is_empty() {
        return Err(hub_error(format!(
            "folder `{}` holds no .jsonl, .json or .parquet data files that were asked for",
            path.display()
        )));
    }
    Ok(files)
}

/// What a user's model or dataset argument names.
enum Location {
    Local(PathBuf),
    Hub,
}

/// An existing path wins (as `transformers` does); a path-like name that does not exist is an
/// error rather than a doomed hub request; anything else must be a valid hub id.
fn locate(id_or_path: &str) -> Result<Location> {
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

fn looks_like_path(name: &str) -> bool {
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
fn is_valid_repo_id(id: &str) -> bool {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RepoKind {
    Model,
    Dataset,
}

impl RepoKind {
    fn noun(self) -> &'static str {
        match self {
            RepoKind::Model => "model",
            RepoKind::Dataset => "dataset",
        }
    }

    fn repo_type(self) -> RepoType {
        match self {
            RepoKind::Model => RepoType::Model,
            RepoKind::Dataset => RepoType::Dataset,
        }
    }

    /// The repo's folder in the cache: `models--org--name`, `datasets--org--name`.
    fn folder_name(self, id: &str) -> String {
        format!("{}s--{id}", self.noun()).replace('/', "--")
    }
}

/// One revision of one hub repo as a cache folder being filled: the code model and dataset
/// resolution share. Online, the repo API gives the commit and the file list; offline, the
/// commit comes from `refs/<revision>` and the file list from the snapshot on disk. As in
/// `huggingface_hub`, a hub that cannot be reached (no answer at all, not an HTTP error) falls
/// back to the cached snapshot of the revision when there is one.
struct Snapshot<'a> {
    options: &'a HubOptions,
    kind: RepoKind,
    id: &'a str,
    revision: &'a str,
    /// `<cache>/models--org--name`.
    repo_dir: PathBuf,
    /// The commit `revision` points to; `None` offline when this revision was never cached.
    commit: Option<String>,
    /// Online only.
    remote: Option<Remote>,
    /// Why the hub could not be reached, when the cache stands in for it.
    unreachable: Option<String>,
}

struct Remote {
    api: Api,
    /// Every file of the repo at `commit`, `/`-separated.
    files: BTreeSet<String>,
}

impl<'a> Snapshot<'a> {
    fn open(
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
    fn dir(&self) -> Option<PathBuf> {
        let commit = self.commit.as_ref()?;
        Some(self.repo_dir.join("snapshots").join(commit))
    }

    /// Whether the repo has `file` (online) or the cached snapshot has it (offline).
    fn has(&self, file: &str) -> bool {
        match (&self.remote, self.dir()) {
            (Some(remote), _) => remote.files.contains(file),
            (None, Some(dir)) => dir.join(file).is_file(),
            (None, None) => false,
        }
    }

    /// The repo's files (online) or the cached snapshot's files (offline), sorted.
    fn files(&self) -> Result<Vec<String>> {
        match (&self.remote, self.dir()) {
            (Some(remote), _) => Ok(remote.files.iter().cloned().collect()),
            (None, Some(dir)) if dir.is_dir() => list_files(&dir),
            (None, _) => Ok(Vec::new()),
        }
    }

    /// The local path of `file` in this snapshot, downloading it unless it is cached.
    fn fetch(&self, file: &str) -> Result<PathBuf> {
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
    fn record_revision(&self) -> Result<()> {
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

    fn missing(&self, file: &str) -> Error {
        let (noun, id, revision) = (self.kind.noun(), self.id, self.revision);
        let message = match (&self.remote, &self.commit, &self.unreachable) {
            (None, _, Some(why)) => format!(
                "{noun} `{id}` (revision `{revision}`): the hub cannot be reached ({why}) and the \
                 cached snapshot in {} lacks `{file}`",
                self.repo_dir.display()
            ),
            (None, _, None) => format!(
                "{noun} `{id}` (revision `{revision}`) is not in the Hugging Face cache at {}: \
                 `{file}` is missing, and HF_HUB_OFFLINE is set so nothing is downloaded. Unset \
                 HF_HUB_OFFLINE to download it once, or pass a local folder",
                self.repo_dir.display()
            ),
            (Some(_), commit, _) => format!(
                "{noun} `{id}` at revision `{revision}` (commit {}) has no file `{file}`",
                commit.as_deref().unwrap_or("?")
            ),
        };
        self.error(message)
    }

    fn missing_weights(&self) -> Error {
        if self.remote.is_none() {
            return self.missing(SINGLE_WEIGHTS);
        }
        let has_pytorch_weights = self
            .files()
            .unwrap_or_default()
            .iter()
            .any(|file| file.ends_with(".bin") || file.ends_with(".pt"));
        let advice = if has_pytorch_weights {
            "; it only has PyTorch pickle weights, and trl-rs reads safetensors: save the model with \
             `save_pretrained(..., safe_serialization=True)` or pick a repo that has them"
        } else {
            ""
        };
        self.error(format!(
            "model `{}` at revision `{}` has neither `{SINGLE_WEIGHTS}` nor `{WEIGHTS_INDEX}`{advice}",
            self.id, self.revision
        ))
    }

    /// The repo API failed: not found, private, gated, no such revision, or no network.
    fn repo_error(&self, failure: Failure) -> Error {
        let endpoint = &self.options.endpoint;
        let what = format!("{} `{}`", self.kind.noun(), self.id);
        let advice = match (failure.status, failure.error_code.as_deref()) {
            (_, Some("GatedRepo")) | (Some(403), _) => format!(
                "{what} is gated: accept its conditions on its page on {endpoint}, then set HF_TOKEN"
            ),
            (_, Some("RevisionNotFound")) => {
                format!("{what} has no revision `{}`", self.revision)
            }
            (Some(401), _) if self.options.token.is_some() => format!(
                "{what} was not found on {endpoint}, or the token (HF_TOKEN or the token file) has \
                 no access to it"
            ),
            (Some(401 | 404), _) | (_, Some("RepoNotFound")) => format!(
                "{what} was not found on {endpoint}; if it is private or gated, set HF_TOKEN (or \
                 run `hf auth login`)"
            ),
            (None, _) => format!(
                "cannot reach {endpoint} for {what}; set HF_HUB_OFFLINE=1 to use only the cache"
            ),
            _ => format!("cannot look up {what} at revision `{}`", self.revision),
        };
        self.error(format!("{advice} ({})", failure.detail))
    }

    /// Downloading one file failed.
    fn file_error(&self, file: &str, failure: Failure) -> Error {
        let what = format!("{} `{}`", self.kind.noun(), self.id);
        let message = match failure.status {
            Some(404) => format!(
                "`{file}` of {what} (revision `{}`) was not found on the hub",
                self.revision
            ),
            Some(401 | 403) => {
                format!(
                    "not allowed to download `{file}` of {what}: set HF_TOKEN to a token with access"
                )
            }
            _ => format!("could not download `{file}` of {what}"),
        };
        self.error(format!("{message} ({})", failure.detail))
    }

    /// Every message built here may quote a URL or a server's words: it leaves through this.
    fn error(&self, message: String) -> Error {
        Error::Hub {
            message: redact(&message, self.options.token.as_deref()),
        }
    }
}

/// The commit `refs/<revision>` points to; a full commit hash names its snapshot directly.
fn cached_commit(repo_dir: &Path, revision: &str) -> Option<String> {
    if let Ok(commit) = fs::read_to_string(repo_dir.join("refs").join(revision)) {
        let commit = commit.trim();
        return (!commit.is_empty()).then(|| commit.to_owned());
    }
    let is_hash = revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit());
    (is_hash && repo_dir.join("snapshots").join(revision).is_dir()).then(|| revision.to_owned())
}

/// An hf-hub error, taken apart for messages: HTTP status, the hub's `X-Error-Code`, and text.
struct Failure {
    status: Option<u16>,
    error_code: Option<String>,
    detail: String,
}

fn describe(error: ApiError) -> Failure {
    match error {
        ApiError::RequestError(request_error) => {
            let text = request_error.to_string();
            match (*request_error).into_response() {
                Some(response) => {
                    let status = response.status();
                    let server_says = response
                        .header("x-error-message")
                        .unwrap_or(response.status_text());
                    Failure {
                        status: Some(status),
                        error_code: response.header("x-error-code").map(str::to_owned),
                        detail: format!("HTTP {status} {server_says} from {}", response.get_url()),
                    }
                }
                None => Failure {
                    status: None,
                    error_code: None,
                    detail: format!("network error: {text}"),
                },
            }
        }
        ApiError::TooManyRetries(inner) => {
            let mut failure = describe(*inner);
            failure.detail = format!("{}, after {DOWNLOAD_RETRIES} retries", failure.detail);
            failure
        }
        ApiError::LockAcquisition(path) => Failure {
            status: None,
            error_code: None,
            detail: format!(
                "another process holds {}; wait for its download to end, or delete that file if \
                 none is running",
                path.display()
            ),
        },
        other => Failure {
            status: None,
            error_code: None,
            detail: other.to_string(),
        },
    }
}

/// Removes secrets from text meant for a user: the token wherever it appears, and the
/// `user:password@` part of any URL.
fn redact(text: &str, token: Option<&str>) -> String {
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

/// A relative `/`-separated path that stays inside the folder it is joined to.
fn is_safe_repo_path(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\\')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

fn is_data_file(repo_path: &str) -> bool {
    let name = repo_path.rsplit('/').next().unwrap_or(repo_path);
    let has_data_extension = name.rsplit_once('.').is_some_and(|(_, extension)| {
        DATA_EXTENSIONS
            .iter()
            .any(|data| extension.eq_ignore_ascii_case(data))
    });
    has_data_extension
        && !DATASET_METADATA_FILES.contains(&name)
        && !repo_path.split('/').any(|part| part.starts_with('.'))
}

/// Files under `root` as sorted `/`-separated relative paths, skipping hidden entries and not
/// entering linked folders (snapshot files are links to blobs and are followed).
fn list_files(root: &Path) -> Result<Vec<String>> {
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

fn expand_home(value: &str, home: Option<&Path>) -> Result<PathBuf> {
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

fn read_token_file(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(content) => Ok(Some(content.trim().to_owned()).filter(|token| !token.is_empty())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::io(path, source)),
    }
}

/// `huggingface_hub`'s reading of boolean variables.
fn is_true(value: Option<String>) -> bool {
    value.is_some_and(|value| {
        matches!(
            value.trim().to_ascii_uppercase().as_str(),
            "1" | "ON" | "YES" | "TRUE"
        )
    })
}

fn no_home_error() -> Error {
    hub_error(
        "cannot find the home folder: set HF_HOME to the Hugging Face folder (it holds hub/ and token)"
            .into(),
    )
}

fn hub_error(message: String) -> Error {
    Error::Hub { message }
}

#[cfg(test)]
mod tests;
