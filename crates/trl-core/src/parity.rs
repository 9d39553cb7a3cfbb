//! Comparing a run against TRL's: the reference cases written by `reference/*_reference.py`
//! (config keys, `log_history`) and the per-metric tolerances the issues state. Used by every
//! method crate's parity tests, so the comparison rules live in one place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::train::state::LogEntry;

/// The repository root (the fixtures live there).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A reference case: the whole JSON, and its TRL config as a key map with the Python-only
/// keys removed and `output_dir` set.
pub fn load_case(
    relative: &str,
    config_key: &str,
    output_dir: &Path,
) -> (Value, BTreeMap<String, Value>) {
    let path = repo_root().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let case: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut map: BTreeMap<String, Value> = case[config_key]
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    for python_only in [
        "model_init_kwargs",
        "disable_tqdm",
        "dataloader_num_workers",
    ] {
        map.remove(python_only);
    }
    map.insert(
        "output_dir".into(),
        Value::from(output_dir.to_string_lossy().to_string()),
    );
    (case, map)
}

/// JSON-lines rows of a dataset file.
pub fn read_jsonl(relative: &str) -> Vec<serde_json::Map<String, Value>> {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Absolute slack for values that are zero in TRL (e.g. rewards at step 1, where policy and
/// reference are the same weights): a relative tolerance means nothing there, and sums of
/// hundreds of float32 log-probs differ by ~1e-5 between two kernels.
const ABSOLUTE_FLOOR: f64 = 1e-4;

fn close(got: f64, want: f64, rtol: f64) -> bool {
    (got - want).abs() <= rtol * want.abs() + ABSOLUTE_FLOOR
}

/// Asserts that every logged step of `got` matches `want` (entries with a `loss`): `loss`
/// within `loss_rtol` (plus a 1e-4 absolute floor for values near zero), each key of `metric_rtol_keys` within `metric_rtol`, each key of
/// `exact_keys` exactly. A key TRL logged that we did not is a failure.
pub fn assert_log_history_matches(
    name: &str,
    got: &[LogEntry],
    want: &Value,
    loss_rtol: f64,
    metric_rtol: f64,
    metric_rtol_keys: &[&str],
    exact_keys: &[&str],
) {
    let want: Vec<&Value> = want
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.get("loss").is_some())
        .collect();
    let got: Vec<&LogEntry> = got.iter().filter(|e| e.contains_key("loss")).collect();
    assert_eq!(got.len(), want.len(), "{name}: number of log entries");
    for (got, want) in got.iter().zip(&want) {
        let step = want["step"].as_u64().unwrap();
        assert_eq!(got["step"].as_u64(), Some(step), "{name}: steps");
        let value = |key: &str| {
            got.get(key)
                .and_then(Value::as_f64)
                .unwrap_or_else(|| panic!("{name} step {step}: we did not log {key}"))
        };
        let check = |key: &str, rtol: f64| {
            if let Some(expected) = want.get(key).and_then(Value::as_f64) {
                let ours = value(key);
                assert!(
                    close(ours, expected, rtol),
                    "{name} step {step}: {key} {ours} vs TRL {expected}"
                );
            }
        };
        check("loss", loss_rtol);
        for key in metric_rtol_keys {
            check(key, metric_rtol);
        }
        for key in exact_keys {
            if let Some(expected) = want.get(*key).and_then(Value::as_f64) {
                assert_eq!(value(key), expected, "{name} step {step}: {key}");
            }
        }
    }
}

/// Asserts the final summary entry (`train_loss`, and the metrics of steps not logged before,
/// which TRL folds into it) matches.
pub fn assert_summary_matches(
    name: &str,
    got: &[LogEntry],
    want: &Value,
    rtol: f64,
    keys: &[&str],
) {
    let got = got
        .last()
        .unwrap_or_else(|| panic!("{name}: empty log history"));
    let want = want
        .as_array()
        .and_then(|w| w.last())
        .unwrap_or_else(|| panic!("{name}: no TRL summary"));
    for key in keys {
        let expected = want.get(*key).and_then(Value::as_f64);
        let ours = got.get(*key).and_then(Value::as_f64);
        match (ours, expected) {
            (Some(ours), Some(expected)) => {
                assert!(
                    close(ours, expected, rtol),
                    "{name} summary: {key} {ours} vs TRL {expected}"
                )
            }
            (None, None) => {}
            _ => panic!("{name} summary: {key} is {ours:?} here and {expected:?} in TRL"),
        }
    }
}
