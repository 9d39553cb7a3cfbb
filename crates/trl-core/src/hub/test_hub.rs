//! A local hub-style HTTP server on 127.0.0.1 for the hub tests, and their shared helpers.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tiny_http::{Header, Request, Response, Server};

use super::HubOptions;
use super::cache::RepoKind;
use crate::Error;

pub(super) const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
pub(super) const TOKEN: &str = "hf_secretTokenThatMustNotLeak";

/// A repo the fake hub serves at commit [`COMMIT`] (and branch `main`) from a folder.
pub(super) struct FakeRepo {
    pub(super) kind: RepoKind,
    pub(super) id: &'static str,
    pub(super) dir: PathBuf,
}

/// One request the fake hub received.
#[derive(Clone, Debug)]
pub(super) struct Seen {
    pub(super) url: String,
    pub(super) authorization: Option<String>,
}

/// A stand-in for huggingface.co on 127.0.0.1 answering what hf-hub 0.4 asks:
/// - `GET /api/{models,datasets}/<id>/revision/<rev>`: JSON `{sha, siblings: [{rfilename}]}`;
/// - `GET [/datasets]/<id>/resolve/<rev>/<file>` with `Range: bytes=0-0` (size probe) or
///   `bytes=N-` (download): `206` with `Content-Range`, `ETag` and `X-Repo-Commit`; for
///   `*.safetensors`, like LFS files, a `302` to `/cdn/<etag>` with `X-Linked-Etag`,
///   `X-Linked-Size` and `X-Repo-Commit`;
/// - `GET /cdn/<etag>`: the bytes, honouring `Range`;
/// - unknown repo, revision or file: `404` with the hub's `X-Error-Code`.
///
/// A URL containing a pattern of `failures` gets that status instead, with an error
/// message that echoes the request's Authorization header, as a careless server might.
pub(super) struct FakeHub {
    pub(super) base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHub {
    pub(super) fn start(repos: Vec<FakeRepo>, failures: Vec<(&'static str, u16)>) -> Self {
        let server = Arc::new(Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (server, seen, base) = (server.clone(), seen.clone(), base.clone());
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    seen.lock().unwrap().push(Seen {
                        url: request.url().to_owned(),
                        authorization: header(&request, "Authorization"),
                    });
                    let response = answer(&request, &base, &repos, &failures);
                    let _ = request.respond(response);
                }
            })
        };
        FakeHub {
            base,
            seen,
            server,
            thread: Some(thread),
        }
    }

    pub(super) fn options(&self, cache_dir: &Path) -> HubOptions {
        HubOptions {
            endpoint: self.base.clone(),
            cache_dir: cache_dir.to_path_buf(),
            token: None,
            offline: false,
            progress: false,
        }
    }

    pub(super) fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(super) type Reply = Response<Cursor<Vec<u8>>>;

pub(super) fn answer(
    request: &Request,
    base: &str,
    repos: &[FakeRepo],
    failures: &[(&str, u16)],
) -> Reply {
    let url = request.url();
    if let Some((_, status)) = failures.iter().find(|(pattern, _)| url.contains(pattern)) {
        let echo = format!(
            "refused {url} for {}",
            header(request, "Authorization").unwrap_or_default()
        );
        return Response::from_data(echo.clone().into_bytes())
            .with_status_code(*status)
            .with_header(make_header("X-Error-Message", &echo));
    }
    let range = header(request, "Range");
    if let Some(rest) = url.strip_prefix("/api/") {
        return repo_info(rest, repos);
    }
    if let Some(etag) = url.strip_prefix("/cdn/") {
        let blob = repos
            .iter()
            .flat_map(|repo| all_files(&repo.dir))
            .map(|path| fs::read(path).unwrap())
            .find(|bytes| fingerprint(bytes) == etag);
        return match blob {
            Some(bytes) => ranged(&bytes, range),
            None => not_found("EntryNotFound"),
        };
    }
    let Some((repo_part, rest)) = url.split_once("/resolve/") else {
        return not_found("RepoNotFound");
    };
    let (kind, id) = match repo_part.strip_prefix("/datasets/") {
        Some(id) => (RepoKind::Dataset, id),
        None => (RepoKind::Model, repo_part.trim_start_matches('/')),
    };
    let Some(repo) = repos.iter().find(|repo| repo.kind == kind && repo.id == id) else {
        return not_found("RepoNotFound");
    };
    let Some((revision, file)) = rest.split_once('/') else {
        return not_found("EntryNotFound");
    };
    if revision != "main" && revision != COMMIT {
        return not_found("RevisionNotFound");
    }
    let Ok(bytes) = fs::read(repo.dir.join(file)) else {
        return not_found("EntryNotFound");
    };
    let etag = fingerprint(&bytes);
    if file.ends_with(".safetensors") {
        return Response::from_data(Vec::new())
            .with_status_code(302)
            .with_header(make_header("Location", &format!("{base}/cdn/{etag}")))
            .with_header(make_header("X-Linked-Etag", &format!("\"{etag}\"")))
            .with_header(make_header("X-Linked-Size", &bytes.len().to_string()))
            .with_header(make_header("X-Repo-Commit", COMMIT));
    }
    ranged(&bytes, range)
        .with_header(make_header("ETag", &format!("\"{etag}\"")))
        .with_header(make_header("X-Repo-Commit", COMMIT))
}

