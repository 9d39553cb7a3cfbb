//! What a push uploads: the files of a folder (walked in name order), each with its size,
//! SHA-256 and first 512 bytes (what the Hub's preupload and LFS calls ask for), plus files
//! made in memory (the model card).
//!
//! Skipped, always, and reported to the caller (never silently): `.git/` at any depth and
//! `.cache/` at the top (local caches, as `huggingface_hub`'s `upload_folder` skips them), and
//! `.tmp-checkpoint-*` at the top (a checkpoint being written). `checkpoint-*/` folders at the
//! top are skipped unless asked for: a training run's checkpoints hold optimizer states, and
//! transformers' `push_to_hub` skips them too (`hub_strategy` pushes them on its own).

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Where a file's bytes are.
#[derive(Debug, Clone)]
pub enum Source {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// One file to upload, with what the Hub's calls need to know about it.
#[derive(Debug, Clone)]
pub struct UploadFile {
    /// Path in the repo, `/`-separated.
    pub path_in_repo: String,
    pub source: Source,
    pub size: u64,
    /// Lower-case hex SHA-256 of the content: the LFS object id.
    pub sha256: String,
    /// The first 512 bytes (the Hub guesses text vs binary from them).
    pub sample: Vec<u8>,
}

impl UploadFile {
    /// A file on disk, hashed now.
    pub fn from_path(path_in_repo: String, path: &Path) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut hasher = Sha256::new();
        let mut sample = Vec::new();
        let mut buffer = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let read = file.read(&mut buffer).map_err(|e| Error::io(path, e))?;
            if read == 0 {
                break;
            }
            if sample.len() < 512 {
                let take = (512 - sample.len()).min(read);
                sample.extend_from_slice(&buffer[..take]);
            }
            hasher.update(&buffer[..read]);
            size += read as u64;
        }
        Ok(UploadFile {
            path_in_repo,
            source: Source::Path(path.to_path_buf()),
            size,
            sha256: hex(&hasher.finalize()),
            sample,
        })
    }

    /// A file made in memory.
    pub fn from_bytes(path_in_repo: String, bytes: Vec<u8>) -> Self {
        UploadFile {
            path_in_repo,
            size: bytes.len() as u64,
            sha256: hex(&Sha256::digest(&bytes)),
            sample: bytes[..bytes.len().min(512)].to_vec(),
            source: Source::Bytes(bytes),
        }
    }

    /// The whole content (regular files, which the Hub keeps small, go inline in the commit).
    pub fn read_all(&self) -> Result<Vec<u8>> {
        match &self.source {
            Source::Path(path) => std::fs::read(path).map_err(|e| Error::io(path, e)),
            Source::Bytes(bytes) => Ok(bytes.clone()),
        }
    }
}

/// The files of `dir` under `prefix` in the repo ("" for the root, else "name/"), and the
/// top-level entries skipped (see the module docs), as `name/`.
pub fn folder_files(
    dir: &Path,
    prefix: &str,
    include_checkpoints: bool,
) -> Result<(Vec<UploadFile>, Vec<String>)> {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    walk(
        dir,
        dir,
        prefix,
        include_checkpoints,
        &mut files,
        &mut skipped,
    )?;
    Ok((files, skipped))
}

fn walk(
    root: &Path,
    dir: &Path,
    prefix: &str,
    include_checkpoints: bool,
    files: &mut Vec<UploadFile>,
    skipped: &mut Vec<String>,
) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|entry| entry.map(|e| e.path()).map_err(|e| Error::io(dir, e)))
        .collect::<Result<_>>()?;
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let top = dir == root;
        // Follows symlinks, as `upload_folder` does (a snapshot's files are symlinks).
        let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            let skip = name == ".git"
                || (top && (name == ".cache" || name.starts_with(".tmp-checkpoint-")))
                || (top && !include_checkpoints && name.starts_with("checkpoint-"));
            if skip {
                skipped.push(format!("{name}/"));
            } else {
                walk(root, &path, prefix, include_checkpoints, files, skipped)?;
            }
        } else {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let in_repo: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect();
            files.push(UploadFile::from_path(
                format!("{prefix}{}", in_repo.join("/")),
                &path,
            )?);
        }
    }
    Ok(())
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_in_order_and_reports_what_it_skips() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for folder in ["sub", ".git", "checkpoint-2", ".tmp-checkpoint-4", ".cache"] {
            std::fs::create_dir_all(root.join(folder)).unwrap();
            std::fs::write(root.join(folder).join("f.txt"), b"x").unwrap();
        }
        std::fs::write(root.join("a.json"), b"{}").unwrap();
        let (files, skipped) = folder_files(root, "", false).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.path_in_repo.as_str()).collect();
        assert_eq!(names, ["a.json", "sub/f.txt"]);
        assert_eq!(
            skipped,
            [".cache/", ".git/", ".tmp-checkpoint-4/", "checkpoint-2/"]
        );
        let (files, _) = folder_files(root, "last/", true).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.path_in_repo.as_str()).collect();
        assert_eq!(
            names,
            ["last/a.json", "last/checkpoint-2/f.txt", "last/sub/f.txt"]
        );
    }

    #[test]
    fn hashes_like_sha256sum() {
        let file = UploadFile::from_bytes("x".into(), b"abc".to_vec());
        assert_eq!(
            file.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("big.bin"), &big).unwrap();
        let on_disk = UploadFile::from_path("big.bin".into(), &dir.path().join("big.bin")).unwrap();
        let in_memory = UploadFile::from_bytes("big.bin".into(), big.clone());
        assert_eq!(on_disk.sha256, in_memory.sha256);
        assert_eq!(
            (on_disk.size, on_disk.sample.as_slice()),
            (3_000_000, &big[..512])
        );
    }
}
