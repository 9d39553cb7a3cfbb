//! Pushes against the fake Hub of `trl_hub_push::testing`: every request checked (token,
//! paths, bodies), the committed bytes compared with the local files, and the failure cases
//! (401, 404, a 500 retried, a 500 that persists, no server at all).

use std::path::Path;
use std::time::Duration;

use trl_hub_push::testing::{Failure, FakeHub, TOKEN};
use trl_hub_push::{Error, FolderPush, HubClient, HubSettings, MARKER, RetryPolicy};

const FAST: RetryPolicy = RetryPolicy {
    attempts: 3,
    first_wait: Duration::from_millis(5),
    max_wait: Duration::from_millis(10),
};

fn client(hub: &FakeHub, token: &str) -> HubClient {
    let settings = HubSettings {
        endpoint: hub.endpoint.clone(),
        token: token.to_owned(),
    };
    HubClient::new(settings, FAST)
}

/// A model-like folder: small text files, a weight file (LFS, one PUT), a large file (LFS in
/// parts), a file in a subfolder, and a checkpoint folder that is not pushed.
fn model_folder(dir: &Path) {
    std::fs::write(
        dir.join("config.json"),
        br#"{"architectures": ["Qwen2ForCausalLM"]}"#,
    )
    .unwrap();
    std::fs::write(dir.join("empty.txt"), b"").unwrap();
    let weights: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(dir.join("model.safetensors"), weights).unwrap();
    let big: Vec<u8> = (0..(FakeHub::MULTIPART_SIZE + 12_345))
        .map(|i| (i * 31 % 253) as u8)
        .collect();
    std::fs::write(dir.join("big.bin"), big).unwrap();
    std::fs::create_dir_all(dir.join("runs")).unwrap();
    std::fs::write(dir.join("runs/events.txt"), b"log").unwrap();
    std::fs::create_dir_all(dir.join("checkpoint-2")).unwrap();
    std::fs::write(dir.join("checkpoint-2/optimizer.safetensors"), b"moments").unwrap();
    std::fs::write(
        dir.join("trainer_state.json"),
        br#"{"log_history": [{"loss": 0.5, "step": 2}, {"train_loss": 0.75, "step": 2}]}"#,
    )
    .unwrap();
}

#[test]
fn a_folder_is_committed_byte_for_byte_with_a_model_card() {
    let hub = FakeHub::start(&[], vec![]);
    let dir = tempfile::tempdir().unwrap();
    model_folder(dir.path());
    let hub_client = client(&hub, TOKEN);
    let (repo, created) = hub_client.ensure_repo("org/model", Some(true)).unwrap();
    assert_eq!((repo.as_str(), created), ("org/model", true));
    let (report, skipped) = hub_client
        .push_folder(&repo, dir.path(), &FolderPush::default(), "Upload model")
        .unwrap();
    assert_eq!(skipped, ["checkpoint-2/"]);
    assert_eq!(report.lfs, ["big.bin", "model.safetensors"]);
    let files = hub.repo_files("org/model").unwrap();
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "README.md",
            "big.bin",
            "config.json",
            "empty.txt",
            "model.safetensors",
            "runs/events.txt",
            "trainer_state.json"
        ]
    );
    for name in names.iter().filter(|n| **n != "README.md") {
        assert_eq!(
            files[*name],
            std::fs::read(dir.path().join(name)).unwrap(),
            "{name}"
        );
    }
    let card = String::from_utf8(files["README.md"].clone()).unwrap();
    assert!(
        card.starts_with(
            "---\nlibrary_name: transformers\nmodel_name: model\ntags:\n- trl-rs\n---\n"
        ),
        "{card}"
    );
    assert!(
        card.contains(MARKER) && card.contains("| train_loss | 0.75 |"),
        "{card}"
    );
    assert!(
        !dir.path().join("README.md").exists(),
        "the card is uploaded, not written"
    );
    assert_eq!(hub.commits().len(), 1);
    assert_eq!(hub.commits()[0].summary, "Upload model");
    check_requests(&hub);
}

/// The token goes to every Hub call and to no storage URL; the calls are the expected ones.
fn check_requests(hub: &FakeHub) {
    let requests = hub.requests();
    let create = &requests[0];
    assert_eq!(
        (create.method.as_str(), create.url.as_str()),
        ("POST", "/api/repos/create")
    );
    let payload: serde_json::Value = serde_json::from_slice(&create.body).unwrap();
    assert_eq!(
        payload,
        serde_json::json!({"name": "model", "organization": "org", "visibility": "private"})
    );
    let mut puts = 0;
    for request in &requests {
        if request.url.starts_with("/storage/") {
            assert_eq!(request.authorization, None, "{}", request.url);
            puts += usize::from(request.method == "PUT");
            // Storage refuses chunked bodies: every upload states its length.
            let length = request.body.len().to_string();
            assert_eq!(request.content_length.as_deref(), Some(length.as_str()));
        } else {
            assert_eq!(
                request.authorization.as_deref(),
                Some(format!("Bearer {TOKEN}").as_str())
            );
        }
    }
    // model.safetensors in one PUT, big.bin in 3 parts of CHUNK bytes, both verified.
    assert_eq!(puts, 1 + 3);
    let verified = requests
        .iter()
        .filter(|r| r.url.starts_with("/verify/"))
        .count();
    assert_eq!(verified, 2);
    let urls: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.url))
        .collect();
    assert!(
        urls.contains(&"POST /api/models/org/model/preupload/main".to_string()),
        "{urls:?}"
    );
    assert!(
        urls.contains(&"POST /org/model.git/info/lfs/objects/batch".to_string()),
        "{urls:?}"
    );
    assert_eq!(
        urls.last().unwrap(),
        "POST /api/models/org/model/commit/main"
    );
    let commit = requests.last().unwrap();
    assert_eq!(commit.content_type.as_deref(), Some("application/x-ndjson"));
    let batch = requests.iter().find(|r| r.url.ends_with("/batch")).unwrap();
    assert_eq!(
        batch.content_type.as_deref(),
        Some("application/vnd.git-lfs+json")
    );
}

