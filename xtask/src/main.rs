//! Development tasks: `cargo xtask <task>`.
//!
//! - `reference [--check]`: create the Python reference environment (`.venv-reference`, pinned
//!   by `reference/requirements.txt`) if missing and regenerate every fixture and expected value
//!   under `fixtures/` with every script of `reference/` (the list is in `reference.rs`).
//!   Expected numbers are never edited by hand: change the scripts and run this. `--check`
//!   regenerates into a temporary copy and fails if any committed fixture differs.
//! - `bench [--compare trl] [--quick] [--only generation|grpo|lora]`: criterion kernels, end-to-end
//!   SFT/DPO steps, generation and a GRPO step of trl-rs (and, with `--compare trl`, TRL's on
//!   the same model); writes `target/bench/results.json` and `BENCHMARKS.md` (`--only`: that
//!   benchmark and its section alone). See `bench/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod bench;
mod reference;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().cloned().unwrap_or_default();
    match task.as_str() {
        "reference" => reference::reference(&args[1..]),
        "bench" => bench::bench(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\ntasks:\n  reference   regenerate fixtures/ with TRL/transformers from PyPI; --check compares a fresh run with them\n  bench       kernels, training steps, generation, GRPO, LoRA SFT; --compare trl runs TRL's side by side, --quick is short, --only generation|grpo|lora runs one part"
            );
            bail!("unknown task {task:?}")
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repo")
        .to_path_buf()
}

/// The reference venv's python, created and filled from requirements.txt when missing.
pub fn reference_python(root: &Path) -> Result<PathBuf> {
    let venv = root.join(".venv-reference");
    let python = venv.join("bin/python");
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(&python)
            .args(["-m", "pip", "install", "-q", "-r"])
            .arg(root.join("reference/requirements.txt")))?;
    }
    Ok(python)
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}
