//! math_verify 0.9's extraction (`parser.py`): its regexes, their priorities, and the order in
//! which their matches are tried (lowest priority value first; within one priority the match
//! ending rightmost first).

use std::sync::LazyLock;

use fancy_regex::{Captures, Regex};

use super::normalize::{Boxed, NormalizationConfig, normalize_latex};
use super::parse::{Syntax, parse_value};
use super::value::{MathValue, Number};

/// What `parse` returns: the first value it could read, and the first matched string
/// (`fallback_mode="first_match"`); both `None` is math_verify's empty list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub value: Option<MathValue>,
    pub fallback: Option<String>,
}

impl Parsed {
    /// An empty list: nothing in the text looked like an answer.
    pub fn is_empty(&self) -> bool {
        self.value.is_none() && self.fallback.is_none()
    }
}

/// Which regex family a pattern belongs to (how its matches are read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Latex(NormalizationConfig),
    Expr,
}

struct Pattern {
    regex: Regex,
    priority: u32,
    family: Family,
    /// A literal every match contains (lowercase): texts without it are not searched, which
    /// keeps long completions cheap without changing what matches.
    needs: Option<&'static str>,
}

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("built-in regex {pattern}: {e}"))
}

/// `make_latex_env_pattern(prefix, context)`: `$...$`, `$$...$$`, `\[...\]`, `\(...\)`,
/// ` [...] `, bare `\frac{n}{m}` (plain context only), each optionally followed by a percent.
fn latex_env(prefix: &str, boxed: bool) -> String {
    let contents = [
        r"(?:[^$]|\$(?!\$))",
        r"(?:[^\\]|\\(?!\]))",
        r"(?:\\[$]|[^\n$])",
        r"(?:[^\\\n]|\\(?!\)))",
        r"[^\n\]\[]",
    ];
    let [dd, db, id, ip, ib] = contents.map(|c| {
        if boxed {
            format!(r"{c}*?\\boxed\{{{c}+?\}}{c}*?")
        } else {
            format!("{c}+?")
        }
    });
    let mut patterns = vec![
        format!(r"(?<!\\)\$\$(?P<{prefix}latexDisplayDollar>{dd})(?<!\\)\$\$"),
        format!(r"(?<!\\)\\\[(?P<{prefix}latexDisplayBracket>{db})(?<!\\)\\\]"),
        format!(r"(?<![\\\d])\$(?P<{prefix}latexInlineDollar>{id})(?<!\\)\$"),
        format!(r"(?<!\\)\\\((?P<{prefix}latexInlineParenthesis>{ip})(?<!\\)\\\)"),
        format!(r"\s\[(?P<{prefix}latexInlineBracket>{ib})\]\s"),
    ];
    if !boxed {
        let number = r"-?\d+(?:[.,]\d+)?";
        patterns.push(format!(
            r"(?P<{prefix}latexFraction>-?\\frac\{{{number}\}}\{{{number}\}})"
        ));
    }
    let percent = format!(r"(?P<{prefix}percent>(?:\\?%|[Pp]ercent|[Pp]ercentage|[Pp]ct))");
    format!(r"(?:(?:{})\s*{percent}?)", patterns.join("|"))
}

/// Up to five more environments joined by "and", "or" or commas.
fn chained(boxed: bool) -> String {
    let lead = if boxed { r"\s*" } else { "" };
    (1..=5)
        .map(|i| {
            format!(
                r"{lead}(?:\s*(?:,?and|,?or|,)\s*{})?",
                latex_env(&format!("next{i}_"), boxed)
            )
        })
        .collect()
}

