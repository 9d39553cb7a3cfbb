//! `HubOptions` from the environment, and what its Debug output hides.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::hub::test_hub::{TOKEN, message, write_repo};

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
