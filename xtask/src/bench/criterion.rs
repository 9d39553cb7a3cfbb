//! Reading the kernels' estimates back from criterion's output directory.

use std::path::Path;
use std::time::SystemTime;

use anyhow::Result;
use serde_json::{Value, json};

use super::measure::read_json;

/// Criterion's estimates of every benchmark (re)measured since `since`.
pub(super) fn read_criterion(home: &Path, since: SystemTime) -> Result<Vec<Value>> {
    let mut found = Vec::new();
    let mut stack = vec![home.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "benchmark.json")
                && dir.file_name().is_some_and(|n| n == "new")
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t >= since)
            {
                let info = read_json(&path)?;
                let estimates = read_json(&dir.join("estimates.json"))?;
                let median_s = estimates["median"]["point_estimate"]
                    .as_f64()
                    .unwrap_or(0.0)
                    / 1e9;
                let elements = info["throughput"]["Elements"].as_f64();
                found.push(json!({
                    "id": info["full_id"],
                    "median_s": median_s,
                    "mean_s": estimates["mean"]["point_estimate"].as_f64().unwrap_or(0.0) / 1e9,
                    "elements": elements,
                    "elements_per_s": elements.map(|e| e / median_s),
                }));
            }
        }
    }
    // In the order benches/kernels.rs defines its groups.
    let rank = |id: &str| {
        ["matmul", "attention", "mlp", "elementwise", "optimizer"]
            .iter()
            .position(|g| id.starts_with(g))
    };
    found.sort_by_key(|k| {
        let id = k["id"].as_str().unwrap_or_default().to_string();
        (rank(&id), id)
    });
    Ok(found)
}
