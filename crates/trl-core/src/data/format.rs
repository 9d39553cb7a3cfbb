//! TRL's dataset formats (TRL 1.16 `data_utils.py` and the dataset formats guide): which columns
//! make which format, how one row is recognised, and what every value of a row must hold.
//!
//! Each format comes in two styles: standard (strings) and conversational (lists of
//! `{role, content}` messages, as `is_conversational` recognises them).
//!
//! | format | columns |
//! | --- | --- |
//! | language modeling | `text` (`dataset_text_field`) or `messages` |
//! | prompt-only | `prompt` |
//! | prompt-completion | `prompt`, `completion` |
//! | preference | `prompt`, `chosen`, `rejected` |
//! | preference, implicit prompt | `chosen`, `rejected` (the prompt is their shared start) |
//! | unpaired preference | `prompt`, `completion`, `label` (a boolean) |
//!
//! Any other column is kept as it is (GRPO passes them to reward functions). Two columns have a
//! meaning in every format, as in TRL: `tools` (a list of JSON schemas, or that list as a JSON
//! string) and `chat_template_kwargs` (an object of template variables).

use std::fmt;

use serde_json::{Map, Value};

use super::messages::check_messages;
use super::problem::{Problem, describe, missing};

/// One row of a dataset: a JSON object, as `datasets` hands it to TRL.
pub type Row = Map<String, Value>;

/// Standard (plain strings) or conversational (lists of messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Style {
    Standard,
    Conversational,
}

/// Which columns a dataset has, whatever their style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FormatKind {
    /// `text` (or `dataset_text_field`) when standard, `messages` when conversational.
    LanguageModeling,
    /// `prompt`.
    PromptOnly,
    /// `prompt`, `completion`.
    PromptCompletion,
    /// `prompt`, `chosen`, `rejected`.
    Preference,
    /// `chosen`, `rejected`, both starting with the prompt; TRL's `maybe_extract_prompt` splits
    /// it off (`maybe_extract_prompt`, in `prompt.rs`).
    ImplicitPreference,
    /// `prompt`, `completion`, boolean `label` (KTO).
    UnpairedPreference,
}

/// A detected format: columns and style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DatasetFormat {
    pub kind: FormatKind,
    pub style: Style,
}

impl FormatKind {
    /// Every format, in the order of TRL's guide.
    pub const ALL: [FormatKind; 6] = [
        FormatKind::LanguageModeling,
        FormatKind::PromptOnly,
        FormatKind::PromptCompletion,
        FormatKind::Preference,
        FormatKind::ImplicitPreference,
        FormatKind::UnpairedPreference,
    ];

    /// The name TRL's guide uses.
    pub fn name(self) -> &'static str {
        match self {
            FormatKind::LanguageModeling => "language modeling",
            FormatKind::PromptOnly => "prompt-only",
            FormatKind::PromptCompletion => "prompt-completion",
            FormatKind::Preference => "preference",
            FormatKind::ImplicitPreference => "preference with implicit prompt",
            FormatKind::UnpairedPreference => "unpaired preference",
        }
    }

    /// The columns this format needs in a row of the given style.
    pub fn columns(self, style: Style, text_field: &str) -> Vec<&str> {
        match self {
            FormatKind::LanguageModeling => match style {
                Style::Standard => vec![text_field],
                Style::Conversational => vec!["messages"],
            },
            FormatKind::PromptOnly => vec!["prompt"],
            FormatKind::PromptCompletion => vec!["prompt", "completion"],
            FormatKind::Preference => vec!["prompt", "chosen", "rejected"],
            FormatKind::ImplicitPreference => vec!["chosen", "rejected"],
            FormatKind::UnpairedPreference => vec!["prompt", "completion", "label"],
        }
    }

    /// The columns for a message, e.g. "`prompt`, `completion`".
    pub fn column_list(self, text_field: &str) -> String {
        let quoted = |columns: Vec<&str>| {
            columns
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            FormatKind::LanguageModeling => format!("`{text_field}` or `messages`"),
            _ => quoted(self.columns(Style::Standard, text_field)),
        }
    }
}

impl fmt::Display for Style {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Style::Standard => "standard",
            Style::Conversational => "conversational",
        })
    }
}

