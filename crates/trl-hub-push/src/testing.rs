//! A stand-in for the Hub on 127.0.0.1 (feature `test-server`), for this crate's tests and the
//! `trl` binary's: it answers the calls a push makes, keeps what was committed, and records
//! every request so tests can check paths, headers and bodies.
//!
//! - `GET /api/whoami-v2`: `{"name": "me"}`;
//! - `POST /api/repos/create`: 200 with the repo's URL, 409 when it exists;
//! - `POST /api/models/{repo}/preupload/main`: `lfs` for `*.safetensors`, `*.gguf`, `*.bin`
//!   and files of [`FakeHub::LFS_SIZE`] bytes or more, `regular` otherwise; 404 for a repo
//!   never created;
//! - `POST /{repo}.git/info/lfs/objects/batch`: no action for an object stored already, else
//!   a single `PUT /storage/{oid}` (or, from [`FakeHub::MULTIPART_SIZE`] bytes on, parts of
//!   [`FakeHub::CHUNK`] bytes at `/storage/{oid}/part/{n}` completed by `POST /storage/{oid}`),
//!   and a `verify` at `/verify/{oid}`;
//! - storage checks each object's SHA-256 and size; `verify` checks it is stored;
//! - `POST /api/models/{repo}/commit/main` (NDJSON): inline files decoded, `lfsFile` lines
//!   resolved from storage (400 if missing), the repo's files updated.
//!
//! Every Hub call (not storage) needs `Authorization: Bearer` [`TOKEN`]; otherwise, and for a
//! URL matching an injected failure, the answer's message echoes the Authorization header, as a
//! careless server might, so tests see that the client redacts it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tiny_http::{Header, Method, Request, Response, Server};

/// The one token the fake Hub accepts.
pub const TOKEN: &str = "hf_fakeHubTokenThatMustNeverLeak";

/// One request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub url: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// The `Content-Length` header (storage refuses chunked uploads: it must be there).
    pub content_length: Option<String>,
    pub body: Vec<u8>,
}

/// One commit as the fake Hub applied it.
#[derive(Debug, Clone)]
pub struct Commit {
    pub repo: String,
    pub summary: String,
    /// Path -> bytes, for every file the commit named.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// A failure to inject: requests whose `METHOD url` contains `pattern` get `status`, `times`
/// times (`None`: always).
#[derive(Debug, Clone)]
pub struct Failure {
    pub pattern: String,
    pub status: u16,
    pub times: Option<usize>,
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    repos: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    storage: BTreeMap<String, Vec<u8>>,
    parts: BTreeMap<(String, u64), Vec<u8>>,
    commits: Vec<Commit>,
    failures: Vec<Failure>,
}

/// The running fake Hub; stops when dropped.
pub struct FakeHub {
    /// `http://127.0.0.1:PORT`: the `HF_ENDPOINT` to use.
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHub {
    /// Files from this size on go through LFS.
    pub const LFS_SIZE: u64 = 64 * 1024;
    /// Objects from this size on are uploaded in parts.
    pub const MULTIPART_SIZE: u64 = 1024 * 1024;
    /// The part size of a multipart upload.
    pub const CHUNK: u64 = 400 * 1024;

    /// Starts a fake Hub holding the repos `existing` (empty).
    pub fn start(existing: &[&str], failures: Vec<Failure>) -> Self {
        let server = Arc::new(Server::http("127.0.0.1:0").expect("bind 127.0.0.1"));
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut state = State {
            failures,
            ..State::default()
        };
        for repo in existing {
            state.repos.insert(repo.to_string(), BTreeMap::new());
        }
        let state = Arc::new(Mutex::new(state));
        let thread = {
            let (server, state, endpoint) = (server.clone(), state.clone(), endpoint.clone());
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    answer(request, &state, &endpoint);
                }
            })
        };
        FakeHub {
            endpoint,
            state,
            server,
            thread: Some(thread),
        }
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// Every commit so far, in order.
    pub fn commits(&self) -> Vec<Commit> {
        self.lock().commits.clone()
    }

