//! How long each row is in tokens, measured the way TRL's trainers tokenize it, and how many rows
//! `max_length` would cut (SFT, DPO, KTO) or drop (reward).
//!
//! The length of a row is that of the longest sequence it feeds the model:
//! - standard text: `text + eos` (TRL appends the EOS token when the text lacks it), tokenized
//!   with the special tokens the tokenizer adds; prompt-completion and preference rows are
//!   `prompt + completion + eos` and the longer of `prompt + chosen + eos` and
//!   `prompt + rejected + eos`; a prompt alone gets no EOS;
//! - conversations: the chat template applied to `messages`, `prompt + completion`, or
//!   `prompt + chosen` / `prompt + rejected`; a prompt alone gets the generation prompt after a
//!   user or tool turn and continues an assistant turn (TRL's `apply_chat_template`). The row's
//!   `tools` and `chat_template_kwargs` columns reach the template, as in TRL.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rayon::prelude::*;
use serde_json::{Map, Value};

use super::dataset::Dataset;
use super::format::{DatasetFormat, FormatKind, Style};
use super::method::Method;
use super::problem::{Position, Problem, ProblemList, listing};
use super::stream::PIECE_ROWS;
use crate::tokenizer::{RenderOptions, Tokenizer};
use crate::{Error, Result};

/// Token lengths over a dataset's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLengths {
    /// Rows measured.
    pub rows: usize,
    /// Median row length (nearest rank).
    pub p50: usize,
    /// 95th percentile (nearest rank).
    pub p95: usize,
    pub max: usize,
    /// The limit rows were compared with.
    pub max_length: Option<usize>,
    /// Rows longer than `max_length`.
    pub over_max_length: usize,
}

impl TokenLengths {
    /// One line for a report, e.g. `tokens per row: p50 35, p95 60, max 72; 0 rows over
    /// max_length 1024`.
    pub fn summary(&self, method: Method) -> String {
        let mut line = format!(
            "tokens per row: p50 {}, p95 {}, max {}",
            self.p50, self.p95, self.max
        );
        if let Some(max_length) = self.max_length {
            let rows = if self.over_max_length == 1 {
                "row"
            } else {
                "rows"
            };
            line.push_str(&format!(
                "; {} {rows} longer than max_length {max_length} ({} by {method})",
                self.over_max_length,
                method.over_length_effect()
            ));
        }
        line
    }
}

/// Measures every row of a valid dataset, on every core. Fails with every row the tokenizer or
/// chat template rejects (e.g. a template that raises on roles that do not alternate).
pub fn token_lengths(
    dataset: &Dataset,
    tokenizer: &Tokenizer,
    max_length: Option<usize>,
) -> Result<TokenLengths> {
    let measured = dataset
        .rows()
        .par_chunks(PIECE_ROWS)
        .enumerate()
        .map(|(piece, rows)| {
            let mut measured = Measured::default();
            for (offset, row) in rows.iter().enumerate() {
                let index = piece * PIECE_ROWS + offset;
                let length = row_length(row, dataset.format, &dataset.text_field, tokenizer);
                let (file, position) = dataset.origin_parts(index);
                measured.add(length, || (file.to_path_buf(), position));
            }
            measured
        })
        .collect::<Vec<Measured>>()
        .into_iter()
        .fold(Measured::default(), |mut earlier, later| {
            earlier.append(later);
            earlier
        });
    let mut problems = ProblemList::default();
    match measured.finish(max_length, &mut problems) {
        Some(lengths) => Ok(lengths),
        None => {
            let (listed, total) = problems.into_parts();
            Err(Error::Data {
                message: format!("rows that cannot be tokenized: {}", listing(&listed, total)),
            })
        }
    }
}

/// Token lengths of rows measured so far, as a histogram (exact percentiles in memory that
/// grows with the longest row, not the row count), and the rows that could not be measured.
#[derive(Debug, Default)]
pub(crate) struct Measured {
    /// Rows per length.
    histogram: BTreeMap<usize, usize>,
    failed: ProblemList,
}

impl Measured {
    /// Adds one row's length, or its failure at the place `locate` gives.
    pub(crate) fn add(
        &mut self,
        length: Result<usize>,
        locate: impl FnOnce() -> (PathBuf, Position),
    ) {
        match length {
            Ok(length) => *self.histogram.entry(length).or_default() += 1,
            Err(error) => {
                let (file, position) = locate();
                self.failed.push(Problem {
                    file: Some(file),
                    position: Some(position),
                    ..Problem::dataset(
                        "a row the tokenizer and chat template accept",
                        error.to_string(),
                    )
                });
            }
        }
    }

