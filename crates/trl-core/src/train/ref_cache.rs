//! An on-disk cache of reference-model log-probs (`precompute_ref_log_probs`), keyed by the
//! tokenized data and the reference weights, so a second run or a resume skips the reference
//! forward passes entirely.
//!
//! Location: `$TRL_RS_CACHE` or `$XDG_CACHE_HOME/trl-rs` or `~/.cache/trl-rs`, under
//! `ref-logps/<key>.json`.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The cache folder.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TRL_RS_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("trl-rs")
}

/// 64-bit FNV-1a: a stable content fingerprint for cache keys (not for security); written out
/// because std's hasher is not guaranteed stable across releases and nothing more is needed.
#[derive(Debug, Clone, Copy)]
pub struct Fingerprint(u64);

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint(0xcbf2_9ce4_8422_2325)
    }
}

impl Fingerprint {
    /// Mixes `bytes` in.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Mixes token ids in, with their count so sequences cannot run into each other.
    pub fn update_ids(&mut self, ids: &[u32]) {
        self.update(&(ids.len() as u64).to_le_bytes());
        for id in ids {
            self.update(&id.to_le_bytes());
        }
    }

    /// Mixes in a model folder's identity: its path (for a hub model, the snapshot folder of
    /// the resolved revision), its `config.json` and each weight file's size and mtime.
    pub fn update_model_dir(&mut self, dir: &Path) {
        self.update(dir.to_string_lossy().as_bytes());
        // A folder without config.json fails to load before its key is used.
        let config = std::fs::read(dir.join("config.json")).unwrap_or_default();
        self.update(&(config.len() as u64).to_le_bytes());
        self.update(&config);
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with(".safetensors")
                && let Ok(meta) = entry.metadata()
            {
                self.update(name.as_bytes());
                self.update(&meta.len().to_le_bytes());
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                self.update(&mtime.map_or(0, |d| d.as_nanos()).to_le_bytes());
            }
        }
    }

    /// The key as hex.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// Returns the cached rows for `key` if present, else runs `compute`, stores and returns them.
/// Each row holds one example's reference values.
pub fn cached_rows(
    key: &Fingerprint,
    compute: impl FnOnce() -> Result<Vec<Vec<f64>>>,
) -> Result<(Vec<Vec<f64>>, bool)> {
    let path = cache_dir()
        .join("ref-logps")
        .join(format!("{}.json", key.hex()));
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(rows) = serde_json::from_str::<Vec<Vec<f64>>>(&text)
    {
        return Ok((rows, true));
    }
    let rows = compute()?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let text = serde_json::to_vec(&rows).map_err(|e| Error::json(&path, e))?;
    crate::model::write_atomically(&path, &text)?;
    Ok((rows, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_order_and_lengths() {
        let key = |parts: &[&[u32]]| {
            let mut f = Fingerprint::default();
            for p in parts {
                f.update_ids(p);
            }
            f.hex()
        };
        assert_ne!(key(&[&[1, 2], &[3]]), key(&[&[1], &[2, 3]]));
        assert_eq!(key(&[&[1, 2]]), key(&[&[1, 2]]));
    }
}
