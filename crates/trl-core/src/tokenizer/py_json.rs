//! Python's `json.dumps`, byte for byte.
//!
//! transformers replaces Jinja2's `tojson` filter with
//! `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`
//! (utils/chat_template_utils.py), and writes `tokenizer_config.json` with
//! `json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False)`. Tool schemas rendered into prompts
//! therefore look like `{"name": "f", "parameters": {...}}`: spaces after `,` and `:`, no HTML escaping,
//! non-ASCII kept. minijinja's own `tojson` differs on all three, so we reimplement Python's encoder.

use std::fmt::Write as _;

use minijinja::value::ValueKind;
use minijinja::{Error, ErrorKind, Value};

use super::template_values::python_float_repr;

/// The keyword arguments of `json.dumps` that templates use.
#[derive(Debug, Clone)]
pub(crate) struct DumpOptions {
    /// Escape every non-ASCII character as `\uXXXX`.
    pub ensure_ascii: bool,
    /// `None`: everything on one line; `Some(unit)`: one item per line, nested levels indented by `unit`.
    pub indent: Option<String>,
    /// Between items (`", "` on one line, `","` with indent, unless `separators` says otherwise).
    pub item_separator: String,
    /// Between a key and its value.
    pub key_separator: String,
    /// Sort object keys.
    pub sort_keys: bool,
}

impl DumpOptions {
    /// Python's defaults for a given `indent`: separators are `(", ", ": ")` without indent and
    /// `(",", ": ")` with it.
    pub(crate) fn new(indent: Option<String>) -> Self {
        let item_separator = if indent.is_some() { "," } else { ", " }.to_string();
        DumpOptions {
            ensure_ascii: false,
            indent,
            item_separator,
            key_separator: ": ".to_string(),
            sort_keys: false,
        }
    }
}

/// `json.dumps(value, **options)`.
pub(crate) fn dumps(value: &Value, options: &DumpOptions) -> Result<String, Error> {
    let mut out = String::new();
    encode(&mut out, value, options, 0)?;
    Ok(out)
}

fn encode(
    out: &mut String,
    value: &Value,
    options: &DumpOptions,
    level: usize,
) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&json_number(value)),
        ValueKind::String => write_json_string(
            out,
            value.as_str().unwrap_or_default(),
            options.ensure_ascii,
        ),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&options.item_separator);
                }
                newline_indent(out, options, level + 1);
                encode(out, item, options, level + 1)?;
            }
            newline_indent(out, options, level);
            out.push(']');
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((json_key(&key)?, item));
            }
            if entries.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if options.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(&options.item_separator);
                }
                newline_indent(out, options, level + 1);
                write_json_string(out, key, options.ensure_ascii);
                out.push_str(&options.key_separator);
                encode(out, item, options, level + 1)?;
            }
            newline_indent(out, options, level);
            out.push('}');
        }
        kind => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("Object of type {kind} is not JSON serializable"),
            ));
        }
    }
    Ok(())
}

fn newline_indent(out: &mut String, options: &DumpOptions, level: usize) {
    if let Some(unit) = &options.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(unit);
        }
    }
}

/// Python turns `True`, `None`, numbers used as keys into strings; other key types are an error.
fn json_key(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_string()),
        ValueKind::None => Ok("null".to_string()),
        ValueKind::Number => Ok(json_number(key)),
        kind => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("keys must be str, int, float, bool or None, not {kind}"),
        )),
    }
}

fn json_number(value: &Value) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    match f64::try_from(value.clone()) {
        Ok(f) if f.is_nan() => "NaN".to_string(),
        Ok(f) if f.is_infinite() => if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string(),
        Ok(f) => python_float_repr(f),
        Err(_) => value.to_string(),
    }
}

/// A JSON string literal as Python's encoder writes it (lower-case `\u00XX` escapes).
fn write_json_string(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{:04x}", unit);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::template_values::json_to_value;
    use serde_json::json;

    fn dump(json: serde_json::Value, options: DumpOptions) -> String {
        dumps(&json_to_value(&json), &options).unwrap()
    }

    #[test]
    fn default_options_match_python() {
        let value = json!({"name": "get_weather", "params": {"city": "Zürich <x> & 'y'", "n": 1.0, "ok": true, "x": null}, "list": [1, 2], "e": [], "o": {}});
        assert_eq!(
            dump(value, DumpOptions::new(None)),
            r#"{"name": "get_weather", "params": {"city": "Zürich <x> & 'y'", "n": 1.0, "ok": true, "x": null}, "list": [1, 2], "e": [], "o": {}}"#
        );
    }

    #[test]
    fn indent_sort_keys_and_ensure_ascii_match_python() {
        let value = json!({"b": [1, {"c": "é\n"}], "a": {}});
        let mut options = DumpOptions::new(Some("  ".into()));
        options.sort_keys = true;
        options.ensure_ascii = true;
        // python: json.dumps({"b": [1, {"c": "é\n"}], "a": {}}, indent=2, sort_keys=True)
        assert_eq!(
            dump(value, options),
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    {\n      \"c\": \"\\u00e9\\n\"\n    }\n  ]\n}"
        );
    }
}
