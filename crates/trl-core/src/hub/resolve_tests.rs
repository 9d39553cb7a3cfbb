//! Models and datasets resolved from local paths and from a hub-style server on 127.0.0.1.

use std::fs;
use std::path::PathBuf;

use super::*;
use crate::Error;
use crate::hub::cache::RepoKind;
use crate::hub::ids::{Location, locate};
use crate::hub::test_hub::*;

#[test]
fn existing_local_folder_with_a_config_is_returned_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let options = HubOptions {
        endpoint: "http://127.0.0.1:1".into(),
        cache_dir: dir.path().join("unused"),
        token: None,
        offline: false,
        progress: false,
    };
    let empty = message(resolve_model_with(path, None, &options).unwrap_err());
    assert!(
        empty.contains("has no config.json") && !empty.contains("tokenizer.json`"),
        "an empty folder names config.json first: {empty}"
    );
    let file = write_repo(dir.path(), &[("config.json", "{}")]).join("config.json");
    assert_eq!(
        resolve_model_with(path, None, &options).unwrap(),
        PathBuf::from(path)
    );
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
fn an_adapter_repo_resolves_to_its_adapter_files() {
    let root = tempfile::tempdir().unwrap();
    let files = [
        (
            "adapter_config.json",
            r#"{"base_model_name_or_path": "org/tiny"}"#,
        ),
        ("adapter_model.safetensors", "adapter weights"),
        ("tokenizer.json", r#"{"version": "1.0"}"#),
    ];
    let adapter = FakeRepo {
        kind: RepoKind::Model,
        id: "org/adapter",
        dir: write_repo(&root.path().join("org-adapter"), &files),
    };
    let hub = FakeHub::start(vec![adapter], vec![]);
    let options = hub.options(&root.path().join("hub"));

    let snapshot = resolve_model_with("org/adapter", None, &options).unwrap();
    for (name, content) in files {
        assert_eq!(fs::read_to_string(snapshot.join(name)).unwrap(), content);
    }
    assert!(crate::lora::is_adapter_dir(&snapshot));
    let urls: Vec<String> = hub.requests().into_iter().map(|seen| seen.url).collect();
    assert!(
        !urls
            .iter()
            .any(|url| url.contains("config.json") && !url.contains("adapter"))
    );

    let offline = HubOptions {
        offline: true,
        ..options.clone()
    };
    assert_eq!(
        resolve_model_with("org/adapter", None, &offline).unwrap(),
        snapshot
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