/// `lazy_latex_regex(config)` for `try_extract_without_anchor` and `boxed_match_priority`.
fn latex_patterns(
    normalization: NormalizationConfig,
    without_anchor: bool,
    boxed_priority: u32,
) -> Vec<Pattern> {
    let envs = format!("(?:{}{})", latex_env("first_", false), chained(false));
    let (final_answer, answer, boxed) = (Some("final answer"), Some("answer"), Some(r"\boxed"));
    let mut list = vec![
        (
            format!(r"(?i:final answer is):?\s*{envs}\.?\s?I hope"),
            0,
            final_answer,
        ),
        (
            format!(r"(?i:final answer.{{0,100}}?)\s+is:?\s*{envs}"),
            50,
            final_answer,
        ),
        (format!(r"(?i:answer):.{{0,50}}?{envs}"), 100, answer),
        (format!(r"(?i:answer).{{0,50}}?{envs}"), 200, answer),
    ];
    if without_anchor {
        list.push((envs.clone(), 300, None));
    }
    let boxed_envs = format!("{}{}", latex_env("first_", true), chained(true));
    list.push((boxed_envs, boxed_priority, boxed));
    list.push((
        r"(?P<first_latexBoxed>\\boxed\{.+\})".to_string(),
        boxed_priority,
        boxed,
    ));
    list.into_iter()
        .map(|(pattern, priority, needs)| Pattern {
            regex: compile(&format!("(?s){pattern}")),
            priority,
            family: Family::Latex(normalization),
            needs,
        })
        .collect()
}

/// `lazy_expr_regex(ExprExtractionConfig())`: plain numbers and `1/2`-style expressions.
fn expr_patterns() -> Vec<Pattern> {
    let number = r"(?<!\d)(?:(?P<integer1>-?[1-9]\d{0,2}(?:[ ,]\d{3})+)(?P<decimal1>\.\d+)?|(?P<integer2>-?\d+)(?P<decimal2>[.,]\d+)|(?P<decimal3>\.\d+)|(?P<integer3>-?\d+))(?P<percent>\s*(?:%|[Pp]ercent|\s*[Pp]ercentage|\s*[Pp]ct))?";
    let operators = r"+\-*×/\^()÷";
    let all_chars = format!(r"[\d.\s{operators}]");
    let expr = format!(r"(?P<expr>-?\(?-?\d{all_chars}*[{operators}]{all_chars}+\)?)");
    let currency = "$€£¥₹₽₪₩₫฿₡₢₣₤₥₦₧₨₩₪₫₭₮₯₰₱₲₳₴₵₶₷₸₹₺₻₼₽₾₿";
    let prefix = r"(?:^|\s|=)(?:\*\*)?";
    let suffix = r"(?:\*\*)?(?:\.|,|:|\s|\)|\$|$)";
    let expr_anchored = format!("(?:{prefix}{expr}{suffix})");
    let number_anchored = format!(r"(?:{prefix}[{currency}]?{number})");
    let either = format!("(?:{expr_anchored}|{number_anchored})");
    let (final_answer, answer) = (Some("final answer"), Some("answer"));
    [
        (
            format!(r"(?i:final answer is):?\s*{either}\.?\s?I hope"),
            0,
            final_answer,
        ),
        (
            format!(r"(?i:final answer.{{0,100}}?)\s+is:?{either}"),
            50,
            final_answer,
        ),
        (
            format!(r"(?i:answer):(?:.{{0,100}}=\s*|.{{0,50}}?){either}(?!\s*=)"),
            100,
            answer,
        ),
        (
            format!(r"(?i:answer)(?:.{{0,100}}=\s*|.{{0,50}}?){either}(?!\s*=)"),
            200,
            answer,
        ),
        (expr_anchored, 300, None),
        (number_anchored, 300, None),
    ]
    .into_iter()
    .map(|(pattern, priority, needs)| Pattern {
        regex: compile(&pattern),
        priority,
        family: Family::Expr,
        needs,
    })
    .collect()
}

/// `parse(gold)` with its defaults: LaTeX and plain expressions, boxes at priority 50, any match.
static GOLD: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    let mut patterns = latex_patterns(NormalizationConfig::GOLD, true, 50);
    patterns.extend(expr_patterns());
    patterns.sort_by_key(|p| p.priority);
    patterns
});

