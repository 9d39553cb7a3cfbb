//! latex2sympy2_extended's `normalize_latex` (`math_normalization.py`, the version math_verify
//! 0.9 uses): what an extracted answer goes through before it is parsed, and the string it is
//! compared as when parsing fails. The regexes are its own, in its order.

use std::sync::LazyLock;

use fancy_regex::{Captures, Regex as FancyRegex};
use regex::Regex;

pub use super::boxed::extract_boxed_content;

/// Which normalizations apply (`NormalizationConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormalizationConfig {
    /// `\left`/`\right`, `$`, `\dfrac` -> `\frac`, percent words, `\mathrm` -> `\text`, ...
    pub basic_latex: bool,
    /// A trailing `\text{...}` or unit word (`cm`, `apples`, ...) removed.
    pub units: bool,
    /// `\frac12` -> `\frac{1}{2}`, `sqrt(2)` -> `\sqrt{2}`, `2/3` -> `\frac{2}{3}`.
    pub malformed_operators: bool,
    /// A leading `.` gets its 0; `0.5` becomes `\frac{1}{2}`.
    pub nits: bool,
    /// Which boxes replace the text.
    pub boxed: Boxed,
}

/// `boxed="all" | "last"`: which `\boxed{}` contents replace the text (math_verify never
/// asks for `"none"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boxed {
    /// Every box, joined by commas.
    All,
    /// The last box (with the boxes a short text or a separator joins to it).
    Last,
}

impl NormalizationConfig {
    /// `LatexExtractionConfig()`'s default: every normalization but `equations`.
    pub const GOLD: Self = NormalizationConfig {
        basic_latex: true,
        units: true,
        malformed_operators: true,
        nits: true,
        boxed: Boxed::All,
    };
    /// `NormalizationConfig(units=True)`, what TRL's accuracy rewards give the completion.
    pub const ANSWER: Self = NormalizationConfig {
        basic_latex: true,
        units: true,
        malformed_operators: false,
        nits: false,
        boxed: Boxed::All,
    };
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("built-in regex {pattern}: {e}"))
}

fn fancy(pattern: &str) -> FancyRegex {
    FancyRegex::new(pattern).unwrap_or_else(|e| panic!("built-in regex {pattern}: {e}"))
}

/// The units latex2sympy drops from the end of an answer (`units`, in its order).
#[rustfmt::skip]
const UNITS: &[&str] = &[
    "integerpoint", "feet", "sue", "digit", "pound", "meal", "edge", "student", "children ticket",
    "multiple", "east", "degree", "mph", "kmph", "ft", "m square", " m east", "sq m", "deg", "mile",
    "q .", "monkey", "prime", "ratio", "profit of rs", "rd", "o", "gm", "p . m", "lb", "tile",
    "per", "dm", "lt", "gain", "ab", "way", "west", "a .", "b .", "c .", "d .", "e .", "f .", "g .",
    "h .", "t", "h", "no change", "men", "soldier", "pie", "bc", "excess", "st", "inches", "noon",
    "cent", "by", "gal", "kmh", "c", "acre", "rise", "a . m", "th", "π r 2", "sq", "mark", "l",
    "toy", "coin", "sq . m", "gallon", "° f", "profit", "minw", "yr", "women", "am", "pm", "hr",
    "cu cm", "square", "v â € ™", "are", "rupee", "rounds", "cubic", "cc", "mtr", "s", "ohm",
    "number", "kmph", "day", "hour", "minute", "min", "second", "man", "woman", "sec", "cube", "mt",
    "sq inch", "mp", "∏ cm ³", "hectare", "more", "sec", "unit", "cu . m", "cm 2", "rs .", "rs",
    "kg", "g", "month", "km", "m", "cm", "mm", "apple", "liter", "loss", "yard", "pure", "year",
    "increase", "decrease", "d", "less", "Surface", "litre", "pi sq m", "s .", "metre", "meter",
    "inch",
];

static LEFT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\\m?left(\\\{|\{|\\\||\||\[|\(|\\rbracl|\\lgroup|\\lbrace|\\lbrack|\\vert|\\lvert|\\lceil|\\lfloor|\\vert|\\lvert|\\langle|\\llcorner|\\ulcorner)",
    )
});
static RIGHT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\\m?right(\\\}|\}|\\\||\||\]|\)|\\rbrack|\\rgroup|\\rbrace|\\rbrack|\\vert|\\rvert|\\rceil|\\rfloor|\\vert|\\rvert|\\rangle|\\lrcorner|\\urcorner)",
    )
});
static PERMUTATION: LazyLock<Regex> =
    LazyLock::new(|| re(r"\(([a-zA-Z0-9+\-*/\\ ]+?)\)_\{([a-zA-Z0-9+\-*/\\ ]+?)\}"));
