//! The minijinja environment that stands in for transformers' Jinja2 one.
//!
//! transformers compiles chat templates in `_cached_compile_jinja_template`
//! (utils/chat_template_utils.py) with
//! `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, loopcontrols])`
//! (so `keep_trailing_newline=False` and no autoescape), overrides the `tojson` filter with `json.dumps`
//! and adds the globals `raise_exception` and `strftime_now`. Each of those is mirrored here, plus what
//! Jinja2 gives for free and minijinja does not: Python `str()` printing and Python string/dict methods.

use std::fmt;

use minijinja::value::{ArgType, Kwargs, Rest, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Value};

use super::py_json::{DumpOptions, dumps};
use super::strftime::{CivilTime, strftime};
use super::template_values::python_str;

/// Opens a `{% generation %}` block in the rendered text; never produced by real text (Unicode
/// plane-16 private use).
pub(crate) const GENERATION_START: char = '\u{10FFFC}';
/// Closes a `{% generation %}` block in the rendered text.
pub(crate) const GENERATION_END: char = '\u{10FFFD}';
/// The filter that `{% generation %}` blocks become: it wraps what the block rendered in the markers.
const GENERATION_FILTER: &str = "_trl_generation";

/// The error `raise_exception(message)` raises, kept as the source of the minijinja error so the message
/// reaches the user unchanged.
#[derive(Debug)]
pub(crate) struct RaisedByTemplate(pub String);

impl fmt::Display for RaisedByTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedByTemplate {}

