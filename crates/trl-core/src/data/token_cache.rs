//! An on-disk cache of tokenized data, so that a second run on the same data, tokenizer and
//! options skips tokenization (minutes for a million rows) and reads the examples back in a
//! second or two.
//!
//! The key is a content hash, not a path or a timestamp: the bytes of every data file
//! (streamed, so a 1 GB file needs no memory), the files of the tokenizer folder that decide
//! tokenization, an options string the caller builds from every setting that changes the
//! examples (`max_length`, `assistant_only_loss`, a chat template override, ...), the example
//! type and the trl-rs version. Any change misses the cache; nothing is ever invalidated by hand.
//!
//! ```no_run
//! # use trl_core::data::token_cache::{CacheKey, cached};
//! # fn tokenize() -> trl_core::Result<Vec<Vec<u32>>> { Ok(Vec::new()) }
//! # let (files, tokenizer_dir) = (vec![std::path::PathBuf::from("train.jsonl")], "model");
//! let key = CacheKey::new("sft")
//!     .data_files(&files)?
//!     .tokenizer_dir(tokenizer_dir)?
//!     .options("max_length=1024 packing=false");
//! let examples: Vec<Vec<u32>> = cached(&key, || tokenize())?;
//! # Ok::<(), trl_core::Error>(())
//! ```
//!
//! Location: [`cache_dir`]`/tokenized/<key>.bin` (`$TRL_RS_CACHE`, else `$XDG_CACHE_HOME/trl-rs`
//! or `~/.cache/trl-rs`), beside the reference log-probs cache. The file is written to a
//! temporary name and renamed, so a run killed mid-write leaves no partial entry. Delete the
//! folder to reclaim the space.
//!
//! The file holds `TRLTOK01` and then the examples in a compact binary encoding of serde types
//! (no bincode needed): little-endian fixed-width numbers, a `u32` count before every sequence,
//! string and map, a `u8` tag for `Option`, a `u32` index for an enum variant, struct fields in
//! order without names. A `Vec<Vec<u32>>` costs 4 bytes a token plus 4 an example. The encoding
//! does not describe itself: what reads it must be the type that wrote it (the file name
//! includes the type's name). `#[serde(skip_serializing_if)]`, `flatten`, untagged enums and
//! `serde_json::Value` need a self-describing format and are refused with an error.

#[cfg(test)]
#[path = "token_cache/codec_tests.rs"]
mod codec_tests;
mod decode;
mod encode;

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize as _, Serialize};

use crate::train::ref_cache::{Fingerprint, cache_dir};
use crate::{Error, Result};
use decode::Decoder;
use encode::{CodecError, Encoder};

/// The first bytes of a cache file; the digit changes with the layout.
const MAGIC: &[u8; 8] = b"TRLTOK01";

/// Files of a tokenizer folder that decide how text becomes tokens.
const TOKENIZER_FILES: [&str; 5] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "added_tokens.json",
];

/// What tokenized data depends on. Build it from everything that changes the examples: a
/// setting left out means a stale cache served after that setting changes.
#[derive(Debug, Clone)]
pub struct CacheKey {
    fingerprint: Fingerprint,
}

impl CacheKey {
    /// A key for examples made by `recipe` (e.g. `"sft"`, `"dpo"`).
    pub fn new(recipe: &str) -> Self {
        let mut fingerprint = Fingerprint::default();
        fingerprint.update(b"trl-rs tokenized data ");
        fingerprint.update(env!("CARGO_PKG_VERSION").as_bytes());
        let mut key = CacheKey { fingerprint };
        key.mix(recipe.as_bytes());
        key
    }

    /// Mixes in the content of the data files, in order (read in blocks; about a second a GB).
    pub fn data_files(mut self, files: &[PathBuf]) -> Result<Self> {
        self.mix(&(files.len() as u64).to_le_bytes());
        for path in files {
            self.mix_file(path)?;
        }
        Ok(self)
    }

    /// Mixes in the tokenizer folder's `tokenizer.json`, `tokenizer_config.json`,
    /// `special_tokens_map.json`, chat templates (`chat_template.jinja`, `chat_templates/`) and
    /// `added_tokens.json`, those that exist. A chat template set in code belongs in
    /// [`CacheKey::options`].
    pub fn tokenizer_dir(mut self, dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let mut files: Vec<PathBuf> = TOKENIZER_FILES.iter().map(|f| dir.join(f)).collect();
        if let Ok(entries) = std::fs::read_dir(dir.join("chat_templates")) {
            let mut templates: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            templates.sort();
            files.extend(templates);
        }
        for path in files.iter().filter(|p| p.is_file()) {
            let name = path.strip_prefix(dir).unwrap_or(path);
            self.mix(name.to_string_lossy().as_bytes());
            self.mix_file(path)?;
        }
        Ok(self)
    }

    /// Mixes in the settings that shape the examples, written as the caller likes (e.g.
    /// `format!("{args:?}")` of the relevant ones).
    pub fn options(mut self, options: &str) -> Self {
        self.mix(options.as_bytes());
        self
    }

    /// Where examples of type `T` under this key live in the cache folder `root`.
    pub fn path_in<T>(&self, root: &Path) -> PathBuf {
        let mut fingerprint = self.fingerprint;
        fingerprint.update(std::any::type_name::<T>().as_bytes());
        root.join("tokenized")
            .join(format!("{}.bin", fingerprint.hex()))
    }

    /// [`CacheKey::path_in`] the default cache folder: where [`cached`] reads and writes.
    pub fn path<T>(&self) -> PathBuf {
        self.path_in::<T>(&cache_dir())
    }

    /// Mixes in one part, with its length so that parts cannot run into each other.
    fn mix(&mut self, bytes: &[u8]) {
        self.fingerprint.update(&(bytes.len() as u64).to_le_bytes());
        self.fingerprint.update(bytes);
    }

