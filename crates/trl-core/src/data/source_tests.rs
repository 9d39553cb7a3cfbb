use super::*;

#[test]
fn resolves_files_and_folders_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for file in [
        "data/train.jsonl",
        "data/test.jsonl",
        ".hidden/train.jsonl",
        "__pycache__/train.jsonl",
    ] {
        std::fs::create_dir_all(root.join(file).parent().unwrap()).unwrap();
        std::fs::write(root.join(file), "{\"text\": \"a\"}\n").unwrap();
    }
    let folder = DatasetArgs::new(root.to_str().unwrap());
    let split = resolve_split_files(&folder).unwrap();
    assert_eq!(split.files, [root.join("data/train.jsonl")]);

    let file = DatasetArgs::new(root.join("data/test.jsonl").to_str().unwrap());
    assert_eq!(
        resolve_split_files(&file).unwrap().files,
        [root.join("data/test.jsonl")]
    );
    let wrong_split = DatasetArgs {
        dataset_train_split: "test".to_owned(),
        ..file.clone()
    };
    let error = resolve_split_files(&wrong_split).unwrap_err().to_string();
    assert!(
        error.contains("is a single file, which is the split `train`"),
        "{error}"
    );

    let empty = tempfile::tempdir().unwrap();
    assert!(resolve_split_files(&DatasetArgs::new(empty.path().to_str().unwrap())).is_err());
    let missing = DatasetArgs::new(root.join("nope/train.jsonl").to_str().unwrap());
    assert!(
        resolve_split_files(&missing)
            .unwrap_err()
            .to_string()
            .contains("does not exist")
    );
}

/// A hub dataset already in the cache resolves offline to the snapshot's files of the split.
#[test]
fn resolves_a_cached_hub_dataset_offline() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("datasets--org--tiny");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(snapshot.join("data")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    for split in ["train", "test"] {
        std::fs::write(
            snapshot.join(format!("data/{split}-00000-of-00001.jsonl")),
            "{\"text\": \"a\"}\n",
        )
        .unwrap();
    }
    let options = HubOptions {
        endpoint: "http://127.0.0.1:9".to_owned(),
        cache_dir: cache.path().to_path_buf(),
        token: None,
        offline: true,
        progress: false,
    };
    let split = resolve_split_files_with(&DatasetArgs::new("org/tiny"), &options).unwrap();
    assert_eq!(
        split.files,
        [snapshot.join("data/train-00000-of-00001.jsonl")]
    );

    let test = DatasetArgs {
        dataset_train_split: "test".to_owned(),
        ..DatasetArgs::new("org/tiny")
    };
    assert_eq!(
        resolve_split_files_with(&test, &options).unwrap().files,
        [snapshot.join("data/test-00000-of-00001.jsonl")]
    );

    // A config declared in the hub repo's README.md selects its own files.
    std::fs::create_dir_all(snapshot.join("other")).unwrap();
    std::fs::write(snapshot.join("other/train.jsonl"), "{\"text\": \"b\"}\n").unwrap();
    std::fs::write(
        snapshot.join("README.md"),
        "---\nconfigs:\n- config_name: other\n  data_files:\n  - split: train\n    path: other/*.jsonl\n---\n# tiny\n",
    )
    .unwrap();
    let configured = DatasetArgs {
        dataset_config: Some("other".to_owned()),
        ..DatasetArgs::new("org/tiny")
    };
    assert_eq!(
        resolve_split_files_with(&configured, &options)
            .unwrap()
            .files,
        [snapshot.join("other/train.jsonl")]
    );

    let missing = resolve_split_files_with(&DatasetArgs::new("org/absent"), &options)
        .unwrap_err()
        .to_string();
    assert!(missing.contains("HF_HUB_OFFLINE"), "{missing}");
}
