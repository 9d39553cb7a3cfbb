//! Large files through the Hub's git-lfs protocol, before the commit that names them:
//! 1. `POST {endpoint}/{repo}.git/info/lfs/objects/batch` (git-lfs batch API, transfers
//!    `basic` and `multipart`, 256 objects a call): per object, nothing to do (the Hub has it),
//!    or an `upload` action (an `href`, maybe a `header` with `chunk_size` and numbered part
//!    URLs) and maybe a `verify` action;
//! 2. the upload: one `PUT href` of the whole file, or with `chunk_size` one `PUT` per part
//!    URL (in part order, `chunk_size` bytes each) then `POST href` with every part's ETag;
//! 3. `POST verify.href` with the object's id and size.
//!
//! The upload URLs point at storage (presigned): they get no token. Each call is retried;
//! a failure is an error naming the file, and the caller then makes no commit.

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::files::{Source, UploadFile};
use crate::http::{Body, Call, Client};

/// Uploads from this size on are announced on stderr.
const LARGE: u64 = 50_000_000;

/// Uploads `files` (all in `lfs` mode) to the repo's large-file storage.
pub(crate) fn upload_lfs_files(
    client: &Client,
    repo_id: &str,
    files: &[&UploadFile],
) -> Result<()> {
    for chunk in files.chunks(256) {
        let objects = batch(client, repo_id, chunk)?;
        for file in chunk {
            let object = objects.iter().find(|o| o["oid"] == file.sha256.as_str());
            let Some(object) = object else {
                return Err(Error::Protocol {
                    what: format!("uploading {} (LFS batch)", file.path_in_repo),
                    message: "the answer does not list this file".into(),
                });
            };
            upload_object(client, file, object)?;
        }
    }
    Ok(())
}

fn batch(client: &Client, repo_id: &str, files: &[&UploadFile]) -> Result<Vec<Value>> {
    let names: Vec<&str> = files.iter().map(|f| f.path_in_repo.as_str()).collect();
    let what = format!("asking where to upload {} (LFS batch)", names.join(", "));
    let payload = json!({
        "operation": "upload",
        "transfers": ["basic", "multipart"],
        "objects": files.iter().map(|f| json!({"oid": f.sha256, "size": f.size})).collect::<Vec<_>>(),
        "hash_algo": "sha256",
        "ref": {"name": "main"},
    });
    let reply = client.send(&Call {
        method: "POST",
        url: client.url(&format!("/{repo_id}.git/info/lfs/objects/batch")),
        body: Body::Json(&payload),
        auth: true,
        lfs: true,
        retry: true,
        what: what.clone(),
    })?;
    match reply.json(&what)?.get("objects") {
        Some(Value::Array(objects)) => Ok(objects.clone()),
        _ => Err(Error::Protocol {
            what,
            message: "no `objects` list".into(),
        }),
    }
}

fn upload_object(client: &Client, file: &UploadFile, object: &Value) -> Result<()> {
    let what = format!("uploading {} (LFS)", file.path_in_repo);
    if let Some(error) = object.get("error") {
        return Err(Error::Protocol {
            what,
            message: format!(
                "the Hub refused the object: {}",
                error["message"].as_str().unwrap_or("?")
            ),
        });
    }
    let Some(actions) = object.get("actions") else {
        return Ok(()); // the Hub has these bytes already
    };
    let upload = &actions["upload"];
    let Some(href) = upload["href"].as_str() else {
        return Err(Error::Protocol {
            what,
            message: "an upload action without `href`".into(),
        });
    };
    if file.size >= LARGE {
        // A line before minutes of silence; small files go by unannounced.
        eprintln!(
            "uploading {} ({:.1} MB)",
            file.path_in_repo,
            file.size as f64 / 1e6
        );
    }
    match upload["header"].get("chunk_size") {
        Some(chunk_size) => upload_parts(client, file, href, &upload["header"], chunk_size, &what)?,
        None => {
            client.send(&put(file, href.to_owned(), 0, file.size, what.clone()))?;
        }
    }
    if let Some(verify) = actions.get("verify").and_then(|v| v["href"].as_str()) {
        let payload = json!({"oid": file.sha256, "size": file.size});
        client.send(&Call {
            method: "POST",
            url: verify.to_owned(),
            body: Body::Json(&payload),
            auth: true,
            lfs: true,
            retry: true,
            what: format!("verifying the upload of {}", file.path_in_repo),
        })?;
    }
    Ok(())
}

/// The multipart transfer: parts `"1"`, `"2"`, ... of `header` in order, `chunk_size` bytes
/// each, then the completion call with their ETags.
fn upload_parts(
    client: &Client,
    file: &UploadFile,
    href: &str,
    header: &Value,
    chunk_size: &Value,
    what: &str,
) -> Result<()> {
    let protocol = |message: String| Error::Protocol {
        what: what.to_owned(),
        message,
    };
    let chunk_size = match chunk_size {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .filter(|&size| size > 0)
    .ok_or_else(|| protocol(format!("chunk_size {chunk_size} is not a positive integer")))?;
    let mut parts: Vec<(u64, String)> = header
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(key, url)| Some((key.parse().ok()?, url.as_str()?.to_owned())))
        .collect();
    parts.sort();
    if parts.len() as u64 != file.size.div_ceil(chunk_size) {
        return Err(protocol(format!(
            "{} part URLs for {} bytes in chunks of {chunk_size}",
            parts.len(),
            file.size
        )));
    }
    let mut etags = Vec::new();
    for (index, (number, url)) in parts.into_iter().enumerate() {
        let offset = index as u64 * chunk_size;
        let len = chunk_size.min(file.size - offset);
        let reply = client.send(&put(
            file,
            url,
            offset,
            len,
            format!("{what}, part {number}"),
        ))?;
        let etag = reply
            .etag
            .filter(|e| !e.is_empty())
            .ok_or_else(|| protocol(format!("no ETag for part {number}")))?;
        etags.push(json!({"partNumber": index + 1, "etag": etag}));
    }
    let payload = json!({"oid": file.sha256, "parts": etags});
    client.send(&Call {
        method: "POST",
        url: href.to_owned(),
        body: Body::Json(&payload),
        auth: false,
        lfs: true,
        retry: true,
        what: format!("{what}, completing the parts"),
    })?;
    Ok(())
}

/// A `PUT` of `len` bytes of `file` from `offset` to a storage URL (no token).
fn put(file: &UploadFile, url: String, offset: u64, len: u64, what: String) -> Call<'_> {
    let body = match &file.source {
        Source::Path(path) => Body::File { path, offset, len },
        Source::Bytes(bytes) => Body::Bytes(&bytes[offset as usize..(offset + len) as usize]),
    };
    Call {
        method: "PUT",
        url,
        body,
        auth: false,
        lfs: false,
        retry: true,
        what,
    }
}