impl fmt::Display for FormatKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for DatasetFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {}", self.kind, self.style)
    }
}

/// What one row looks like on its own: its format columns, and the style of the first of them
/// whose value is a string or a list (`None` when none is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowShape {
    pub kind: FormatKind,
    pub style: Option<Style>,
}

const PROMPT_FAMILY: [&str; 4] = ["prompt", "completion", "chosen", "rejected"];

/// A column counts as present when it is there and not null (`datasets` fills the columns a row
/// lacks with null).
fn present<'a>(row: &'a Row, column: &str) -> Option<&'a Value> {
    row.get(column).filter(|value| !value.is_null())
}

fn style_of(value: Option<&Value>) -> Option<Style> {
    match value? {
        Value::String(_) => Some(Style::Standard),
        Value::Array(_) => Some(Style::Conversational),
        _ => None,
    }
}

/// Recognises a row's format from its columns, in the order TRL's trainers look at them.
/// `Err` holds a problem without a location.
pub(crate) fn detect_row(row: &Row, text_field: &str) -> Result<RowShape, Box<Problem>> {
    let has = |column: &str| present(row, column).is_some();
    let style = |column: &str| style_of(present(row, column));
    if has("messages")
        && let Some(other) = PROMPT_FAMILY.into_iter().find(|c| has(c))
    {
        return Err(Box::new(Problem::dataset(
            "either `messages` (language modeling) or prompt/completion/chosen/rejected \
             columns, as TRL's apply_chat_template requires",
            format!("both `messages` and `{other}`"),
        )));
    }
    let shape = |kind: FormatKind, columns: &[&str]| RowShape {
        kind,
        style: columns.iter().find_map(|c| style(c)),
    };
    if has("chosen") || has("rejected") {
        let pair_style = style("chosen").or_else(|| style("rejected"));
        // maybe_extract_prompt: a prompt of the other style is not the prompt (some datasets
        // add a plain-text prompt column to conversations that already hold it).
        let explicit = has("prompt")
            && (pair_style.is_none() || style("prompt").is_none() || style("prompt") == pair_style);
        return Ok(if explicit {
            shape(FormatKind::Preference, &["prompt", "chosen", "rejected"])
        } else {
            shape(FormatKind::ImplicitPreference, &["chosen", "rejected"])
        });
    }
    if has("prompt") && has("completion") && has("label") {
        return Ok(shape(
            FormatKind::UnpairedPreference,
            &["prompt", "completion"],
        ));
    }
    if has("prompt") && has("completion") {
        return Ok(shape(
            FormatKind::PromptCompletion,
            &["prompt", "completion"],
        ));
    }
    if has("prompt") {
        return Ok(shape(FormatKind::PromptOnly, &["prompt"]));
    }
    if has("messages") {
        return Ok(shape(FormatKind::LanguageModeling, &["messages"]));
    }
    if has(text_field) {
        return Ok(shape(FormatKind::LanguageModeling, &[text_field]));
    }
    // `datasets` and Parquet write null for a missing value: a row whose format columns are all
    // null has the columns, so say which value is missing rather than which columns are.
    let null_column = [
        text_field,
        "messages",
        "prompt",
        "completion",
        "chosen",
        "rejected",
    ]
    .into_iter()
    .find(|column| row.get(*column).is_some_and(Value::is_null));
    if let Some(column) = null_column {
        return Err(Box::new(
            Problem::dataset("a value (a missing value is written as null)", "null")
                .in_column(column),
        ));
    }
    let expected = format!(
        "the columns of a TRL format: `{text_field}` or `messages` (language modeling), `prompt` \
         (prompt-only), `prompt` + `completion`, `prompt` + `chosen` + `rejected` or `chosen` + \
         `rejected` (preference), `prompt` + `completion` + `label` (unpaired preference)"
    );
    let found = if has("conversations") {
        "a `conversations` column: ShareGPT-style conversations are not read, rename it to \
         `messages` and each message's `from`/`value` to `role`/`content`"
            .to_owned()
    } else if has("completion") {
        "`completion` without `prompt`".to_owned()
    } else if row.is_empty() {
        "an empty object".to_owned()
    } else {
        let columns: Vec<String> = row.keys().map(|c| format!("`{c}`")).collect();
        format!("only the columns {}", columns.join(", "))
    };
    Err(Box::new(Problem::dataset(expected, found)))
}

