//! The messages of a conversational value, as chat templates and TRL expect them: `{role,
//! content}` objects, content being a string or a list of text parts, and an assistant turn that
//! calls tools allowed to have no content.

use serde_json::Value;

use super::problem::{Problem, describe, missing, quote};

/// The roles chat templates know: OpenAI's (`developer` is its newer `system`), and Llama 3's
/// `ipython` for tool results. Any other role is a typo that a template would either reject or
/// render as nothing the model was trained on.
const KNOWN_ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "ipython",
];

/// A conversation: a non-empty list of `{role, content}` messages, content being a string or a
/// list of text parts (`{"type": "text", "text": ...}`); an assistant message with `tool_calls`
/// may have no content.
pub(crate) fn check_messages(value: Option<&Value>) -> Vec<Problem> {
    let messages = match value {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        Some(Value::String(_)) => {
            return vec![Problem::dataset(
                "a list of messages, as in the other rows (conversational format)",
                "a string (standard format)",
            )];
        }
        _ => {
            return vec![Problem::dataset(
                "a non-empty list of messages",
                missing(value),
            )];
        }
    };
    let mut problems = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let place = format!("message {}", index + 1);
        if let Some(problem) = check_message(message) {
            problems.push(problem.at(place));
        }
    }
    problems
}

fn check_message(message: &Value) -> Option<Problem> {
    let Value::Object(message) = message else {
        return Some(Problem::dataset(
            "a {role, content} object",
            describe(message),
        ));
    };
    let role = match message.get("role") {
        Some(Value::String(role)) if !role.is_empty() => role,
        None if message.contains_key("from") || message.contains_key("value") => {
            return Some(Problem::dataset(
                "`role` and `content` keys",
                "ShareGPT-style `from`/`value` keys: rename them to `role`/`content`",
            ));
        }
        other => {
            return Some(Problem::dataset(
                "a `role` string (system, user, assistant, tool)",
                missing(other),
            ));
        }
    };
    if !KNOWN_ROLES.contains(&role.as_str()) {
        return Some(Problem::dataset(
            format!("a role among {}", KNOWN_ROLES.join(", ")),
            format!("the role {}", quote(role)),
        ));
    }
    let has_tool_calls =
        matches!(message.get("tool_calls"), Some(Value::Array(calls)) if !calls.is_empty());
    match message.get("content") {
        Some(Value::String(_)) => None,
        Some(Value::Array(parts)) => parts.iter().enumerate().find_map(|(index, part)| {
            check_content_part(part).map(|(expected, found)| {
                Problem::dataset(format!("content part {}: {expected}", index + 1), found)
            })
        }),
        None | Some(Value::Null) if role == "assistant" && has_tool_calls => None,
        other => Some(Problem::dataset(
            "a `content` string or a list of text parts",
            missing(other),
        )),
    }
}

fn check_content_part(part: &Value) -> Option<(&'static str, String)> {
    const EXPECTED: &str = "a text part {\"type\": \"text\", \"text\": ...}";
    let Value::Object(part) = part else {
        return Some((EXPECTED, describe(part)));
    };
    match (part.get("type"), part.get("text")) {
        (Some(Value::String(kind)), Some(Value::String(_))) if kind == "text" => None,
        (Some(Value::String(kind)), _) if kind != "text" => Some((
            EXPECTED,
            format!("a part of type {kind:?} (only text is supported)"),
        )),
        _ => Some((EXPECTED, describe(&Value::Object(part.clone())))),
    }
}
