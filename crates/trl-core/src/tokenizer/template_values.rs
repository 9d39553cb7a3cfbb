//! How JSON data looks inside a chat template: like the Python `dict`s and `list`s transformers hands
//! to Jinja2.
//!
//! Two Python behaviours matter for byte-exact prompts:
//! - a `dict` keeps insertion order, so `tool.parameters.properties.items()` and `tojson` list keys in
//!   the order of the JSON. minijinja's own maps sort their keys, so JSON objects become
//!   [`OrderedMap`] objects instead;
//! - printing a value uses Python's `str()`: `{'a': 1, 'b': True}`, `None`, `1e-05`, not JSON.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use minijinja::Value;
use minijinja::value::{Enumerator, Object, ObjectRepr, ValueKind};
use serde_json::Value as Json;

/// Converts JSON into a template value: objects keep their key order, numbers keep int vs float.
pub(crate) fn json_to_value(json: &Json) -> Value {
    convert(json, false)
}

/// Like [`json_to_value`], but integers too large for 64 bits (which serde_json can only hold as floats,
/// like `model_max_length` = 1000000000000000019884624838656) come back as integers, so a config
/// written back keeps them as Python wrote them.
pub(crate) fn config_json_to_value(json: &Json) -> Value {
    convert(json, true)
}

fn convert(json: &Json, big_integers: bool) -> Value {
    match json {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if big_integers && f.fract() == 0.0 && f.abs() < 1e38 {
                    Value::from(f as i128)
                } else {
                    Value::from(f)
                }
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::from(
            items
                .iter()
                .map(|v| convert(v, big_integers))
                .collect::<Vec<_>>(),
        ),
        Json::Object(map) => Value::from_object(OrderedMap {
            entries: map
                .iter()
                .map(|(k, v)| (k.clone(), convert(v, big_integers)))
                .collect(),
        }),
    }
}

/// A JSON object as a template sees it: a mapping that iterates in insertion order, like a Python dict.
#[derive(Debug)]
pub(crate) struct OrderedMap {
    entries: Vec<(String, Value)>,
}

impl Object for OrderedMap {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.entries
                .iter()
                .map(|(k, _)| Value::from(k.as_str()))
                .collect(),
        )
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.entries.len())
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        out.push('{');
        for (i, (key, value)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write_python_str_repr(&mut out, key);
            out.push_str(": ");
            write_python_repr(&mut out, value);
        }
        out.push('}');
        f.write_str(&out)
    }
}

/// Python's `str(value)`: what Jinja2 prints for `{{ value }}` and what the `string` filter returns.
pub(crate) fn python_str(value: &Value) -> String {
    match value.kind() {
        ValueKind::String => value.as_str().unwrap_or_default().to_string(),
        ValueKind::Undefined => String::new(),
        _ => {
            let mut out = String::new();
            write_python_repr(&mut out, value);
            out
        }
    }
}

/// Python's `repr(value)`, used for items inside printed lists and dicts.
pub(crate) fn write_python_repr(out: &mut String, value: &Value) {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => out.push_str(&python_number(value)),
        ValueKind::String => write_python_str_repr(out, value.as_str().unwrap_or_default()),
        ValueKind::Map => {
            out.push('{');
            if let Ok(keys) = value.try_iter() {
                for (i, key) in keys.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_python_repr(out, &key);
                    out.push_str(": ");
                    write_python_repr(out, &value.get_item(&key).unwrap_or_default());
                }
            }
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(items) = value.try_iter() {
                for (i, item) in items.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_python_repr(out, &item);
                }
            }
            out.push(']');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
}

/// A number as Python prints it: ints as-is, floats in `repr` form (`1.0`, `1e-05`, `1e+16`).
pub(crate) fn python_number(value: &Value) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    match f64::try_from(value.clone()) {
        Ok(f) => python_float_repr(f),
        Err(_) => value.to_string(),
    }
}

/// Python's `float.__repr__`: the shortest round-trip digits, in fixed notation when the decimal
/// exponent is in `-4..16` and in scientific notation (`1e-05`, `1.5e+16`) otherwise.
pub(crate) fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.5e-5", "-1e16".
    let sci = format!("{f:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exponent) {
        let point = exponent + 1; // position of the decimal point within `digits`
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{body}")
    } else {
        let mantissa = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.abs())
    }
}

/// Python's `repr(str)`: single quotes unless the text holds a single quote and no double quote.
pub(crate) fn write_python_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_print_like_python_repr() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (-2.5, "-2.5"),
            (1.5e300, "1.5e+300"),
            (123.456, "123.456"),
        ];
        for (f, expected) in cases {
            assert_eq!(python_float_repr(f), expected, "{f}");
        }
    }

    #[test]
    fn json_objects_keep_their_key_order_and_print_as_python_dicts() {
        let value = json_to_value(&json!({"z": 1, "a": [true, null, "it's"], "m": {"x": 1.0}}));
        assert_eq!(
            python_str(&value),
            r#"{'z': 1, 'a': [True, None, "it's"], 'm': {'x': 1.0}}"#
        );
        let keys: Vec<String> = value.try_iter().unwrap().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }
}