pub(super) fn repo_info(rest: &str, repos: &[FakeRepo]) -> Reply {
    let (kind, tail) = match rest.split_once('/') {
        Some(("models", tail)) => (RepoKind::Model, tail),
        Some(("datasets", tail)) => (RepoKind::Dataset, tail),
        _ => return not_found("RepoNotFound"),
    };
    let Some((id, revision)) = tail.split_once("/revision/") else {
        return not_found("RepoNotFound");
    };
    let Some(repo) = repos.iter().find(|repo| repo.kind == kind && repo.id == id) else {
        return not_found("RepoNotFound");
    };
    if revision != "main" && revision != COMMIT {
        return not_found("RevisionNotFound");
    }
    let siblings: Vec<serde_json::Value> = all_files(&repo.dir)
        .iter()
        .map(|path| {
            let name = path.strip_prefix(&repo.dir).unwrap().to_str().unwrap();
            serde_json::json!({ "rfilename": name })
        })
        .collect();
    let body = serde_json::json!({ "id": id, "sha": COMMIT, "siblings": siblings });
    Response::from_data(body.to_string().into_bytes())
        .with_header(make_header("Content-Type", "application/json"))
}

/// The whole body, or the `bytes=start-[end]` part of it as a `206`.
pub(super) fn ranged(bytes: &[u8], range: Option<String>) -> Reply {
    let Some(spec) = range.as_deref().and_then(|r| r.strip_prefix("bytes=")) else {
        return Response::from_data(bytes.to_vec());
    };
    let (start, end) = spec.split_once('-').unwrap();
    let start: usize = start.parse().unwrap();
    let end = match end {
        "" => bytes.len() - 1,
        end => end.parse::<usize>().unwrap().min(bytes.len() - 1),
    };
    let content_range = format!("bytes {start}-{end}/{}", bytes.len());
    Response::from_data(bytes[start..=end].to_vec())
        .with_status_code(206)
        .with_header(make_header("Content-Range", &content_range))
}

pub(super) fn not_found(error_code: &str) -> Reply {
    Response::from_data(b"not found".to_vec())
        .with_status_code(404)
        .with_header(make_header("X-Error-Code", error_code))
}

pub(super) fn header(request: &Request, name: &'static str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|header| header.field.equiv(name))
        .map(|header| header.value.as_str().to_owned())
}

pub(super) fn make_header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap()
}

/// FNV-1a, as a stable content-derived stand-in for the hub's etags.
pub(super) fn fingerprint(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf29ce484222325u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x100000001b3)
    });
    format!("{hash:016x}")
}

/// Every file under `dir`, hidden ones included, as the hub lists them.
pub(super) fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(all_files(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

pub(super) fn write_repo(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    for (name, content) in files {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
    dir.to_path_buf()
}

pub(super) const TINY_MODEL: [(&str, &str); 5] = [
    ("config.json", r#"{"model_type": "llama"}"#),
    ("tokenizer.json", r#"{"version": "1.0"}"#),
    ("tokenizer_config.json", r#"{"eos_token": "</s>"}"#),
    ("generation_config.json", r#"{"do_sample": false}"#),
    ("model.safetensors", "pretend these are 24 weight bytes"),
];

pub(super) fn tiny_model(root: &Path) -> FakeRepo {
    FakeRepo {
        kind: RepoKind::Model,
        id: "org/tiny",
        dir: write_repo(&root.join("org-tiny"), &TINY_MODEL),
    }
}

pub(super) fn message(error: Error) -> String {
    match error {
        Error::Hub { message } => message,
        other => panic!("expected a hub error, got {other}"),
    }
}