/// TRL's completion config: `LatexExtractionConfig(normalization_config=NormalizationConfig(
/// units=True), boxed_match_priority=0, try_extract_without_anchor=False)`.
static ANSWER: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    let mut patterns = latex_patterns(NormalizationConfig::ANSWER, false, 0);
    patterns.sort_by_key(|p| p.priority);
    patterns
});

/// `parse(solution)` as TRL calls it for the gold answer.
pub fn parse_gold(text: &str) -> Parsed {
    extract(text, &GOLD, false)
}

/// `parse(completion, ..., extraction_mode="first_match")` as TRL calls it for the answer.
pub fn parse_answer(text: &str) -> Parsed {
    extract(text, &ANSWER, true)
}

/// `extract_target_from_pred`: priority groups in order; within one, matches by rightmost end
/// (then leftmost start); stop at the first value read (or, in first-match mode, at the first
/// match at all).
fn extract(text: &str, patterns: &[Pattern], first_match: bool) -> Parsed {
    let mut parsed = Parsed::default();
    let lower = text.to_lowercase();
    let mut start = 0;
    while start < patterns.len() {
        let priority = patterns[start].priority;
        let end = start
            + patterns[start..]
                .iter()
                .take_while(|p| p.priority == priority)
                .count();
        let mut matches: Vec<(Captures, &Pattern)> = Vec::new();
        for pattern in patterns[start..end]
            .iter()
            .filter(|p| p.needs.is_none_or(|literal| lower.contains(literal)))
        {
            // A pattern that exceeds fancy-regex's backtracking limit matches nothing, as a
            // math_verify timeout would.
            matches.extend(
                pattern
                    .regex
                    .captures_iter(text)
                    .map_while(Result::ok)
                    .map(|c| (c, pattern)),
            );
        }
        let position = |c: &Captures| c.get(0).map_or((0, 0), |m| (m.end(), m.start()));
        // Python's stable `sorted(key=(end, -start), reverse=True)`.
        matches.sort_by(|(a, _), (b, _)| {
            let ((ae, as_), (be, bs)) = (position(a), position(b));
            be.cmp(&ae).then(as_.cmp(&bs))
        });
        for (captures, pattern) in &matches {
            let (value, fallback) = match pattern.family {
                Family::Latex(config) => extract_latex(captures, &pattern.regex, config),
                Family::Expr => extract_expr(captures),
            };
            if !fallback.is_empty() && parsed.fallback.is_none() {
                parsed.fallback = Some(fallback);
            }
            if value.is_some() {
                parsed.value = value;
                return parsed;
            }
            if first_match {
                break;
            }
        }
        if first_match && !matches.is_empty() {
            return parsed;
        }
        start = end;
    }
    parsed
}

/// The first group (in pattern order) whose name starts with `prefix` and that matched.
fn group<'t>(captures: &Captures<'t>, regex: &Regex, prefix: &str) -> Option<(&'t str, String)> {
    regex.capture_names().flatten().find_map(|name| {
        let value = captures.name(name).filter(|m| !m.as_str().is_empty())?;
        name.starts_with(prefix)
            .then(|| (value.as_str(), name.to_string()))
    })
}

