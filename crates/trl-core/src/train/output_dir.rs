//! The output folder before a run starts: re-running into a folder that holds another run
//! would replace its model with the new one, leave its `checkpoint-N` folders beside the new
//! ones (a later `--resume_from_checkpoint true` would pick the old run's last) and append to
//! its logs. Such a folder is refused unless the run resumes it or `--overwrite_output_dir
//! true` asks to clear the old run first.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::args::TrainingArguments;
use super::checkpoint::STATE_FILE;
use crate::{Error, Result};

/// Files a finished trl-rs run leaves at the top of its output folder (besides weights).
const RUN_FILES: [&str; 9] = [
    STATE_FILE,
    "log_history.jsonl",
    "config.json",
    "generation_config.json",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
];

/// Refuses `args.output_dir` when it holds another run (a `checkpoint-N` folder, a
/// `trainer_state.json` or top-level `*.safetensors`) and the run neither resumes it
/// (`resume_from_checkpoint` true or a path) nor overwrites it (`overwrite_output_dir`).
/// Deletes nothing: call it early, before any model loads.
pub fn check_output_dir(args: &TrainingArguments) -> Result<()> {
    if resumes(args) || args.overwrite_output_dir {
        return Ok(());
    }
    let dir = Path::new(&args.output_dir);
    let previous = previous_run(dir)?;
    if previous.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = previous
        .iter()
        .take(4)
        .map(|p| {
            p.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        })
        .collect();
    Err(Error::Config {
        path: dir.to_path_buf(),
        message: format!(
            "this output folder already holds another run ({}{}); pass \
             --overwrite_output_dir true to clear it, --resume_from_checkpoint true to \
             continue it, or choose another --output_dir",
            names.join(", "),
            if previous.len() > 4 { ", ..." } else { "" }
        ),
    })
}

/// [`check_output_dir`], then with `overwrite_output_dir` (and no resume) removes what the
/// previous run left: its `checkpoint-N` folders, top-level weights, model, tokenizer and
/// state files, JSONL log and `runs/` events. Other files stay. Call it right before training.
pub fn prepare_output_dir(args: &TrainingArguments) -> Result<()> {
    check_output_dir(args)?;
    if resumes(args) || !args.overwrite_output_dir {
        return Ok(());
    }
    for path in previous_run(Path::new(&args.output_dir))? {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// Whether `resume_from_checkpoint` asks to continue a run (true, "true" or a path).
fn resumes(args: &TrainingArguments) -> bool {
    match &args.resume_from_checkpoint {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !matches!(s.as_str(), "false" | "False" | ""),
        Some(_) => true,
    }
}

/// What a previous run left in `dir`: its `checkpoint-N` folders, top-level weights and run
/// files (empty when it holds no run's checkpoints, state or weights).
fn previous_run(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(Error::Config {
                path: dir.to_path_buf(),
                message: "--output_dir names a file, not a folder".into(),
            });
        }
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut found = Vec::new();
    let mut holds_a_run = false;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let checkpoint = path.is_dir()
            && name
                .strip_prefix("checkpoint-")
                .is_some_and(|n| n.parse::<u64>().is_ok());
        let weights = path.is_file() && name.ends_with(".safetensors");
        if checkpoint || weights || name == STATE_FILE {
            holds_a_run = true;
        }
        let run_file = path.is_file() && RUN_FILES.contains(&name.as_str());
        // TensorBoard's default logging_dir: the old run's curves would mix with the new.
        let events = path.is_dir() && name == "runs";
        if checkpoint || weights || run_file || events {
            found.push(path);
        }
    }
    found.sort();
    Ok(if holds_a_run { found } else { Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path) -> TrainingArguments {
        TrainingArguments {
            output_dir: dir.display().to_string(),
            ..TrainingArguments::default()
        }
    }

    fn finished_run(dir: &Path) {
        std::fs::create_dir_all(dir.join("checkpoint-500")).unwrap();
        std::fs::write(dir.join("checkpoint-500").join(STATE_FILE), "{}").unwrap();
        std::fs::write(dir.join("model.safetensors"), "x").unwrap();
        std::fs::write(dir.join(STATE_FILE), "{}").unwrap();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    }

    #[test]
    fn missing_empty_or_unrelated_folders_are_fine() {
        let dir = tempfile::tempdir().unwrap();
        prepare_output_dir(&args(&dir.path().join("new"))).unwrap();
        prepare_output_dir(&args(dir.path())).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        prepare_output_dir(&args(dir.path())).unwrap();
    }

    #[test]
    fn a_previous_run_is_refused_unless_resumed_or_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        finished_run(dir.path());
        let err = prepare_output_dir(&args(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("checkpoint-500") && err.contains("overwrite_output_dir"),
            "{err}"
        );
        let resume = TrainingArguments {
            resume_from_checkpoint: Some(Value::Bool(true)),
            ..args(dir.path())
        };
        prepare_output_dir(&resume).unwrap();
        assert!(dir.path().join("checkpoint-500").is_dir());

        let overwrite = TrainingArguments {
            overwrite_output_dir: true,
            ..args(dir.path())
        };
        check_output_dir(&overwrite).unwrap();
        assert!(
            dir.path().join("checkpoint-500").is_dir(),
            "checking deletes nothing"
        );
        prepare_output_dir(&overwrite).unwrap();
        assert!(!dir.path().join("checkpoint-500").exists());
        assert!(!dir.path().join("model.safetensors").exists());
        assert!(!dir.path().join(STATE_FILE).exists());
        assert!(
            dir.path().join("notes.txt").is_file(),
            "the user's files stay"
        );
        prepare_output_dir(&args(dir.path())).unwrap();
    }
}