/// Builds an environment configured like transformers' Jinja2 environment.
pub(crate) fn chat_template_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(|out, _state, value| {
        out.write_str(&python_str(value))
            .map_err(|_| Error::new(ErrorKind::WriteFailure, "could not write template output"))
    });
    // Jinja2 filters and globals that minijinja keeps in its contrib crate.
    env.add_filter("truncate", minijinja_contrib::filters::truncate);
    env.add_filter("filesizeformat", minijinja_contrib::filters::filesizeformat);
    env.add_filter("striptags", minijinja_contrib::filters::striptags);
    env.add_function("cycler", minijinja_contrib::globals::cycler);
    env.add_function("joiner", minijinja_contrib::globals::joiner);

    // Jinja2 tests whose Python meaning differs from minijinja's: `None` is not iterable, strings, dicts
    // and undefined are sequences (they have `len` and `__getitem__`), and booleans are numbers.
    env.add_test("iterable", |value: Value| match value.kind() {
        ValueKind::None | ValueKind::Bool | ValueKind::Number | ValueKind::Invalid => false,
        ValueKind::Plain => value.try_iter().is_ok(),
        _ => true,
    });
    env.add_test("sequence", |value: Value| {
        matches!(
            value.kind(),
            ValueKind::Undefined
                | ValueKind::String
                | ValueKind::Bytes
                | ValueKind::Seq
                | ValueKind::Map
        )
    });
    env.add_test("number", |value: Value| {
        matches!(value.kind(), ValueKind::Number | ValueKind::Bool)
    });

    env.add_filter("tojson", tojson);
    env.add_filter("string", |value: Value| python_str(&value));
    env.add_filter(GENERATION_FILTER, |body: Value| {
        format!("{GENERATION_START}{}{GENERATION_END}", python_str(&body))
    });
    env.add_function(
        "raise_exception",
        |message: Value| -> Result<Value, Error> {
            let message = python_str(&message);
            Err(Error::new(ErrorKind::InvalidOperation, message.clone())
                .with_source(RaisedByTemplate(message)))
        },
    );
    env.add_function("strftime_now", |format: String| {
        strftime(&CivilTime::now_utc(), &format)
    });
    env
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`,
/// positional or keyword.
fn tojson(value: &Value, args: Rest<Value>) -> Result<String, Error> {
    let mut positional: Vec<Value> = args.0;
    let kwargs = match positional.last() {
        Some(last) if last.is_kwargs() => {
            let last = positional.pop().unwrap_or_default();
            Some(Kwargs::from_value(Some(&last))?)
        }
        _ => None,
    };
    if positional.len() > 4 {
        return Err(Error::new(
            ErrorKind::TooManyArguments,
            "tojson takes at most 4 arguments",
        ));
    }
    let named = |index: usize, name: &str| -> Result<Value, Error> {
        match &kwargs {
            Some(kwargs) if kwargs.has(name) => kwargs.get::<Value>(name),
            _ => Ok(positional.get(index).cloned().unwrap_or(Value::from(()))),
        }
    };
    let ensure_ascii = named(0, "ensure_ascii")?;
    let indent = named(1, "indent")?;
    let separators = named(2, "separators")?;
    let sort_keys = named(3, "sort_keys")?;
    if let Some(kwargs) = &kwargs {
        kwargs.assert_all_used()?;
    }

    let indent = match indent.kind() {
        ValueKind::None | ValueKind::Undefined => None,
        ValueKind::Number => Some(" ".repeat(indent.as_i64().unwrap_or(0).max(0) as usize)),
        ValueKind::String => Some(indent.as_str().unwrap_or_default().to_string()),
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: indent must be an int or a string",
            ));
        }
    };
    let mut options = DumpOptions::new(indent);
    options.ensure_ascii = ensure_ascii.is_true();
    options.sort_keys = sort_keys.is_true();
    if !separators.is_none() && !separators.is_undefined() {
        let parts: Vec<Value> = separators.try_iter()?.collect();
        match parts.as_slice() {
            [item, key] => {
                options.item_separator = python_str(item);
                options.key_separator = python_str(key);
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: separators must be an (item_separator, key_separator) pair",
                ));
            }
        }
    }
    dumps(value, &options)
}

/// Jinja2's lexer turns every `\r\n` and `\r` of the template source into `\n` (`newline_sequence`);
/// minijinja keeps them, so templates saved with Windows line endings need this first.
pub(crate) fn normalize_newlines(source: &str) -> String {
    source.replace("\r\n", "\n").replace('\r', "\n")
}

/// Rewrites `{% generation %}` / `{% endgeneration %}` (transformers' AssistantTracker tags, which
/// minijinja cannot parse) into a filter block that marks what the block renders. Whitespace control
/// (`{%-`, `-%}`) is kept, so trimming is unchanged. Returns the new source and whether any tag was found.
pub(crate) fn rewrite_generation_tags(source: &str) -> (String, bool) {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    let mut found = false;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        match parse_generation_tag(tag) {
            Some((len, left, is_end, right)) => {
                found = true;
                let body = if is_end {
                    "endfilter".to_string()
                } else {
                    format!("filter {GENERATION_FILTER}")
                };
                out.push_str(&format!("{{%{left} {body} {right}%}}"));
                rest = &tag[len..];
            }
            None => {
                out.push_str("{%");
                rest = &tag[2..];
            }
        }
    }
    out.push_str(rest);
    (out, found)
}

/// Parses `{%[-+]? (end)?generation [-+]?%}` at the start of `tag`: (length, left marker, is end tag,
/// right marker).
fn parse_generation_tag(tag: &str) -> Option<(usize, &str, bool, &str)> {
    let bytes = tag.as_bytes();
    let mut i = 2;
    let control = |i: usize| bytes.get(i).is_some_and(|b| *b == b'-' || *b == b'+');
    let left = if control(i) {
        i += 1;
        &tag[i - 1..i]
    } else {
        ""
    };
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    let word_start = i;
    while bytes
        .get(i)
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
    {
        i += 1;
    }
    let is_end = match &tag[word_start..i] {
        "generation" => false,
        "endgeneration" => true,
        _ => return None,
    };
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    let right = if control(i) {
        i += 1;
        &tag[i - 1..i]
    } else {
        ""
    };
    tag[i..]
        .starts_with("%}")
        .then_some((i + 2, left, is_end, right))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, ctx: Value) -> Result<String, Error> {
        let env = chat_template_environment();
        env.render_str(source, ctx)
    }

    #[test]
    fn generation_tags_become_filter_blocks_keeping_whitespace_control() {
        let (out, found) =
            rewrite_generation_tags("a{%- generation -%}b{% endgeneration %}c{% generations %}");
        assert!(found);
        assert_eq!(
            out,
            "a{%- filter _trl_generation -%}b{% endfilter %}c{% generations %}"
        );
    }

    #[test]
    fn prints_values_like_python_and_jinja2() {
        let ctx = minijinja::context! { b => true, n => (), f => 1e-5 };
        assert_eq!(
            render("{{ b }} {{ n }} {{ f }} {{ [1, 'a'] }}", ctx).unwrap(),
            "True None 1e-05 [1, 'a']"
        );
    }

    #[test]
    fn tojson_takes_python_arguments() {
        let ctx = minijinja::context! { x => vec![1, 2] };
        assert_eq!(
            render(
                "{{ x|tojson }}|{{ x|tojson(indent=2) }}|{{ '<é>'|tojson }}",
                ctx
            )
            .unwrap(),
            "[1, 2]|[\n  1,\n  2\n]|\"<é>\""
        );
        let ctx = minijinja::context! { x => vec![1, 2] };
        assert_eq!(
            render("{{ x|tojson(separators=(',', ':')) }}", ctx).unwrap(),
            "[1,2]"
        );
    }

    #[test]
    fn raise_exception_carries_the_template_message() {
        let err = render(
            "{{ raise_exception('roles must alternate') }}",
            Value::from(()),
        )
        .unwrap_err();
        let raised =
            std::error::Error::source(&err).and_then(|s| s.downcast_ref::<RaisedByTemplate>());
        assert_eq!(raised.map(|r| r.0.as_str()), Some("roles must alternate"));
    }

    #[test]
    fn tests_follow_python_semantics() {
        let out = render(
            "{{ none is iterable }} {{ 'a' is sequence }} {{ true is number }} {{ [] is iterable }}",
            Value::from(()),
        );
        assert_eq!(out.unwrap(), "False True True True");
        assert_eq!(normalize_newlines("a\r\nb\rc"), "a\nb\nc");
    }

    #[test]
    fn python_string_methods_work() {
        let out = render(
            "{{ '  a b '.strip().split(' ')|length }} {{ 'abc'.startswith('a') }} {{ 'x y'.title() }}",
            Value::from(()),
        );
        assert_eq!(out.unwrap(), "2 True X Y");
    }
}