static TO_REMOVE: LazyLock<FancyRegex> = LazyLock::new(|| {
    fancy(r#"\\mathrm\{th\}|\\!\s*|\\text\s*\{\s*\}|\\\$|\$|(?<!\\)["']|\\displaystyle"#)
});
/// `to_replace_patterns`: (group name, pattern, replacement), tried as one alternation.
const TO_REPLACE: &[(&str, &str, &str)] = &[
    ("math", r"\\math(?:rm|it|bf)", r"\text"),
    ("text", r"\\text(?:normal|bf|it|rm)", r"\text"),
    ("frac", r"\\(?:d|t|c)frac", r"\frac"),
    ("decimal_space", r"\s\.", r" 0."),
    ("decimal_brace", r"\{\.", r"{0."),
    ("approx", r"~=", r"\approx"),
    ("comma", r"\s*\{\s*,\s*\}", r","),
    (
        "and_or",
        r"(?<![a-zA-Z])(,?\s*(?:and|or))(?![a-zA-Z])",
        r",",
    ),
    ("and_or_text", r"(,?\s*\\text\{\s*(?:and|or)\s*\})", r","),
    ("backslash_space", r"(?<!\\)\\\s", r" "),
    ("infinity", r"infinity", r"\infty"),
    ("dot", r",?(\\ldots)", r" "),
    ("percentage", r"\s*\bpercentage\b", r"\%"),
    ("percentage_in_text", r"\\text\{percentage\}", r"%"),
    ("percent", r"\s*\bpercent\b", r"\%"),
    ("percent_in_text", r"\\text\{percent\}", r"%"),
    ("pct", r"\s*\bpct\b", r"\%"),
    ("pct_in_text", r"\\text\{pct\}", r"%"),
    ("inf", r"((?<!\\)inf(?!inity))", r"\infty"),
    ("sqrt", r" sqrt", r"\sqrt"),
];
static TO_REPLACE_RE: LazyLock<FancyRegex> = LazyLock::new(|| {
    let alternatives: Vec<String> = TO_REPLACE
        .iter()
        .map(|(name, pattern, _)| format!("(?P<{name}>{pattern})"))
        .collect();
    fancy(&alternatives.join("|"))
});
static COMMAND_SLASH: LazyLock<FancyRegex> = LazyLock::new(|| fancy(r"\\\\(?=[a-zA-Z])"));
static UNIT_SUPERSCRIPT: LazyLock<Regex> =
    LazyLock::new(|| re(r"(\\(?:text|mbox)\{.*?\})(\^\d|\{\^\d\})?$"));
static UNITS_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"(\d|\}}|\s)\s*(?:(?:{})(?:s|es)?)\s*$",
        UNITS.join("|")
    ))
});
static MALFORMED: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    vec![
        (re(r"\^\s?\((.*?)\)"), r"^{${1}}"),
        (re(r"sqrt\s?\((.*?)\)"), r"\sqrt{${1}}"),
        (re(r"\\frac\s?(\d)\s?(\d+)"), r"\frac{${1}}{${2}}"),
        (re(r"\\log_\s?(\d)\s?(\d+)"), r"\log_{${1}}{${2}}"),
        (re(r"\\frac\s?\{(.*?)\}\s?(\d)"), r"\frac{${1}}{${2}}"),
        (re(r"\\frac\s?(\d)\s?\{(.*?)\}"), r"\frac{${1}}{${2}}"),
        (re(r"\\sqrt\s?(\d)"), r"\sqrt{${1}}"),
    ]
});

/// `normalize_latex(text, config)`.
pub fn normalize_latex(text: &str, config: NormalizationConfig) -> String {
    let mut text = extract_boxed_content(text, config.boxed);
    if config.basic_latex {
        text = basic_latex(&text);
    }
    if config.units {
        text = remove_units(text);
    }
    if config.nits {
        if text.starts_with('.') {
            text.insert(0, '0');
        }
        if text == "0.5" {
            text = r"\frac{1}{2}".to_string();
        }
    }
    if config.malformed_operators {
        for (pattern, replacement) in MALFORMED.iter() {
            text = pattern.replace_all(&text, *replacement).into_owned();
        }
        text = text.replace(" sqrt", r"\sqrt");
        text = fix_a_slash_b(&fix_fracs(&fix_sqrt(&text)));
    }
    text.trim().to_string()
}

