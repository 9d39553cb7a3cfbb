//! What a folder says about the model in it, for its model card: the library that loads it
//! (`peft` for an adapter, `gguf` for GGUF files, else `transformers`), the task, an
//! adapter's base model, the license its README declares, and the run's final metrics from
//! `trainer_state.json`'s `log_history`.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// How the folder's model is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Library {
    Transformers,
    Peft,
    Gguf,
}

impl Library {
    /// The Hub's `library_name`.
    pub fn name(self) -> &'static str {
        match self {
            Library::Transformers => "transformers",
            Library::Peft => "peft",
            Library::Gguf => "gguf",
        }
    }
}

/// What the card generator reads from a folder.
#[derive(Debug, Clone)]
pub struct FolderFacts {
    pub library: Library,
    /// A sequence classifier (a reward model) rather than a causal LM.
    pub classifier: bool,
    /// `adapter_config.json`'s `base_model_name_or_path`.
    pub adapter_base: Option<String>,
    /// The GGUF files, for the usage snippet.
    pub gguf_files: Vec<String>,
    /// The last `log_history` entry with a `loss` and the run's summary entry (the one with
    /// `train_loss`), as (name, value) pairs.
    pub last_logged: Vec<(String, f64)>,
    pub summary: Vec<(String, f64)>,
}

/// Reads the facts of `dir` (missing files simply leave facts out; unreadable JSON is an error
/// naming the file).
pub fn folder_facts(dir: &Path) -> Result<FolderFacts> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    let mut gguf_files: Vec<String> = names
        .iter()
        .filter(|n| n.ends_with(".gguf"))
        .cloned()
        .collect();
    gguf_files.sort();
    let adapter = read_json(&dir.join("adapter_config.json"))?;
    let config = read_json(&dir.join("config.json"))?;
    let library = if adapter.is_some() {
        Library::Peft
    } else if !gguf_files.is_empty() && config.is_none() {
        Library::Gguf
    } else {
        Library::Transformers
    };
    let classifier = config.as_ref().is_some_and(|c| {
        c["architectures"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| {
                a.as_str()
                    .is_some_and(|a| a.ends_with("ForSequenceClassification"))
            })
    });
    let adapter_base = adapter
        .as_ref()
        .and_then(|a| a["base_model_name_or_path"].as_str().map(str::to_owned));
    let history = read_json(&dir.join("trainer_state.json"))?
        .and_then(|state| state["log_history"].as_array().cloned())
        .unwrap_or_default();
    let numbers = |entry: Option<&Value>| -> Vec<(String, f64)> {
        entry
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
            .collect()
    };
    Ok(FolderFacts {
        library,
        classifier,
        adapter_base,
        gguf_files,
        last_logged: numbers(history.iter().rev().find(|e| e.get("loss").is_some())),
        summary: numbers(history.iter().rev().find(|e| e.get("train_loss").is_some())),
    })
}

/// The `license:` of a README's YAML front matter (a base model's card), if any.
pub fn readme_license(readme: &Path) -> Option<String> {
    let text = std::fs::read_to_string(readme).ok()?;
    let front = text.strip_prefix("---")?.split("\n---").next()?;
    front.lines().find_map(|line| {
        let value = line
            .strip_prefix("license:")?
            .trim()
            .trim_matches(['"', '\'']);
        (!value.is_empty()).then(|| value.to_owned())
    })
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Protocol {
                what: format!("reading {}", path.display()),
                message: format!("not valid JSON: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_library_task_and_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("config.json"),
            r#"{"architectures": ["Qwen2ForSequenceClassification"]}"#,
        )
        .unwrap();
        std::fs::write(
            d.join("trainer_state.json"),
            r#"{"log_history": [{"loss": 2.0, "step": 1}, {"loss": 1.5, "step": 2}, {"train_loss": 1.75, "step": 2}]}"#,
        )
        .unwrap();
        let facts = folder_facts(d).unwrap();
        assert_eq!(facts.library, Library::Transformers);
        assert!(facts.classifier);
        assert_eq!(
            facts.last_logged,
            [("loss".to_string(), 1.5), ("step".to_string(), 2.0)]
        );
        assert_eq!(
            facts.summary,
            [("train_loss".to_string(), 1.75), ("step".to_string(), 2.0)]
        );
        std::fs::write(
            d.join("adapter_config.json"),
            r#"{"base_model_name_or_path": "Qwen/Qwen3-0.6B"}"#,
        )
        .unwrap();
        let facts = folder_facts(d).unwrap();
        assert_eq!(
            (facts.library, facts.adapter_base.as_deref()),
            (Library::Peft, Some("Qwen/Qwen3-0.6B"))
        );
    }

    #[test]
    fn gguf_folders_and_readme_licenses() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m-q8_0.gguf"), b"GGUF").unwrap();
        let facts = folder_facts(dir.path()).unwrap();
        assert_eq!((facts.library, facts.gguf_files.len()), (Library::Gguf, 1));
        let readme = dir.path().join("README.md");
        std::fs::write(
            &readme,
            "---\nlibrary_name: x\nlicense: \"apache-2.0\"\n---\n# M\n",
        )
        .unwrap();
        assert_eq!(readme_license(&readme).as_deref(), Some("apache-2.0"));
        std::fs::write(&readme, "# no front matter\nlicense: mit\n").unwrap();
        assert_eq!(readme_license(&readme), None);
    }
}