/// `extract_latex`: every matched environment normalized and parsed; several parsed ones form
/// a set.
fn extract_latex(
    captures: &Captures,
    regex: &Regex,
    config: NormalizationConfig,
) -> (Option<MathValue>, String) {
    let groups = std::iter::once("first_latex".to_string())
        .chain((1..=5).map(|i| format!("next{i}_latex")))
        .filter_map(|prefix| group(captures, regex, &prefix));
    let mut values = Vec::new();
    let mut strings = Vec::new();
    for (latex, name) in groups {
        let (env, kind) = name.split_once('_').unwrap_or((&name, ""));
        let percent = captures
            .name(&format!("{env}_percent"))
            .is_some_and(|m| !m.as_str().is_empty());
        let config = if kind == "latexBoxed" {
            NormalizationConfig {
                boxed: Boxed::Last,
                ..config
            }
        } else {
            config
        };
        let normalized = normalize_latex(latex, config);
        let value = parse_value(&normalized, Syntax::Latex).map(|v| with_percent(v, percent));
        strings.push(normalized);
        values.push(value);
    }
    let Some(first_string) = strings.first().cloned() else {
        return (None, String::new());
    };
    if values.len() > 1 && values.iter().all(Option::is_some) {
        let mut elements = Vec::new();
        for value in values.into_iter().flatten() {
            match value {
                MathValue::Number(n) => elements.push(n),
                MathValue::Set(set) => elements.extend(set),
                MathValue::Equation { .. } | MathValue::Interval { .. } => {
                    return (None, strings.join(" and "));
                }
            }
        }
        return (Some(MathValue::Set(elements)), strings.join(" and "));
    }
    (values.into_iter().next().flatten(), first_string)
}

/// `convert_to_pct` on a whole environment followed by a percent sign.
fn with_percent(value: MathValue, percent: bool) -> MathValue {
    match value {
        MathValue::Number(n) if percent => MathValue::Number(Number { percent: true, ..n }),
        other => other,
    }
}

/// `extract_expr`: a number (thousands separators dropped, leading zeros stripped, percent
/// kept) or a `parse_expr` expression.
fn extract_expr(captures: &Captures) -> (Option<MathValue>, String) {
    let find = |prefix: &str| {
        ["1", "2", "3"].iter().find_map(|i| {
            captures
                .name(&format!("{prefix}{i}"))
                .map(|m| m.as_str())
                .filter(|s| !s.is_empty())
        })
    };
    let (integer, decimal) = (find("integer"), find("decimal"));
    let percent = captures
        .name("percent")
        .is_some_and(|m| !m.as_str().is_empty());
    if integer.is_some() || decimal.is_some() {
        let integer: String = integer
            .unwrap_or("")
            .chars()
            .filter(|c| *c != ',' && *c != ' ')
            .collect();
        let integer = match integer.trim_start_matches('0') {
            "" => "0",
            trimmed => trimmed,
        };
        let number = format!("{integer}{}", decimal.unwrap_or("").replace(',', "."));
        let value = parse_value(&number, Syntax::Latex).map(|v| with_percent(v, percent));
        return (value, number);
    }
    let expr = captures.name("expr").map_or("", |m| m.as_str());
    if expr.is_empty() {
        return (None, String::new());
    }
    let python = expr.replace('\n', " ").replace('^', "**");
    (parse_value(&python, Syntax::Python), expr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gold_answers_are_found_as_math_verify_finds_them() {
        assert_eq!(parse_gold("42").fallback.as_deref(), Some("42"));
        assert_eq!(
            parse_gold(r"\frac{1}{3}").fallback.as_deref(),
            Some(r"\frac{1}{3}")
        );
        assert_eq!(parse_gold("3/2").fallback.as_deref(), Some("3/2"));
        assert_eq!(parse_gold(r"\boxed{10}").fallback.as_deref(), Some("10"));
        assert!(parse_gold("seven").is_empty());
        assert!(parse_gold(r"\sqrt{2}").is_empty());
        assert!(parse_gold(r"\frac13").is_empty());
    }

    #[test]
    fn answers_need_latex_or_a_box() {
        assert!(parse_answer("I think it's 42").is_empty());
        assert_eq!(
            parse_answer(r"So \boxed{\frac{1}{2}}").fallback.as_deref(),
            Some(r"\frac{1}{2}")
        );
        assert_eq!(
            parse_answer(r"First \boxed{3} then \boxed{5}")
                .fallback
                .as_deref(),
            Some("3,5")
        );
        assert_eq!(
            parse_answer(r"The answer is $-7$").fallback.as_deref(),
            Some("-7")
        );
    }
}