    /// Rows measured after those here.
    pub(crate) fn append(&mut self, later: Measured) {
        for (length, rows) in later.histogram {
            *self.histogram.entry(length).or_default() += rows;
        }
        self.failed.append(later.failed);
    }

    /// The summary, or `None` after adding every failed row to `problems`.
    pub(crate) fn finish(
        self,
        max_length: Option<usize>,
        problems: &mut ProblemList,
    ) -> Option<TokenLengths> {
        if self.failed.total() > 0 {
            problems.append(self.failed);
            return None;
        }
        Some(summarize(&self.histogram, max_length))
    }
}

fn summarize(histogram: &BTreeMap<usize, usize>, max_length: Option<usize>) -> TokenLengths {
    let rows: usize = histogram.values().sum();
    // Nearest rank: the length of the row at 1-based rank ceil(percent * rows / 100).
    let rank = |percent: usize| -> usize {
        let wanted = (percent * rows).div_ceil(100).max(1);
        let mut seen = 0;
        for (&length, &count) in histogram {
            seen += count;
            if seen >= wanted {
                return length;
            }
        }
        0
    };
    TokenLengths {
        rows,
        p50: rank(50),
        p95: rank(95),
        max: histogram.keys().next_back().copied().unwrap_or(0),
        max_length,
        over_max_length: max_length.map_or(0, |limit| {
            histogram.range(limit + 1..).map(|(_, &count)| count).sum()
        }),
    }
}

