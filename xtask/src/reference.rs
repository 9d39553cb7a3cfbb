//! `cargo xtask reference [--check]`: every fixture under `fixtures/` (and the sample datasets
//! under `datasets/` that a script writes) comes from the scripts in `reference/`, run with the
//! pinned Python environment. `--check` runs them on a temporary copy of the repository and
//! compares the result with the committed files byte for byte.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{reference_python, repo_root, run};

/// Every reference script, in the order they run, with its arguments. `make_fixtures.py` comes
/// first: the models, tokenizer and templates it writes are what the training references load.
/// A script that is not there (yet) is skipped with a note. Add new scripts here.
const SCRIPTS: &[(&str, &[&str])] = &[
    ("make_fixtures.py", &[]),
    ("sft_reference.py", &["--overwrite-datasets"]),
    ("dpo_reference.py", &[]),
    ("kto_reference.py", &[]),
    ("reward_reference.py", &[]),
    ("reference_free_reference.py", &[]),
    ("sampler_reference.py", &[]),
    ("shard_reference.py", &[]),
    ("data_reference.py", &[]),
    ("generate_reference.py", &[]),
    ("grpo_reference.py", &[]),
    ("rewards_reference.py", &[]),
    ("grpo_loss_reference.py", &[]),
    ("gguf_reference.py", &[]),
    ("ppo_reference.py", &[]),
    ("eval_reference.py", &[]),
    ("grpo_eval_reference.py", &[]),
    ("peft_reference.py", &[]),
];

/// Scripts that need their own environment: TRL removed PPO after 1.12, so
/// `ppo_reference.py` runs with trl 1.12 from `.venv-ppo` (reference/requirements-ppo.txt).
const OWN_VENV: &[(&str, &str)] = &[("ppo_reference.py", ".venv-ppo")];

/// The folders the scripts write, compared by `--check`.
const OUTPUTS: &[&str] = &["fixtures", "datasets"];

/// What a `--check` copy needs besides [`OUTPUTS`]: the scripts and their inputs.
const INPUTS: &[&str] = &["reference"];

/// Environment that keeps a run deterministic and offline: one thread everywhere, no hub, no GPU.
const ENV: &[(&str, &str)] = &[
    ("PYTHONHASHSEED", "0"),
    ("OMP_NUM_THREADS", "1"),
    ("MKL_NUM_THREADS", "1"),
    ("OPENBLAS_NUM_THREADS", "1"),
    ("TOKENIZERS_PARALLELISM", "false"),
    ("CUDA_VISIBLE_DEVICES", ""),
    ("HF_HUB_OFFLINE", "1"),
    ("HF_DATASETS_OFFLINE", "1"),
    ("HF_HUB_DISABLE_TELEMETRY", "1"),
    ("PYTHONDONTWRITEBYTECODE", "1"),
];

/// Entry point: `args` are what follows `reference` on the command line.
pub fn reference(args: &[String]) -> Result<()> {
    let root = repo_root();
    let python = reference_python(&root)?;
    match args.first().map(String::as_str) {
        None => regenerate(&python, &root),
        Some("--check") => check(&python, &root),
        Some(other) => bail!("cargo xtask reference: unknown option {other:?} (only --check)"),
    }
}

/// Runs every script of [`SCRIPTS`] against the tree at `root`, writing its fixtures there.
fn regenerate(python: &Path, root: &Path) -> Result<()> {
    for (script, args) in SCRIPTS {
        let path = root.join("reference").join(script);
        if !path.exists() {
            eprintln!("reference: {script} is not there, skipped");
            continue;
        }
        let own = OWN_VENV.iter().find(|(name, _)| name == script);
        let python = match own {
            Some((_, venv)) => {
                let own_python = repo_root().join(venv).join("bin/python");
                if !own_python.exists() {
                    eprintln!(
                        "reference: {script} needs {venv} (see reference/requirements-ppo.txt), skipped"
                    );
                    continue;
                }
                own_python
            }
            None => python.to_path_buf(),
        };
        eprintln!("reference: {script} {}", args.join(" "));
        let mut cmd = Command::new(&python);
        cmd.arg(&path)
            .args(*args)
            .current_dir(root.join("reference"));
        for (key, value) in ENV {
            cmd.env(key, value);
        }
        run(&mut cmd)?;
    }
    Ok(())
}

/// Regenerates into a temporary copy and compares it with the committed fixtures.
fn check(python: &Path, root: &Path) -> Result<()> {
    let copy = std::env::temp_dir().join(format!("trl-rs-reference-check-{}", std::process::id()));
    if copy.exists() {
        std::fs::remove_dir_all(&copy)?;
    }
    for dir in INPUTS.iter().chain(OUTPUTS) {
        copy_tree(&root.join(dir), &copy.join(dir))?;
    }
    regenerate(python, &copy)?;
    let mut differences = Vec::new();
    for dir in OUTPUTS {
        differences.extend(compare_trees(
            &root.join(dir),
            &copy.join(dir),
            Path::new(dir),
        )?);
    }
    if differences.is_empty() {
        std::fs::remove_dir_all(&copy)?;
        eprintln!("reference --check: every fixture is what the scripts produce");
        return Ok(());
    }
    for line in &differences {
        eprintln!("{line}");
    }
    bail!(
        "{} fixture file(s) differ from what the scripts produce (fresh copy kept in {})",
        differences.len(),
        copy.display()
    )
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "__pycache__" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
        }
    }
    Ok(())
}

/// Relative paths of every file under `dir`, skipping `__pycache__`.
fn files_under(dir: &Path) -> Result<BTreeSet<PathBuf>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in
            std::fs::read_dir(&current).with_context(|| format!("reading {}", current.display()))?
        {
            let entry = entry?;
            if entry.file_name() == "__pycache__" {
                continue;
            }
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else {
                out.insert(entry.path().strip_prefix(dir)?.to_path_buf());
            }
        }
    }
    Ok(out)
}

/// One line per file that is missing, new or different in `fresh` compared with `committed`.
fn compare_trees(committed: &Path, fresh: &Path, label: &Path) -> Result<Vec<String>> {
    let (old, new) = (files_under(committed)?, files_under(fresh)?);
    let mut out = Vec::new();
    for path in old.union(&new) {
        let shown = label.join(path);
        match (old.contains(path), new.contains(path)) {
            (true, false) => out.push(format!("  {}: committed, not produced", shown.display())),
            (false, true) => out.push(format!("  {}: produced, not committed", shown.display())),
            _ => {
                let (a, b) = (
                    std::fs::read(committed.join(path))?,
                    std::fs::read(fresh.join(path))?,
                );
                if a != b {
                    out.push(format!(
                        "  {}: differs{}",
                        shown.display(),
                        first_difference(&a, &b)
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// ` at line N` (and both versions of that line when it is text), for a diff summary.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    let mut lines = a.lines().zip(b.lines()).enumerate();
    match lines.find(|(_, (x, y))| x != y) {
        Some((i, (x, y))) => {
            let cut = |s: &str| s.chars().take(160).collect::<String>();
            format!(
                " at line {}:\n    committed: {}\n    produced:  {}",
                i + 1,
                cut(x),
                cut(y)
            )
        }
        None => " (one is a prefix of the other)".into(),
    }
}