    /// The files of `repo` now (`None`: no such repo).
    pub fn repo_files(&self, repo: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        self.lock().repos.get(repo).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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

fn answer(mut request: Request, state: &Mutex<State>, endpoint: &str) {
    let header = |name: &str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str().to_owned())
    };
    let (authorization, content_type) = (header("Authorization"), header("Content-Type"));
    let content_length = header("Content-Length");
    let mut body = Vec::new();
    let _ = request.as_reader().read_to_end(&mut body);
    let method = request.method().to_string();
    let url = request.url().to_owned();
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    state.seen.push(Seen {
        method: method.clone(),
        url: url.clone(),
        authorization: authorization.clone(),
        content_type,
        content_length,
        body: body.clone(),
    });
    let echo = format!("rejected request with authorization {authorization:?}");
    let line = format!("{method} {url}");
    let injected = state
        .failures
        .iter_mut()
        .find(|f| line.contains(&f.pattern) && f.times != Some(0));
    let reply = if let Some(failure) = injected {
        failure.times = failure.times.map(|t| t - 1);
        (failure.status, json!({"error": echo}))
    } else if !url.starts_with("/storage/")
        && authorization.as_deref() != Some(&format!("Bearer {TOKEN}"))
    {
        (
            401,
            json!({"error": format!("Invalid credentials: {echo}")}),
        )
    } else {
        route(&mut state, request.method(), &url, &body, endpoint)
    };
    drop(state);
    let (status, value) = reply;
    let mut response = Response::from_data(value.to_string().into_bytes()).with_status_code(status);
    if url.contains("/part/") && status == 200 {
        let etag = format!("\"etag-{}\"", url.rsplit('/').next().unwrap_or(""));
        response.add_header(Header::from_bytes("ETag", etag.as_bytes()).expect("a header"));
    }
    let _ = request.respond(response);
}

fn route(
    state: &mut State,
    method: &Method,
    url: &str,
    body: &[u8],
    endpoint: &str,
) -> (u16, Value) {
    let json_body = || serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
    match (method, url) {
        (Method::Get, "/api/whoami-v2") => (200, json!({"name": "me"})),
        (Method::Post, "/api/repos/create") => create(state, &json_body(), endpoint),
        (Method::Post, _)
            if url.starts_with("/api/models/") && url.ends_with("/preupload/main") =>
        {
            let repo = &url["/api/models/".len()..url.len() - "/preupload/main".len()];
            if !state.repos.contains_key(repo) {
                return (
                    404,
                    json!({"error": format!("Repository not found: {repo}")}),
                );
            }
            preupload(&json_body())
        }
        (Method::Post, _) if url.ends_with(".git/info/lfs/objects/batch") => {
            batch(state, &json_body(), endpoint)
        }
        (Method::Put, _) if url.starts_with("/storage/") => {
            put(state, &url["/storage/".len()..], body)
        }
        (Method::Post, _) if url.starts_with("/storage/") => {
            complete(state, &url["/storage/".len()..], &json_body())
        }
        (Method::Post, _) if url.starts_with("/verify/") => {
            let oid = &url["/verify/".len()..];
            let stored = state.storage.get(oid).map(|b| b.len() as u64);
            match stored == json_body()["size"].as_u64() && stored.is_some() {
                true => (200, json!({})),
                false => (404, json!({"error": format!("object {oid} not stored")})),
            }
        }
        (Method::Post, _) if url.starts_with("/api/models/") && url.ends_with("/commit/main") => {
            let repo = url["/api/models/".len()..url.len() - "/commit/main".len()].to_owned();
            commit(state, repo, body, endpoint)
        }
        _ => (
            404,
            json!({"error": format!("no route for {method} {url}")}),
        ),
    }
}

fn create(state: &mut State, payload: &Value, endpoint: &str) -> (u16, Value) {
    let name = payload["name"].as_str().unwrap_or("");
    let repo = match payload["organization"].as_str().filter(|o| !o.is_empty()) {
        Some(org) => format!("{org}/{name}"),
        None => format!("me/{name}"),
    };
    if state.repos.contains_key(&repo) {
        return (409, json!({"error": "You already created this model repo"}));
    }
    state.repos.insert(repo.clone(), BTreeMap::new());
    (200, json!({"url": format!("{endpoint}/{repo}")}))
}

fn preupload(payload: &Value) -> (u16, Value) {
    let files: Vec<Value> = payload["files"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let path = f["path"].as_str().unwrap_or("");
            let big = f["size"].as_u64().unwrap_or(0) >= FakeHub::LFS_SIZE;
            let binary = [".safetensors", ".gguf", ".bin"]
                .iter()
                .any(|e| path.ends_with(e));
            let mode = if big || binary { "lfs" } else { "regular" };
            json!({"path": path, "uploadMode": mode, "shouldIgnore": false})
        })
        .collect();
    (200, json!({"files": files}))
}