/// The length of the longest sequence `row` (of a dataset in `format`) feeds the model.
pub(crate) fn row_length(
    row: &Map<String, Value>,
    format: DatasetFormat,
    text_field: &str,
    tokenizer: &Tokenizer,
) -> Result<usize> {
    let column = |name: &str| row.get(name).cloned().unwrap_or(Value::Null);
    let text = |name: &str| {
        row.get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let messages = |name: &str| {
        row.get(name)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let options = template_options(row);
    let eos = tokenizer.eos_token().unwrap_or_default().to_owned();
    let text_length = |text: String| -> Result<usize> {
        let text = if eos.is_empty() || text.ends_with(&eos) {
            text
        } else {
            text + &eos
        };
        Ok(tokenizer.encode(&text, true)?.len())
    };
    let chat_length = |conversation: Vec<Value>| -> Result<usize> {
        Ok(tokenizer
            .apply_chat_template_ids(&Value::Array(conversation), &options)?
            .len())
    };
    let joined = |first: &str, second: &str| [messages(first), messages(second)].concat();
    match (format.kind, format.style) {
        (FormatKind::LanguageModeling, Style::Standard) => text_length(text(text_field)),
        (FormatKind::LanguageModeling, Style::Conversational) => chat_length(messages("messages")),
        (FormatKind::PromptOnly, Style::Standard) => {
            Ok(tokenizer.encode(&text("prompt"), true)?.len())
        }
        (FormatKind::PromptOnly, Style::Conversational) => {
            let prompt = column("prompt");
            let last_role = prompt
                .as_array()
                .and_then(|m| m.last())
                .and_then(|m| m.get("role"))
                .and_then(Value::as_str);
            let options = match last_role {
                Some("assistant") => RenderOptions {
                    continue_final_message: Some("content".to_owned()),
                    ..options.clone()
                },
                _ => RenderOptions {
                    add_generation_prompt: true,
                    ..options.clone()
                },
            };
            Ok(tokenizer.apply_chat_template_ids(&prompt, &options)?.len())
        }
        (FormatKind::PromptCompletion | FormatKind::UnpairedPreference, Style::Standard) => {
            text_length(text("prompt") + &text("completion"))
        }
        (FormatKind::PromptCompletion | FormatKind::UnpairedPreference, Style::Conversational) => {
            chat_length(joined("prompt", "completion"))
        }
        (FormatKind::Preference, Style::Standard) => {
            Ok(text_length(text("prompt") + &text("chosen"))?
                .max(text_length(text("prompt") + &text("rejected"))?))
        }
        (FormatKind::Preference, Style::Conversational) => {
            Ok(chat_length(joined("prompt", "chosen"))?
                .max(chat_length(joined("prompt", "rejected"))?))
        }
        (FormatKind::ImplicitPreference, Style::Standard) => {
            Ok(text_length(text("chosen"))?.max(text_length(text("rejected"))?))
        }
        (FormatKind::ImplicitPreference, Style::Conversational) => {
            Ok(chat_length(messages("chosen"))?.max(chat_length(messages("rejected"))?))
        }
    }
}

/// The row's `tools` (a list, or a JSON string of one) and `chat_template_kwargs`.
fn template_options(row: &Map<String, Value>) -> RenderOptions {
    let tools = match row.get("tools") {
        Some(Value::Array(tools)) => Some(Value::Array(tools.clone())),
        Some(Value::String(text)) => serde_json::from_str::<Value>(text)
            .ok()
            .filter(Value::is_array),
        _ => None,
    };
    let extra = row
        .get("chat_template_kwargs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    RenderOptions {
        tools,
        extra,
        ..RenderOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::data::{DatasetArgs, load_dataset};

    fn fixture_tokenizer(model: &str) -> Tokenizer {
        Tokenizer::from_dir(format!(
            "{}/../../fixtures/models/{model}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn sample(name: &str) -> String {
        format!("{}/../../datasets/{name}.jsonl", env!("CARGO_MANIFEST_DIR"))
    }

    /// `(p50, p95, max)` of each sample dataset, as transformers 5.23 + TRL 1.16 tokenize it
    /// (reference/data_reference.py, `token_lengths`).
    #[test]
    fn token_lengths_match_transformers() {
        let fixture = crate::parity::read_fixture("fixtures/expected/data.json");
        let cases = fixture["token_lengths"].as_array().unwrap();
        assert!(cases.len() >= 9, "{} cases", cases.len());
        for case in cases {
            let (model, name) = (
                case["model"].as_str().unwrap(),
                case["dataset"].as_str().unwrap(),
            );
            let method = match case["method"].as_str().unwrap() {
                "sft" => Method::Sft,
                "dpo" => Method::Dpo,
                "kto" => Method::Kto,
                "grpo" => Method::Grpo,
                other => panic!("method {other}"),
            };
            let tokenizer = fixture_tokenizer(model);
            let dataset = load_dataset(&DatasetArgs::new(sample(name)), method).unwrap();
            let lengths = token_lengths(&dataset, &tokenizer, Some(50)).unwrap();
            let want = |key: &str| case[key].as_u64().unwrap() as usize;
            assert_eq!(
                (lengths.p50, lengths.p95, lengths.max, lengths.rows),
                (want("p50"), want("p95"), want("max"), want("rows")),
                "{model} {name}"
            );
            assert_eq!(lengths.rows, dataset.len());
        }
    }

    #[test]
    fn rows_the_chat_template_rejects_are_named() {
        let mut tokenizer = fixture_tokenizer("tiny-qwen2");
        tokenizer
            .set_chat_template(
                "{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tool turns here') }}\
                 {% endif %}{{ m.content }}{% endfor %}",
            )
            .unwrap();
        let row = |value: Value| value.as_object().unwrap().clone();
        let rows = vec![
            row(json!({"messages": [{"role": "user", "content": "hi"}]})),
            row(json!({"messages": [{"role": "tool", "content": "42"}]})),
        ];
        let dataset = Dataset::from_rows(rows, Method::Sft, "text").unwrap();
        let error = token_lengths(&dataset, &tokenizer, None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(
                "rows that cannot be tokenized: 1 problem:\n  <rows> row 2: expected a row the tokenizer"
            ),
            "{error}"
        );
        assert!(error.contains("no tool turns here"), "{error}");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let summarize = |lengths: Vec<usize>, max_length| {
            let mut histogram = BTreeMap::new();
            lengths
                .into_iter()
                .for_each(|l| *histogram.entry(l).or_default() += 1);
            super::summarize(&histogram, max_length)
        };
        let lengths = summarize((1..=100).rev().collect(), Some(90));
        assert_eq!((lengths.p50, lengths.p95, lengths.max), (50, 95, 100));
        assert_eq!(lengths.over_max_length, 10);
        let one = summarize(vec![7], None);
        assert_eq!(
            (one.p50, one.p95, one.max, one.over_max_length),
            (7, 7, 7, 0)
        );
        let none = summarize(Vec::new(), Some(3));
        assert_eq!((none.rows, none.max), (0, 0));
    }
}
