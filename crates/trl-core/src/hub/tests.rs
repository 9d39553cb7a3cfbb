//! Tests of the hub module against a local hub-style HTTP server on 127.0.0.1.

use super::*;
use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tiny_http::{Header, Request, Response, Server};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const TOKEN: &str = "hf_secretTokenThatMustNotLeak";

/// A repo the fake hub serves at commit [`COMMIT`] (and branch `main`) from a folder.
struct FakeRepo {
    kind: RepoKind,
    id: &'static str,
    dir: PathBuf,
}

/// One request the fake hub received.
#[derive(Clone, Debug)]
struct Seen {
    url: String,
    authorization: Option<String>,
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
struct FakeHub {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHub {
    fn start(repos: Vec<FakeRepo>, failures: Vec<(&'static str, u16)>) -> Self {
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

    fn options(&self, cache_dir: &Path) -> HubOptions {
        HubOptions {
            endpoint: self.base.clone(),
            cache_dir: cache_dir.to_path_buf(),
            token: None,
            offline: false,
            progress: false,
        }
    }

    fn requests(&self) -> Vec<Seen> {
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

type Reply = Response<Cursor<Vec<u8>>>;

fn answer(request: &Request, base: &str, repos: &[FakeRepo], failures: &[(&str, u16)]) -> Reply {
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

fn repo_info(rest: &str, repos: &[FakeRepo]) -> Reply {
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
fn ranged(bytes: &[u8], range: Option<String>) -> Reply {
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

fn not_found(error_code: &str) -> Reply {
    Response::from_data(b"not found".to_vec())
        .with_status_code(404)
        .with_header(make_header("X-Error-Code", error_code))
}

fn header(request: &Request, name: &'static str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|header| header.field.equiv(name))
        .map(|header| header.value.as_str().to_owned())
}

fn make_header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap()
}

/// FNV-1a, as a stable content-derived stand-in for the hub's etags.
fn fingerprint(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf29ce484222325u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x100000001b3)
    });
    format!("{hash:016x}")
}

/// Every file under `dir`, hidden ones included, as the hub lists them.
fn all_files(dir: &Path) -> Vec<PathBuf> {
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

fn write_repo(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    for (name, content) in files {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
    dir.to_path_buf()
}

const TINY_MODEL: [(&str, &str); 5] = [
    ("config.json", r#"{"model_type": "llama"}"#),
    ("tokenizer.json", r#"{"version": "1.0"}"#),
    ("tokenizer_config.json", r#"{"eos_token": "</s>"}"#),
    ("generation_config.json", r#"{"do_sample": false}"#),
    ("model.safetensors", "pretend these are 24 weight bytes"),
];

fn tiny_model(root: &Path) -> FakeRepo {
    FakeRepo {
        kind: RepoKind::Model,
        id: "org/tiny",
        dir: write_repo(&root.join("org-tiny"), &TINY_MODEL),
    }
}

fn message(error: Error) -> String {
    match error {
        Error::Hub { message } => message,
        other => panic!("expected a hub error, got {other}"),
    }
}

#[test]
fn options_from_env_follow_huggingface_hub() {
    let home = tempfile::tempdir().unwrap();
    let from = |pairs: &[(&str, &str)]| {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        HubOptions::from_vars(&|name| vars.get(name).cloned(), Some(home.path().into()))
    };

    let defaults = from(&[]).unwrap();
    assert_eq!(
        defaults.cache_dir,
        home.path().join(".cache/huggingface/hub")
    );
    assert_eq!(defaults.endpoint, "https://huggingface.co");
    assert_eq!(defaults.token, None);
    assert!(!defaults.offline && defaults.progress);

    let xdg = from(&[("XDG_CACHE_HOME", "/xdg")]).unwrap();
    assert_eq!(xdg.cache_dir, PathBuf::from("/xdg/huggingface/hub"));

    let hf_home = home.path().join("hf");
    write_repo(&hf_home, &[("token", "  hf_from_file \n")]);
    let hf_home = hf_home.to_str().unwrap();
    let with_home = from(&[("HF_HOME", hf_home), ("HF_ENDPOINT", "http://mirror.test/")]).unwrap();
    assert_eq!(with_home.cache_dir, Path::new(hf_home).join("hub"));
    assert_eq!(with_home.token.as_deref(), Some("hf_from_file"));
    assert_eq!(with_home.endpoint, "http://mirror.test");

    let overrides = from(&[
        ("HF_HOME", hf_home),
        ("HF_HUB_CACHE", "~/elsewhere"),
        ("HF_TOKEN", "hf_from_env"),
        ("HF_HUB_OFFLINE", "1"),
        ("HF_HUB_DISABLE_PROGRESS_BARS", "true"),
    ])
    .unwrap();
    assert_eq!(overrides.cache_dir, home.path().join("elsewhere"));
    assert_eq!(overrides.token.as_deref(), Some("hf_from_env"));
    assert!(overrides.offline && !overrides.progress);

    for (value, offline) in [("YES", true), ("on", true), ("0", false), ("false", false)] {
        assert_eq!(
            from(&[("HF_HUB_OFFLINE", value)]).unwrap().offline,
            offline,
            "{value}"
        );
    }

    let homeless = HubOptions::from_vars(&|_| None, None).unwrap_err();
    assert!(message(homeless).contains("HF_HOME"));
}

#[test]
fn debug_output_hides_the_token() {
    let options = HubOptions {
        endpoint: "https://user:pass@hub.test".into(),
        cache_dir: "/cache".into(),
        token: Some(TOKEN.into()),
        offline: false,
        progress: false,
    };
    let printed = format!("{options:?}");
    assert!(
        !printed.contains(TOKEN) && !printed.contains("pass@"),
        "{printed}"
    );
}

#[test]
fn redact_removes_the_token_and_url_credentials() {
    let text = format!("GET https://me:{TOKEN}@hub.test/x failed: Bearer {TOKEN}");
    let clean = redact(&text, Some(TOKEN));
    assert_eq!(
        clean,
        "GET https://<credentials>@hub.test/x failed: Bearer <token>"
    );
    assert_eq!(
        redact("see https://hub.test/a@b", None),
        "see https://hub.test/a@b"
    );
}

#[test]
fn existing_local_folder_is_returned_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let options = HubOptions {
        endpoint: "http://127.0.0.1:1".into(),
        cache_dir: dir.path().join("unused"),
        token: None,
        offline: false,
        progress: false,
    };
    assert_eq!(
        resolve_model_with(path, None, &options).unwrap(),
        PathBuf::from(path)
    );
    let file = write_repo(dir.path(), &[("config.json", "{}")]).join("config.json");
    let error = resolve_model_with(file.to_str().unwrap(), None, &options).unwrap_err();
    assert!(message(error).contains("is a file"));
}

#[test]
fn missing_local_paths_and_bad_ids_are_clear_errors() {
    for path in [
        "./no/such/model",
        "/no/such/model",
        "~/no-such-model",
        "a/b/c",
        "..\\x",
    ] {
        let error = resolve_model(path, None).unwrap_err();
        assert!(message(error).contains("does not exist"), "{path}");
    }
    for id in ["org/-name", "org--x/name", "a..b", "org/name!", ""] {
        assert!(matches!(locate(id), Err(Error::Hub { .. })), "{id}");
    }
    assert!(matches!(
        locate("Qwen/Qwen2.5-0.5B-Instruct"),
        Ok(Location::Hub)
    ));
    assert!(matches!(locate("gpt2"), Ok(Location::Hub)));
}

#[test]
fn model_download_lands_in_the_standard_cache_layout() {
    let root = tempfile::tempdir().unwrap();
    let hub = FakeHub::start(vec![tiny_model(root.path())], vec![]);
    let cache = root.path().join("hf_home/hub");

    let snapshot = resolve_model_with("org/tiny", None, &hub.options(&cache)).unwrap();

    let repo_dir = cache.join("models--org--tiny");
    assert_eq!(snapshot, repo_dir.join("snapshots").join(COMMIT));
    for (name, content) in TINY_MODEL {
        assert_eq!(
            fs::read_to_string(snapshot.join(name)).unwrap(),
            content,
            "{name}"
        );
        #[cfg(unix)]
        assert!(snapshot.join(name).symlink_metadata().unwrap().is_symlink());
    }
    assert_eq!(
        fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        COMMIT
    );
    assert!(!repo_dir.join("refs").join(COMMIT).exists());
    let blob = fingerprint(TINY_MODEL[4].1.as_bytes());
    assert!(repo_dir.join("blobs").join(blob).is_file());

    let urls: Vec<String> = hub.requests().into_iter().map(|seen| seen.url).collect();
    assert_eq!(urls[0], "/api/models/org/tiny/revision/main");
    assert!(
        urls.iter()
            .any(|url| url == &format!("/org/tiny/resolve/{COMMIT}/config.json"))
    );
    assert!(urls.iter().any(|url| url.starts_with("/cdn/")), "{urls:?}");
    assert!(
        !urls.iter().any(|url| url.contains("special_tokens_map")),
        "optional and absent"
    );
}

#[test]
fn sharded_weights_fetch_every_shard_in_the_index() {
    let root = tempfile::tempdir().unwrap();
    let index = r#"{"metadata": {}, "weight_map": {
        "a": "model-00001-of-00002.safetensors",
        "b": "model-00002-of-00002.safetensors",
        "c": "model-00001-of-00002.safetensors"}}"#;
    let mut files = TINY_MODEL[..3].to_vec();
    files.extend([
        ("model.safetensors.index.json", index),
        ("model-00001-of-00002.safetensors", "shard one"),
        ("model-00002-of-00002.safetensors", "shard two"),
    ]);
    let repo = FakeRepo {
        kind: RepoKind::Model,
        id: "sharded",
        dir: write_repo(&root.path().join("sharded"), &files),
    };
    let hub = FakeHub::start(vec![repo], vec![]);
    let cache = root.path().join("hub");

    let snapshot = resolve_model_with("sharded", Some(COMMIT), &hub.options(&cache)).unwrap();

    assert_eq!(
        snapshot,
        cache.join("models--sharded/snapshots").join(COMMIT)
    );
    for (name, content) in files {
        assert_eq!(
            fs::read_to_string(snapshot.join(name)).unwrap(),
            content,
            "{name}"
        );
    }
    let offline = HubOptions {
        offline: true,
        ..hub.options(&cache)
    };
    assert_eq!(
        resolve_model_with("sharded", Some(COMMIT), &offline).unwrap(),
        snapshot
    );
}

#[test]
fn cached_model_resolves_offline_and_again_online_without_downloads() {
    let root = tempfile::tempdir().unwrap();
    let hub = FakeHub::start(vec![tiny_model(root.path())], vec![]);
    let cache = root.path().join("hub");
    let online = hub.options(&cache);
    let first = resolve_model_with("org/tiny", None, &online).unwrap();
    let requests_after_download = hub.requests().len();

    let offline = HubOptions {
        offline: true,
        ..hub.options(&cache)
    };
    assert_eq!(
        resolve_model_with("org/tiny", None, &offline).unwrap(),
        first
    );
    assert_eq!(
        hub.requests().len(),
        requests_after_download,
        "offline must not call"
    );

    assert_eq!(
        resolve_model_with("org/tiny", None, &online).unwrap(),
        first
    );
    let new_urls: Vec<String> = hub.requests()[requests_after_download..]
        .iter()
        .map(|seen| seen.url.clone())
        .collect();
    assert_eq!(
        new_urls,
        ["/api/models/org/tiny/revision/main"],
        "only the commit lookup"
    );
}

#[test]
fn an_unreachable_hub_falls_back_to_the_cache() {
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("hub");
    let hub = FakeHub::start(vec![tiny_model(root.path())], vec![]);
    let first = resolve_model_with("org/tiny", None, &hub.options(&cache)).unwrap();
    let gone = hub.options(&cache);
    drop(hub);

    assert_eq!(resolve_model_with("org/tiny", None, &gone).unwrap(), first);
    fs::remove_file(first.join("tokenizer.json")).unwrap();
    let text = message(resolve_model_with("org/tiny", None, &gone).unwrap_err());
    assert!(
        text.contains("cannot be reached") && text.contains("`tokenizer.json`"),
        "{text}"
    );
    // An answer from the hub, even an error, is not a reason to fall back.
    let refusing = FakeHub::start(vec![], vec![("/api/", 500)]);
    let options = HubOptions {
        endpoint: refusing.base.clone(),
        ..gone
    };
    let text = message(resolve_model_with("org/tiny", None, &options).unwrap_err());
    assert!(text.contains("HTTP 500"), "{text}");
}

#[test]
fn offline_with_an_empty_cache_names_the_id_and_the_file() {
    let cache = tempfile::tempdir().unwrap();
    let options = HubOptions {
        endpoint: "http://127.0.0.1:1".into(),
        cache_dir: cache.path().into(),
        token: None,
        offline: true,
        progress: false,
    };
    let text = message(resolve_model_with("org/tiny", None, &options).unwrap_err());
    assert!(
        text.contains("`org/tiny`") && text.contains("`config.json`"),
        "{text}"
    );
    assert!(text.contains("HF_HUB_OFFLINE"), "{text}");
    let text =
        message(resolve_dataset_files_with("org/data", None, &|_| true, &options).unwrap_err());
    assert!(
        text.contains("`org/data`") && text.contains("HF_HUB_OFFLINE"),
        "{text}"
    );
}

#[test]
fn a_missing_required_file_is_named() {
    let root = tempfile::tempdir().unwrap();
    let mut repo = tiny_model(root.path());
    fs::remove_file(repo.dir.join("tokenizer.json")).unwrap();
    repo.id = "org/no-tokenizer";
    let listed_but_gone = tiny_model(&root.path().join("second"));
    let hub = FakeHub::start(
        vec![repo, listed_but_gone],
        vec![(
            "resolve/0123456789abcdef0123456789abcdef01234567/tokenizer_config.json",
            404,
        )],
    );
    let options = hub.options(&root.path().join("hub"));

    let text = message(resolve_model_with("org/no-tokenizer", None, &options).unwrap_err());
    assert!(text.contains("has no file `tokenizer.json`"), "{text}");
    let text = message(resolve_model_with("org/tiny", None, &options).unwrap_err());
    assert!(
        text.contains("`tokenizer_config.json`") && text.contains("not found"),
        "{text}"
    );
    assert!(text.contains("HTTP 404"), "{text}");
    let text = message(resolve_model_with("org/unknown", None, &options).unwrap_err());
    assert!(
        text.contains("`org/unknown` was not found") && text.contains("HF_TOKEN"),
        "{text}"
    );
    let text = message(resolve_model_with("org/tiny", Some("v9"), &options).unwrap_err());
    assert!(text.contains("no revision `v9`"), "{text}");
}

#[test]
fn the_token_is_sent_as_a_bearer_header() {
    let root = tempfile::tempdir().unwrap();
    let hub = FakeHub::start(vec![tiny_model(root.path())], vec![]);
    let options = HubOptions {
        token: Some(TOKEN.into()),
        ..hub.options(&root.path().join("hub"))
    };
    resolve_model_with("org/tiny", None, &options).unwrap();
    let bearer = format!("Bearer {TOKEN}");
    for seen in hub
        .requests()
        .iter()
        .filter(|seen| !seen.url.starts_with("/cdn/"))
    {
        assert_eq!(
            seen.authorization.as_deref(),
            Some(bearer.as_str()),
            "{}",
            seen.url
        );
    }
}

#[test]
fn the_token_appears_in_no_error_message() {
    let root = tempfile::tempdir().unwrap();
    for (pattern, status) in [
        ("/api/", 401),
        ("/api/", 500),
        ("/resolve/", 500),
        ("/resolve/", 401),
    ] {
        let hub = FakeHub::start(vec![tiny_model(root.path())], vec![(pattern, status)]);
        let options = HubOptions {
            token: Some(TOKEN.into()),
            ..hub.options(&root.path().join("hub"))
        };
        let text = message(resolve_model_with("org/tiny", None, &options).unwrap_err());
        assert!(!text.contains(TOKEN), "{pattern} {status}: {text}");
        // The server echoed the header: the redaction, not luck, kept it out.
        assert!(
            text.contains("Bearer <token>") && text.contains("org/tiny"),
            "{text}"
        );
    }
    let unreachable = HubOptions {
        endpoint: format!("http://user:{TOKEN}@127.0.0.1:1"),
        cache_dir: root.path().join("hub"),
        token: Some(TOKEN.into()),
        offline: false,
        progress: false,
    };
    let text = message(resolve_model_with("org/tiny", None, &unreachable).unwrap_err());
    assert!(
        !text.contains(TOKEN) && text.contains("HF_HUB_OFFLINE"),
        "{text}"
    );
}

#[test]
fn dataset_data_files_are_downloaded_and_found_offline() {
    let root = tempfile::tempdir().unwrap();
    let repo = FakeRepo {
        kind: RepoKind::Dataset,
        id: "org/prefs",
        dir: write_repo(
            &root.path().join("prefs"),
            &[
                (".gitattributes", "*.parquet filter=lfs"),
                ("README.md", "# prefs"),
                ("dataset_info.json", "{}"),
                ("data/train.jsonl", "{\"prompt\": \"hi\"}\n"),
                ("data/test.parquet", "PAR1"),
                ("extra/valid.json", "[]"),
            ],
        ),
    };
    let hub = FakeHub::start(vec![repo], vec![]);
    let cache = root.path().join("hub");
    let online = hub.options(&cache);
    let snapshot = cache.join("datasets--org--prefs/snapshots").join(COMMIT);

    let all = resolve_dataset_files_with("org/prefs", None, &|_| true, &online).unwrap();
    let expected = ["data/test.parquet", "data/train.jsonl", "extra/valid.json"];
    assert_eq!(all, expected.map(|name| snapshot.join(name)));
    assert_eq!(
        fs::read_to_string(&all[1]).unwrap(),
        "{\"prompt\": \"hi\"}\n"
    );
    assert!(
        hub.requests()
            .iter()
            .any(|seen| seen.url == "/api/datasets/org/prefs/revision/main")
    );
    assert!(
        !hub.requests()
            .iter()
            .any(|seen| seen.url.contains("README"))
    );

    let train_only = |path: &str| path.contains("train");
    let offline = HubOptions {
        offline: true,
        ..hub.options(&cache)
    };
    let cached = resolve_dataset_files_with("org/prefs", None, &train_only, &offline).unwrap();
    assert_eq!(cached, [snapshot.join("data/train.jsonl")]);

    let local = resolve_dataset_files_with(
        root.path().join("prefs").to_str().unwrap(),
        None,
        &train_only,
        &offline,
    )
    .unwrap();
    assert_eq!(local, [root.path().join("prefs/data/train.jsonl")]);
}

#[test]
fn file_names_escaping_the_snapshot_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut files = TINY_MODEL[..3].to_vec();
    files.push((
        "model.safetensors.index.json",
        r#"{"weight_map": {"a": "../../evil.safetensors"}}"#,
    ));
    let repo = FakeRepo {
        kind: RepoKind::Model,
        id: "org/evil",
        dir: write_repo(&root.path().join("evil"), &files),
    };
    let hub = FakeHub::start(vec![repo], vec![]);
    let text = message(
        resolve_model_with("org/evil", None, &hub.options(&root.path().join("hub"))).unwrap_err(),
    );
    assert!(text.contains("outside the repo"), "{text}");
    assert!(
        !hub.requests()
            .iter()
            .any(|seen| seen.url.contains("evil.safetensors"))
    );
}