#[test]
fn pushing_again_updates_the_repo_and_skips_stored_objects() {
    let hub = FakeHub::start(&["org/model"], vec![]);
    let dir = tempfile::tempdir().unwrap();
    model_folder(dir.path());
    let hub_client = client(&hub, TOKEN);
    let (repo, created) = hub_client.ensure_repo("org/model", None).unwrap();
    assert!(!created, "409: the repo existed");
    hub_client
        .push_folder(&repo, dir.path(), &FolderPush::default(), "first")
        .unwrap();
    std::fs::write(dir.path().join("config.json"), b"{}").unwrap();
    std::fs::write(dir.path().join("README.md"), b"# my own card\n").unwrap();
    let before = hub.requests().len();
    hub_client
        .push_folder(&repo, dir.path(), &FolderPush::default(), "second")
        .unwrap();
    let files = hub.repo_files("org/model").unwrap();
    assert_eq!(files["config.json"], b"{}");
    assert_eq!(
        files["README.md"], b"# my own card\n",
        "the user's README is kept"
    );
    let second = &hub.requests()[before..];
    assert!(
        second.iter().all(|r| !r.url.starts_with("/storage/")),
        "stored objects are not sent again"
    );
}

#[test]
fn a_name_without_namespace_goes_under_the_token_user() {
    let hub = FakeHub::start(&[], vec![]);
    let (repo, _) = client(&hub, TOKEN).ensure_repo("solo", None).unwrap();
    assert_eq!(repo, "me/solo");
    assert_eq!(hub.requests()[0].url, "/api/whoami-v2");
}

#[test]
fn a_refused_token_is_a_401_error_that_never_shows_it() {
    let hub = FakeHub::start(&[], vec![]);
    let wrong = "hf_wrongTokenThatMustNotLeakEither";
    let err = client(&hub, wrong)
        .ensure_repo("org/model", None)
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Status { status: 401, .. }), "{text}");
    assert!(
        text.contains("HF_TOKEN") && text.contains("creating the repo org/model"),
        "{text}"
    );
    assert!(!text.contains(wrong) && text.contains("<token>"), "{text}");
}

#[test]
fn a_missing_repo_is_a_404_error() {
    let hub = FakeHub::start(&[], vec![]);
    let dir = tempfile::tempdir().unwrap();
    model_folder(dir.path());
    let err = client(&hub, TOKEN)
        .push_folder("org/absent", dir.path(), &FolderPush::default(), "x")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("404") && err.contains("does not exist"),
        "{err}"
    );
    assert!(hub.commits().is_empty());
}

#[test]
fn a_server_error_is_retried_and_the_push_succeeds() {
    let failures = vec![Failure {
        pattern: "PUT /storage/".into(),
        status: 500,
        times: Some(2),
    }];
    let hub = FakeHub::start(&["org/model"], failures);
    let dir = tempfile::tempdir().unwrap();
    model_folder(dir.path());
    client(&hub, TOKEN)
        .push_folder("org/model", dir.path(), &FolderPush::default(), "x")
        .unwrap();
    let files = hub.repo_files("org/model").unwrap();
    assert_eq!(
        files["big.bin"],
        std::fs::read(dir.path().join("big.bin")).unwrap()
    );
}

#[test]
fn a_persistent_server_error_names_the_file_and_commits_nothing() {
    let hub = FakeHub::start(&["org/model"], vec![]);
    let dir = tempfile::tempdir().unwrap();
    model_folder(dir.path());
    let big = std::fs::read(dir.path().join("big.bin")).unwrap();
    let oid: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&big)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    drop(hub);
    let failures = vec![Failure {
        pattern: format!("PUT /storage/{oid}/part/2"),
        status: 500,
        times: None,
    }];
    let hub = FakeHub::start(&["org/model"], failures);
    let err = client(&hub, TOKEN)
        .push_folder("org/model", dir.path(), &FolderPush::default(), "x")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("uploading big.bin (LFS), part 2") && err.contains("500"),
        "{err}"
    );
    assert!(
        err.contains("after 3 attempts") && !err.contains(TOKEN),
        "{err}"
    );
    assert!(
        hub.requests()
            .iter()
            .all(|r| !r.url.ends_with("/commit/main")),
        "no commit call"
    );
    assert_eq!(hub.repo_files("org/model").unwrap().len(), 0);
}

#[test]
fn an_unreachable_server_is_a_network_error_after_retries() {
    // A port freed on 127.0.0.2: the other tests' servers bind 127.0.0.1 only, so none of them
    // can take it between this bind and the client's connection attempts.
    let port = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = HubSettings {
        endpoint: format!("http://127.0.0.2:{port}"),
        token: TOKEN.into(),
    };
    let err = HubClient::new(settings, FAST)
        .ensure_repo("org/model", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("network failure after 3 attempts") && !err.contains(TOKEN),
        "{err}"
    );
}