/// Checks every value a row of `format` needs; the problems have no location yet.
pub(crate) fn check_row(row: &Row, format: DatasetFormat, text_field: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    for column in format.kind.columns(format.style, text_field) {
        let value = row.get(column);
        let column_problems = if column == "label" {
            check_label(value)
        } else {
            match format.style {
                Style::Standard => check_text(value),
                Style::Conversational => check_messages(value),
            }
        };
        problems.extend(column_problems.into_iter().map(|p| p.in_column(column)));
    }
    if problems.is_empty() {
        problems.extend(check_format_rules(row, format));
    }
    problems.extend(check_template_columns(row));
    problems
}

fn check_label(value: Option<&Value>) -> Vec<Problem> {
    match value {
        Some(Value::Bool(_)) => Vec::new(),
        _ => vec![Problem::dataset("true or false", missing(value))],
    }
}

fn check_text(value: Option<&Value>) -> Vec<Problem> {
    match value {
        Some(Value::String(_)) => Vec::new(),
        Some(Value::Array(_)) => vec![Problem::dataset(
            "a string, as in the other rows (standard format)",
            "a list (conversational format)",
        )],
        _ => vec![Problem::dataset("a string", missing(value))],
    }
}

/// Rules that involve more than one value of a row.
fn check_format_rules(row: &Row, format: DatasetFormat) -> Vec<Problem> {
    let mut problems = Vec::new();
    match (format.kind, format.style) {
        (FormatKind::PromptOnly, Style::Conversational) => {
            // apply_chat_template adds a generation prompt after a user or tool turn and
            // continues an assistant turn; any other last role is an error there.
            let last_role = row
                .get("prompt")
                .and_then(Value::as_array)
                .and_then(|messages| messages.last())
                .and_then(|message| message.get("role"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !matches!(last_role, "user" | "tool" | "assistant") {
                problems.push(
                    Problem::dataset(
                        "a prompt ending with a user, tool or assistant message",
                        format!("a last message with role {last_role:?}"),
                    )
                    .in_column("prompt"),
                );
            }
        }
        (FormatKind::ImplicitPreference, Style::Standard) => {
            // extract_prompt fails on an empty side (its loop never runs).
            for column in ["chosen", "rejected"] {
                if row
                    .get(column)
                    .and_then(Value::as_str)
                    .is_some_and(str::is_empty)
                {
                    problems.push(
                        Problem::dataset(
                            "a non-empty string (the prompt is extracted from chosen and rejected)",
                            "an empty string",
                        )
                        .in_column(column),
                    );
                }
            }
        }
        (FormatKind::ImplicitPreference, Style::Conversational) => {
            let first = |column: &str| row.get(column).and_then(|messages| messages.get(0));
            if first("chosen") != first("rejected") {
                problems.push(Problem::dataset(
                    "`chosen` and `rejected` starting with the same messages (the implicit \
                     prompt), or a `prompt` column",
                    "different first messages, which leaves an empty prompt",
                ));
            }
        }
        _ => {}
    }
    problems
}

/// `tools` and `chat_template_kwargs`, which TRL passes to the chat template of every row.
fn check_template_columns(row: &Row) -> Vec<Problem> {
    let mut problems = Vec::new();
    match present(row, "tools") {
        None | Some(Value::Array(_)) => {}
        Some(Value::String(text)) => {
            if !matches!(serde_json::from_str::<Value>(text), Ok(Value::Array(_))) {
                problems.push(
                    Problem::dataset(
                        "a list of tool schemas, or that list as a JSON string",
                        "a string that is not a JSON list",
                    )
                    .in_column("tools"),
                );
            }
        }
        Some(other) => problems.push(
            Problem::dataset(
                "a list of tool schemas, or that list as a JSON string",
                describe(other),
            )
            .in_column("tools"),
        ),
    }
    match present(row, "chat_template_kwargs") {
        None | Some(Value::Object(_)) => {}
        Some(other) => problems.push(
            Problem::dataset("an object of chat template variables", describe(other))
                .in_column("chat_template_kwargs"),
        ),
    }
    problems
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