    fn mix_file(&mut self, path: &Path) -> Result<()> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let length = file.metadata().map_err(|e| Error::io(path, e))?.len();
        self.fingerprint.update(&length.to_le_bytes());
        let mut block = vec![0; 1 << 20];
        loop {
            match file.read(&mut block) {
                Ok(0) => return Ok(()),
                Ok(read) => self.fingerprint.update(&block[..read]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(path, e)),
            }
        }
    }
}

/// The examples cached under `key`, or those `compute` makes, stored for next time. A cache file
/// that cannot be read back (another layout, a damaged disk) is computed again and replaced.
pub fn cached<T: Serialize + DeserializeOwned>(
    key: &CacheKey,
    compute: impl FnOnce() -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    cached_in(&cache_dir(), key, compute)
}

/// [`cached`] in the cache folder `root` instead of the default one.
pub fn cached_in<T: Serialize + DeserializeOwned>(
    root: &Path,
    key: &CacheKey,
    compute: impl FnOnce() -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    let path = key.path_in::<T>(root);
    if let Some(examples) = load(&path) {
        return Ok(examples);
    }
    let examples = compute()?;
    store(&path, &examples)?;
    Ok(examples)
}

/// The examples of a cache file, or `None` when it is missing or unreadable.
fn load<T: DeserializeOwned>(path: &Path) -> Option<Vec<T>> {
    let file = File::open(path).ok()?;
    // SAFETY: cache files are written under another name and renamed into place, never written
    // where they are, so the mapped bytes do not change while they are decoded (short of
    // someone editing the file by hand during a run).
    let bytes = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let body = bytes.strip_prefix(MAGIC.as_slice())?;
    let mut decoder = Decoder::new(body);
    let examples = Vec::<T>::deserialize(&mut decoder).ok()?;
    (decoder.remaining() == 0).then_some(examples)
}

/// Writes the examples to a temporary file beside `path`, then renames it into place.
fn store<T: Serialize>(path: &Path, examples: &[T]) -> Result<()> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let unwritable = |error: std::io::Error| {
        let advice = format!(
            "cannot write the tokenized-data cache ({error}); set TRL_RS_CACHE to a writable \
             folder"
        );
        Error::io(path, std::io::Error::new(error.kind(), advice))
    };
    std::fs::create_dir_all(folder).map_err(unwritable)?;
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let written = (|| -> std::result::Result<(), CodecError> {
        let file = File::create(&temporary).map_err(|e| CodecError(e.to_string()))?;
        let mut encoder = Encoder::new(BufWriter::with_capacity(1 << 20, file));
        encoder.encode(MAGIC)?;
        encoder.encode(examples)?;
        let mut out = encoder.into_inner();
        out.flush().map_err(|e| CodecError(e.to_string()))?;
        out.into_inner()
            .map_err(|e| CodecError(e.to_string()))?
            .sync_all()
            .map_err(|e| CodecError(e.to_string()))
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(unwritable(std::io::Error::other(error)));
    }
    std::fs::rename(&temporary, path).map_err(unwritable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_are_computed_once_then_read_back() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("d.jsonl");
        std::fs::write(&data, "{\"text\": \"a\"}\n").unwrap();
        let key = CacheKey::new("sft")
            .data_files(std::slice::from_ref(&data))
            .unwrap()
            .options("max_length=8");
        let examples = vec![vec![1u32, 2, 3], vec![4]];
        let first = cached_in(root.path(), &key, || Ok(examples.clone())).unwrap();
        assert_eq!(first, examples);
        let second: Vec<Vec<u32>> =
            cached_in(root.path(), &key, || panic!("computed twice")).unwrap();
        assert_eq!(second, examples);
        let file = key.path_in::<Vec<u32>>(root.path());
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            8 + 4 + (4 + 12) + (4 + 4)
        );

        // A damaged file is recomputed and replaced.
        std::fs::write(&file, b"TRLTOK01\x05").unwrap();
        let again = cached_in(root.path(), &key, || Ok(vec![vec![9u32]])).unwrap();
        assert_eq!(again, [vec![9]]);
        let read_back: Vec<Vec<u32>> = cached_in(root.path(), &key, || panic!("stale")).unwrap();
        assert_eq!(read_back, [vec![9]]);
    }

    #[test]
    fn keys_change_with_data_options_tokenizer_and_type() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d.jsonl");
        let root = dir.path();
        let key = |options: &str| {
            CacheKey::new("sft")
                .data_files(std::slice::from_ref(&data))
                .unwrap()
                .options(options)
                .path_in::<Vec<u32>>(root)
        };
        std::fs::write(&data, "{\"text\": \"a\"}\n").unwrap();
        let before = key("a");
        assert_eq!(key("a"), before);
        assert_ne!(key("b"), before);
        std::fs::write(&data, "{\"text\": \"b\"}\n").unwrap();
        assert_ne!(key("a"), before);

        let tokenizer = format!(
            "{}/../../fixtures/models/tiny-qwen2",
            env!("CARGO_MANIFEST_DIR")
        );
        let with_tokenizer = CacheKey::new("sft").tokenizer_dir(&tokenizer).unwrap();
        let bare = CacheKey::new("sft");
        assert_ne!(
            with_tokenizer.path_in::<Vec<u32>>(root),
            bare.path_in::<Vec<u32>>(root)
        );
        assert_ne!(
            bare.path_in::<Vec<u32>>(root),
            bare.path_in::<Vec<u64>>(root)
        );
        assert_ne!(
            CacheKey::new("sft").path_in::<u8>(root),
            CacheKey::new("dpo").path_in::<u8>(root)
        );
    }
}
