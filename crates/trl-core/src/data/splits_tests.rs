use super::*;

fn files(list: &[&str]) -> Vec<String> {
    list.iter().map(|f| f.to_string()).collect()
}

fn select(
    list: &[&str],
    readme: Option<&str>,
    split: &str,
    config: Option<&str>,
) -> Result<Vec<String>, String> {
    let configs = readme
        .map(|r| parse_readme_configs(r).unwrap())
        .unwrap_or_default();
    select_split(&files(list), &configs, config, split).map(|(files, _)| files)
}

/// Each layout with the train files `datasets.load_dataset_builder(folder).config.data_files`
/// reports (datasets 5.2).
#[test]
fn default_splits_match_datasets() {
    let cases: [(&[&str], &[&str]); 7] = [
        (&["test.jsonl", "train.jsonl"], &["train.jsonl"]),
        (
            &[
                "data/test-00000-of-00001.jsonl",
                "data/train-00000-of-00002.jsonl",
                "data/train-00001-of-00002.jsonl",
                "other.jsonl",
            ],
            &[
                "data/train-00000-of-00002.jsonl",
                "data/train-00001-of-00002.jsonl",
            ],
        ),
        (&["a.jsonl", "sub/b.jsonl"], &["a.jsonl", "sub/b.jsonl"]),
        (
            &[
                "readme_train.jsonl",
                "train/x.jsonl",
                "train/y.jsonl",
                "validation/z.jsonl",
            ],
            &["train/x.jsonl", "train/y.jsonl"],
        ),
        (
            &["my_train_set.jsonl", "other.jsonl"],
            &["my_train_set.jsonl"],
        ),
        (
            &["dev.jsonl", "eval_1.jsonl", "train2.jsonl"],
            &["train2.jsonl"],
        ),
        (
            &["data/test.jsonl", "data/train.jsonl", "extra/train.jsonl"],
            &["data/train.jsonl", "extra/train.jsonl"],
        ),
    ];
    for (layout, train) in cases {
        assert_eq!(
            select(layout, None, "train", None),
            Ok(files(train)),
            "{layout:?}"
        );
    }
    assert_eq!(
        select(&["x/training-part.jsonl", "y.jsonl"], None, "train", None),
        Ok(files(&["x/training-part.jsonl"]))
    );
    assert_eq!(
        select(
            &["dev.jsonl", "eval_1.jsonl", "train2.jsonl"],
            None,
            "validation",
            None
        ),
        Ok(files(&["dev.jsonl"]))
    );
}

#[test]
fn a_missing_split_names_the_ones_there() {
    let error = select(&["test.jsonl", "trainer.jsonl"], None, "train", None).unwrap_err();
    assert_eq!(
        error,
        "no split `train` (found: test); pass one with --dataset_train_split"
    );
}

#[test]
fn shard_names_give_the_split() {
    assert_eq!(shard_split("data/train-00000-of-00002.parquet"), "train");
    assert_eq!(
        shard_split("data/my-split-00003-of-00010.jsonl"),
        "my-split"
    );
    let found = default_splits(&files(&[
        "data/zeta-00000-of-00001.json",
        "data/test-00000-of-00001.json",
        "data/train-00000-of-00001.json",
    ]));
    let names: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["train", "test", "zeta"]);
}

const TWO_CONFIGS: &str = "---
configs:
- config_name: default
  data_files:
  - split: train
    path: default/train*
- config_name: other
  data_files:
  - split: train
    path: \"other/train.jsonl\"
  - split: test
    path: other/test.jsonl
---
# A dataset card
";

const DEFAULT_FLAG: &str = "---
license: mit
configs:
- config_name: one
  data_files: \"d/*.jsonl\"
- config_name: two
  data_files: [\"e.jsonl\"]
  default: true
- config_name: three
  data_dir: d
- config_name: nested
  data_files: d/a.jsonl
  field: data
---
";

/// The same layouts and READMEs given to `datasets.load_dataset_builder(folder, name=...)`.
#[test]
fn readme_configs_choose_the_files_like_datasets() {
    let layout = [
        "default/train.jsonl",
        "other/test.jsonl",
        "other/train.jsonl",
    ];
    assert_eq!(
        select(&layout, Some(TWO_CONFIGS), "train", None),
        Ok(files(&["default/train.jsonl"]))
    );
    assert_eq!(
        select(&layout, Some(TWO_CONFIGS), "train", Some("default")),
        Ok(files(&["default/train.jsonl"]))
    );
    assert_eq!(
        select(&layout, Some(TWO_CONFIGS), "test", Some("other")),
        Ok(files(&["other/test.jsonl"]))
    );
    assert_eq!(
        select(&layout, Some(TWO_CONFIGS), "train", Some("nope")),
        Err("no config `nope` (found: default, other)".to_owned())
    );

    let layout = ["d/a.jsonl", "d/b.jsonl", "e.jsonl"];
    assert_eq!(
        select(&layout, Some(DEFAULT_FLAG), "train", None),
        Ok(files(&["e.jsonl"]))
    );
    assert_eq!(
        select(&layout, Some(DEFAULT_FLAG), "train", Some("one")),
        Ok(files(&["d/a.jsonl", "d/b.jsonl"]))
    );
    assert_eq!(
        select(&layout, Some(DEFAULT_FLAG), "train", Some("three")),
        Ok(files(&["d/a.jsonl", "d/b.jsonl"]))
    );
    let configs = parse_readme_configs(DEFAULT_FLAG).unwrap();
    let (chosen, field) = select_split(&files(&layout), &configs, Some("nested"), "train").unwrap();
    assert_eq!(
        (chosen, field),
        (files(&["d/a.jsonl"]), Some("data".to_owned()))
    );
}

#[test]
fn config_names_without_a_readme_and_bad_readmes() {
    assert_eq!(
        select(&["a.jsonl"], None, "train", Some("default")),
        Ok(files(&["a.jsonl"]))
    );
    assert!(
        select(&["a.jsonl"], None, "train", Some("foo"))
            .unwrap_err()
            .contains("only config is `default`")
    );
    let several = "---\nconfigs:\n- config_name: a\n  data_files: x.jsonl\n- config_name: b\n  data_files: y.jsonl\n---\n";
    assert!(
        select(&["x.jsonl"], Some(several), "train", None)
            .unwrap_err()
            .contains("pick one with --dataset_config")
    );
    assert_eq!(parse_readme_configs("# no header\n"), Ok(Vec::new()));
    assert_eq!(
        parse_readme_configs("---\nlicense: mit\n---\n"),
        Ok(Vec::new())
    );
    assert!(parse_readme_configs("---\nconfigs: [\n---\n").is_err());
    assert!(
        parse_readme_configs("---\nconfigs:\n- data_files: x\n---\n")
            .unwrap_err()
            .contains("config_name")
    );
    assert!(
        parse_readme_configs("---\nconfigs:\n- config_name: a\n  data_files: 3\n---\n")
            .unwrap_err()
            .contains("data_files")
    );
}