fn batch(state: &State, payload: &Value, endpoint: &str) -> (u16, Value) {
    let objects: Vec<Value> = payload["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            let (oid, size) = (
                o["oid"].as_str().unwrap_or(""),
                o["size"].as_u64().unwrap_or(0),
            );
            if state.storage.contains_key(oid) {
                return json!({"oid": oid, "size": size});
            }
            let href = format!("{endpoint}/storage/{oid}");
            let mut upload = json!({"href": href});
            if size >= FakeHub::MULTIPART_SIZE {
                let mut header = json!({"chunk_size": FakeHub::CHUNK.to_string()});
                for part in 1..=size.div_ceil(FakeHub::CHUNK) {
                    header[part.to_string()] = Value::from(format!("{href}/part/{part}"));
                }
                upload["header"] = header;
            }
            let verify = json!({"href": format!("{endpoint}/verify/{oid}")});
            json!({"oid": oid, "size": size, "actions": {"upload": upload, "verify": verify}})
        })
        .collect();
    (200, json!({"transfer": "basic", "objects": objects}))
}

fn put(state: &mut State, path: &str, body: &[u8]) -> (u16, Value) {
    match path.split_once("/part/") {
        Some((oid, part)) => {
            state
                .parts
                .insert((oid.to_owned(), part.parse().unwrap_or(0)), body.to_vec());
            (200, json!({}))
        }
        None => store(state, path, body.to_vec()),
    }
}

fn complete(state: &mut State, oid: &str, payload: &Value) -> (u16, Value) {
    let mut bytes = Vec::new();
    for (index, part) in payload["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let number = part["partNumber"].as_u64().unwrap_or(0);
        let etag_ok = part["etag"] == format!("\"etag-{number}\"").as_str();
        match state.parts.get(&(oid.to_owned(), number)) {
            Some(data) if etag_ok && number == index as u64 + 1 => bytes.extend_from_slice(data),
            _ => return (400, json!({"error": format!("bad part {number}")})),
        }
    }
    store(state, oid, bytes)
}

fn store(state: &mut State, oid: &str, bytes: Vec<u8>) -> (u16, Value) {
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if digest != oid {
        return (
            400,
            json!({"error": format!("content hashes to {digest}, not {oid}")}),
        );
    }
    state.storage.insert(oid.to_owned(), bytes);
    (200, json!({}))
}

fn commit(state: &mut State, repo: String, body: &[u8], endpoint: &str) -> (u16, Value) {
    if !state.repos.contains_key(&repo) {
        return (
            404,
            json!({"error": format!("Repository not found: {repo}")}),
        );
    }
    let mut summary = String::new();
    let mut files = BTreeMap::new();
    for line in String::from_utf8_lossy(body).lines() {
        let item: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        let value = &item["value"];
        let path = value["path"].as_str().unwrap_or("").to_owned();
        match item["key"].as_str() {
            Some("header") => summary = value["summary"].as_str().unwrap_or("").to_owned(),
            Some("file") => match BASE64.decode(value["content"].as_str().unwrap_or("")) {
                Ok(bytes) if value["encoding"] == "base64" => drop(files.insert(path, bytes)),
                _ => return (400, json!({"error": format!("bad content for {path}")})),
            },
            Some("lfsFile") => match state.storage.get(value["oid"].as_str().unwrap_or("")) {
                Some(bytes) if Some(bytes.len() as u64) == value["size"].as_u64() => {
                    files.insert(path, bytes.clone());
                }
                _ => {
                    return (
                        400,
                        json!({"error": format!("LFS object of {path} not uploaded")}),
                    );
                }
            },
            _ => return (400, json!({"error": format!("bad commit line {line}")})),
        }
    }
    if summary.is_empty() {
        return (400, json!({"error": "no header line"}));
    }
    let repo_files = state.repos.entry(repo.clone()).or_default();
    repo_files.extend(files.clone());
    let oid = format!("{:040x}", state.commits.len() + 1);
    state.commits.push(Commit {
        repo: repo.clone(),
        summary,
        files,
    });
    (
        200,
        json!({"commitUrl": format!("{endpoint}/{repo}/commit/{oid}"), "commitOid": oid}),
    )
}