fn basic_latex(text: &str) -> String {
    let mut text = text
        .replace(r"\mathrm{T}", "T")
        .replace(r"\mathrm{d}", "d")
        .replace(r"{\rm d}", "d")
        .replace(r"\left[\begin{matrix}", r"\begin{bmatrix}")
        .replace(r"\end{matrix}\right]", r"\end{bmatrix}");
    text = LEFT.replace_all(&text, "${1}").into_owned();
    text = RIGHT.replace_all(&text, "${1}").into_owned();
    text = PERMUTATION
        .replace_all(&text, r"\frac{(${1})!}{((${1})-(${2}))!}")
        .into_owned();
    text = fancy_replace(&TO_REMOVE, &text, |_| String::new());
    text = fancy_replace(&TO_REPLACE_RE, &text, |caps| {
        TO_REPLACE
            .iter()
            .find(|(name, _, _)| caps.name(name).is_some())
            .map(|(_, _, replacement)| replacement.to_string())
            .unwrap_or_default()
    });
    text = text.replace(['\n', '\t'], " ");
    if !text.contains("matrix") {
        text = fancy_replace(&COMMAND_SLASH, &text, |_| r"\".to_string());
    }
    text
}

/// `re.sub` with a function: a pattern that fails to run (backtrack limit) leaves the text as is.
fn fancy_replace(pattern: &FancyRegex, text: &str, with: impl Fn(&Captures) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for caps in pattern.captures_iter(text) {
        let Ok(caps) = caps else {
            return text.to_string();
        };
        let Some(whole) = caps.get(0) else { continue };
        out.push_str(&text[last..whole.start()]);
        out.push_str(&with(&caps));
        last = whole.end();
    }
    out.push_str(&text[last..]);
    out
}

fn remove_units(mut text: String) -> String {
    let stripped = UNIT_SUPERSCRIPT.replace_all(&text, "").trim().to_string();
    if !stripped.is_empty() && stripped != text {
        text = stripped;
    }
    for _ in 0..2 {
        let stripped = UNITS_RE.replace_all(&text, "${1}").into_owned();
        if !stripped.is_empty() && stripped != text {
            text = stripped;
        }
    }
    text
}

/// hendrycks/math's `_fix_sqrt`: `\sqrt3` -> `\sqrt{3}`.
fn fix_sqrt(text: &str) -> String {
    if !text.contains(r"\sqrt") {
        return text.to_string();
    }
    let mut parts = text.split(r"\sqrt");
    let mut out = parts.next().unwrap_or("").to_string();
    for part in parts {
        let part = part.trim_start();
        match part.chars().next() {
            Some(first) if first != '{' && first != '[' => {
                out.push_str(&format!(r"\sqrt{{{first}}}{}", &part[first.len_utf8()..]));
            }
            _ => out.push_str(&format!(r"\sqrt{part}")),
        }
    }
    out
}

/// hendrycks/math's `_fix_fracs`: `\frac12` -> `\frac{1}{2}`, `\frac1{2}` -> `\frac{1}{2}`.
fn fix_fracs(text: &str) -> String {
    let mut parts = text.split(r"\frac");
    let mut out = parts.next().unwrap_or("").to_string();
    for part in parts {
        let part = part.trim_start();
        out.push_str(r"\frac");
        let chars: Vec<char> = part.chars().collect();
        if chars.first() == Some(&'{') {
            out.push_str(part);
        } else if chars.len() < 2 {
            return text.to_string();
        } else {
            let (a, b) = (chars[0], chars[1]);
            let rest: String = chars[2..].iter().collect();
            if b != '{' {
                out.push_str(&format!("{{{a}}}{{{b}}}{rest}"));
            } else {
                out.push_str(&format!("{{{a}}}{b}{rest}"));
            }
        }
    }
    out
}

/// hendrycks/math's `_fix_a_slash_b`: `2/3` -> `\frac{2}{3}` (integers written plainly only).
fn fix_a_slash_b(text: &str) -> String {
    let parts: Vec<&str> = text.split('/').collect();
    if parts.len() != 2 {
        return text.to_string();
    }
    match (python_int(parts[0]), python_int(parts[1])) {
        (Some(a), Some(b)) if text == format!("{a}/{b}") => format!(r"\frac{{{a}}}{{{b}}}"),
        _ => text.to_string(),
    }
}

/// Python's `int(s)` for what it accepts here: optional spaces and sign, decimal digits.
fn python_int(text: &str) -> Option<i128> {
    text.trim().replace('_', "").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latex_is_normalized_as_latex2sympy_does() {
        let answer = NormalizationConfig::ANSWER;
        assert_eq!(normalize_latex(r"\dfrac{1}{2}", answer), r"\frac{1}{2}");
        assert_eq!(normalize_latex(r"5 \text{ apples}", answer), "5");
        assert_eq!(normalize_latex(r"\left( 3 \right)", answer), "( 3 )");
        assert_eq!(normalize_latex("50 percent", answer), r"50\%");
        assert_eq!(normalize_latex(r"12 \text{cm}^2", answer), "12");
        let gold = NormalizationConfig::GOLD;
        assert_eq!(normalize_latex("0.5", gold), r"\frac{1}{2}");
        assert_eq!(normalize_latex("3/4", gold), r"\frac{3}{4}");
        assert_eq!(normalize_latex(r"\frac13", gold), r"\frac{1}{3}");
        assert_eq!(normalize_latex(r"\sqrt2", gold), r"\sqrt{2}");
    }
}
