//! Provenance of a run: date, commit, whether the work tree was modified, rustc version.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

fn command_output(program: &str, args: &[&str], dir: &Path) -> String {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub(super) fn provenance(root: &Path) -> Value {
    // BENCHMARKS.md itself is left out: an earlier run (`--only ...`) rewrote it, and that
    // changes nothing that is measured.
    let dirty = !command_output(
        "git",
        &[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":!BENCHMARKS.md",
        ],
        root,
    )
    .is_empty();
    json!({
        "date_utc": command_output("date", &["-u", "+%Y-%m-%d %H:%M"], root),
        "commit": command_output("git", &["rev-parse", "--short", "HEAD"], root),
        "work_tree_modified": dirty,
        "rustc": command_output("rustc", &["--version"], root),
    })
}
