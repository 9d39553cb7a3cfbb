//! The two Hub calls around the uploads of one commit:
//! - `POST /api/models/{repo}/preupload/main` with each file's path, size and first 512 bytes
//!   (base64): the Hub answers per file whether it goes inline (`regular`) or through the
//!   large-file protocol (`lfs`), and whether its `.gitignore` drops it (`shouldIgnore`);
//! - `POST /api/models/{repo}/commit/main`, NDJSON: a `header` line (summary, description),
//!   then a `file` line per regular file (content in base64) and an `lfsFile` line per large
//!   file (its SHA-256 and size, the bytes being uploaded already). The commit call is not
//!   retried (as `huggingface_hub`): a lost answer to a commit that went through would make a
//!   second one.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::files::UploadFile;
use crate::http::{Body, Call, Client};

/// How the Hub wants a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMode {
    Regular,
    Lfs,
    /// Dropped by the repo's `.gitignore`.
    Ignored,
}

/// The Hub's upload mode for each file of `files`, in order (256 files a call). An empty
/// file is always regular: the storage refuses empty large files.
pub(crate) fn upload_modes(
    client: &Client,
    repo_id: &str,
    files: &[UploadFile],
) -> Result<Vec<UploadMode>> {
    let what = format!("asking the Hub how to upload files to {repo_id} (preupload)");
    let mut modes = Vec::with_capacity(files.len());
    for chunk in files.chunks(256) {
        let payload = json!({"files": chunk.iter().map(|f| json!({
            "path": f.path_in_repo,
            "sample": BASE64.encode(&f.sample),
            "size": f.size,
        })).collect::<Vec<_>>()});
        let reply = client.send(&Call {
            method: "POST",
            url: client.url(&format!("/api/models/{repo_id}/preupload/main")),
            body: Body::Json(&payload),
            auth: true,
            lfs: false,
            retry: true,
            what: what.clone(),
        })?;
        let answer = reply.json(&what)?;
        let listed = answer.get("files").and_then(Value::as_array);
        for file in chunk {
            let entry = listed.and_then(|list| {
                list.iter()
                    .find(|e| e["path"] == file.path_in_repo.as_str())
            });
            let Some(entry) = entry else {
                return Err(Error::Protocol {
                    what: what.clone(),
                    message: format!("no upload mode for {}", file.path_in_repo),
                });
            };
            modes.push(mode_of(entry, file.size));
        }
    }
    Ok(modes)
}

fn mode_of(entry: &Value, size: u64) -> UploadMode {
    if entry["shouldIgnore"].as_bool() == Some(true) {
        UploadMode::Ignored
    } else if entry["uploadMode"] == "lfs" && size > 0 {
        UploadMode::Lfs
    } else {
        UploadMode::Regular
    }
}

/// The commit's NDJSON body: header, then one line per file not ignored.
pub(crate) fn commit_payload(
    message: &str,
    files: &[UploadFile],
    modes: &[UploadMode],
) -> Result<Vec<u8>> {
    let mut lines =
        vec![json!({"key": "header", "value": {"summary": message, "description": ""}})];
    for (file, mode) in files.iter().zip(modes) {
        match mode {
            UploadMode::Regular => lines.push(json!({"key": "file", "value": {
                "content": BASE64.encode(file.read_all()?),
                "path": file.path_in_repo,
                "encoding": "base64",
            }})),
            UploadMode::Lfs => lines.push(json!({"key": "lfsFile", "value": {
                "path": file.path_in_repo,
                "algo": "sha256",
                "oid": file.sha256,
                "size": file.size,
            }})),
            UploadMode::Ignored => {}
        }
    }
    let mut body = Vec::new();
    for line in lines {
        body.extend_from_slice(line.to_string().as_bytes());
        body.push(b'\n');
    }
    Ok(body)
}

/// Makes the commit; returns its URL as the Hub gives it.
pub(crate) fn create_commit(client: &Client, repo_id: &str, body: &[u8]) -> Result<String> {
    let what = format!("committing to {repo_id}");
    let reply = client.send(&Call {
        method: "POST",
        url: client.url(&format!("/api/models/{repo_id}/commit/main")),
        body: Body::Ndjson(body),
        auth: true,
        lfs: false,
        retry: false,
        what: what.clone(),
    })?;
    let answer = reply.json(&what)?;
    Ok(answer["commitUrl"].as_str().unwrap_or_default().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_body_has_a_header_then_one_line_per_kept_file() {
        let files = vec![
            UploadFile::from_bytes("a.txt".into(), b"hello".to_vec()),
            UploadFile::from_bytes("w.safetensors".into(), vec![1, 2, 3]),
            UploadFile::from_bytes("skip.log".into(), b"x".to_vec()),
        ];
        let modes = [UploadMode::Regular, UploadMode::Lfs, UploadMode::Ignored];
        let body = commit_payload("msg", &files, &modes).unwrap();
        let lines: Vec<Value> = String::from_utf8(body)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["value"]["summary"], "msg");
        assert_eq!(lines[1]["value"]["content"], "aGVsbG8=");
        assert_eq!(lines[2]["key"], "lfsFile");
        assert_eq!(lines[2]["value"]["oid"], files[1].sha256.as_str());
        assert_eq!(lines[2]["value"]["size"], 3);
    }

    #[test]
    fn empty_files_and_unknown_modes_go_inline() {
        let lfs = json!({"path": "x", "uploadMode": "lfs", "shouldIgnore": false});
        assert_eq!(mode_of(&lfs, 0), UploadMode::Regular);
        assert_eq!(mode_of(&lfs, 5), UploadMode::Lfs);
        assert_eq!(
            mode_of(&json!({"shouldIgnore": true}), 5),
            UploadMode::Ignored
        );
    }
}
