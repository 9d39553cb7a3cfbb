//! `--log_completions true`: every completion appended to `OUTPUT_DIR/completions.jsonl` (one
//! JSON object per line), and a few of them printed as a table when a step is logged.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use trl_core::{Error, Result};

/// One line of `completions.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompletionRecord {
    /// The optimizer step that generated it (1-based, as `log_history` counts steps).
    pub step: u64,
    /// The prompt as the dataset holds it (a string or messages).
    pub prompt: Value,
    /// The decoded completion (a string, or a one-message list for conversations).
    pub completion: Value,
    /// Its tokens, up to and including the first end-of-sequence id.
    pub completion_ids: Vec<u32>,
    /// Each reward function's score by name (`null` when it gave none).
    pub rewards: Map<String, Value>,
    /// The weighted sum of the rewards.
    pub reward: f64,
    /// The advantage the loss used.
    pub advantage: f64,
}

/// Appends records to `completions.jsonl` in the output folder.
#[derive(Debug, Clone)]
pub struct CompletionLog {
    path: PathBuf,
    /// Rows printed per logged generation (`num_completions_to_print`; `None`: all).
    to_print: Option<usize>,
    /// Print one row per distinct prompt (`log_unique_prompts`).
    unique_prompts: bool,
}

impl CompletionLog {
    /// A log in `output_dir`, printing `to_print` samples per logged step (all when `None`),
    /// one per prompt when `unique_prompts`.
    pub fn new(output_dir: &Path, to_print: Option<usize>, unique_prompts: bool) -> Self {
        CompletionLog {
            path: output_dir.join("completions.jsonl"),
            to_print,
            unique_prompts,
        }
    }

    /// The same settings writing `eval_completions.jsonl` in `output_dir` (what evaluation
    /// generated; `step` is then the optimizer steps done before it).
    pub fn for_eval(&self, output_dir: &Path) -> Self {
        CompletionLog {
            path: output_dir.join("eval_completions.jsonl"),
            ..self.clone()
        }
    }

    /// Appends `records`, one JSON line each.
    pub fn append(&self, records: &[CompletionRecord]) -> Result<()> {
        let mut text = String::new();
        for record in records {
            text.push_str(&serde_json::to_string(record).map_err(|e| Error::Config {
                path: self.path.clone(),
                message: e.to_string(),
            })?);
            text.push('\n');
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Prints up to `to_print` records as a small table on stderr.
    pub fn print(&self, records: &[CompletionRecord]) {
        let mut seen = std::collections::HashSet::new();
        let rows: Vec<&CompletionRecord> = records
            .iter()
            .filter(|r| !self.unique_prompts || seen.insert(r.prompt.to_string()))
            .take(self.to_print.unwrap_or(usize::MAX))
            .collect();
        if rows.is_empty() {
            return;
        }
        let step = records[0].step;
        eprintln!("── completions at step {step} ──");
        eprintln!(
            "{:<32} │ {:<40} │ {:>7} │ {:>9}",
            "prompt", "completion", "reward", "advantage"
        );
        for record in rows {
            eprintln!(
                "{:<32} │ {:<40} │ {:>7.3} │ {:>9.3}",
                clip(&shown(&record.prompt), 32),
                clip(&shown(&record.completion), 40),
                record.reward,
                record.advantage
            );
        }
    }
}

/// Text of a prompt or completion: the string, or the last message's content.
fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Array(messages) => messages
            .last()
            .and_then(|m| m.get("content"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        other => other.to_string(),
    }
}

/// One line of at most `width` characters (newlines shown as ⏎).
fn clip(text: &str, width: usize) -> String {
    let flat: String = text.replace('\n', "⏎");
    if flat.chars().count() <= width {
        return flat;
    }
    let mut cut: String = flat.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_one_json_line_per_completion() {
        let dir = tempfile::tempdir().unwrap();
        let log = CompletionLog::new(dir.path(), Some(2), false);
        let record = CompletionRecord {
            step: 1,
            prompt: Value::from("2+2="),
            completion: Value::from("4"),
            completion_ids: vec![7, 2],
            rewards: Map::from_iter([("acc".to_string(), Value::from(1.0))]),
            reward: 1.0,
            advantage: 0.5,
        };
        log.append(std::slice::from_ref(&record)).unwrap();
        log.append(&[record]).unwrap();
        let text = std::fs::read_to_string(dir.path().join("completions.jsonl")).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["completion_ids"], serde_json::json!([7, 2]));
        assert_eq!(lines[1]["rewards"]["acc"], 1.0);
    }

    #[test]
    fn clips_long_text_to_one_line() {
        assert_eq!(clip("ab\ncd", 10), "ab⏎cd");
        assert_eq!(clip("abcdef", 4).chars().count(), 4);
    }
}
