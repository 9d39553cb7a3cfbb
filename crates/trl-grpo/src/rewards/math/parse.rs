//! Reading an extracted answer into a [`MathValue`]: normalized LaTeX as latex2sympy reads it,
//! or the plain expressions of sympy's `parse_expr` (`1/2 + 3**2`).

use super::value::{MathValue, Num, Number};

/// Which grammar to read: normalized LaTeX, or the plain `1/2 + 3**2` of `parse_expr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Latex,
    Python,
}

/// Parses an extracted answer; `None` where sympy would need symbols (or fail).
pub fn parse_value(text: &str, syntax: Syntax) -> Option<MathValue> {
    let text = text.trim();
    if syntax == Syntax::Latex {
        if let Some(value) = parse_equation(text) {
            return Some(value);
        }
        if let Some(number) = thousands(text) {
            return Some(MathValue::Number(number));
        }
        if let Some(interval) = interval(text) {
            return Some(interval);
        }
        if let Some(inner) = text.strip_prefix(r"\{").and_then(|t| t.strip_suffix(r"\}")) {
            let elements: Option<Vec<Number>> = inner
                .split(',')
                .map(|part| parse_number(part, syntax))
                .collect();
            return elements.map(MathValue::Set); // `\{1, 2\}`: a set, even of one element
        }
        if text.contains(',') {
            let parts: Option<Vec<Number>> = text
                .split(',')
                .map(|part| parse_number(part, syntax))
                .collect();
            return parts.filter(|p| p.len() > 1).map(MathValue::Set);
        }
    }
    parse_number(text, syntax).map(MathValue::Number)
}

/// `(1, 2)` or `[0, 1)`: two numbers in brackets. A reversed one (sympy's empty set) is left
/// to the string comparison.
fn interval(text: &str) -> Option<MathValue> {
    let left_open = match text.chars().next()? {
        '(' => true,
        '[' => false,
        _ => return None,
    };
    let right_open = match text.chars().last()? {
        ')' => true,
        ']' => false,
        _ => return None,
    };
    let inner = &text[1..text.len() - 1];
    let (low, high) = inner.split_once(',')?;
    if inner.contains(['(', ')', '[', ']']) || high.contains(',') {
        return None;
    }
    let (low, high) = (
        parse_number(low, Syntax::Latex)?,
        parse_number(high, Syntax::Latex)?,
    );
    let ordered = low.evaluated().to_f64() <= high.evaluated().to_f64();
    ordered.then_some(MathValue::Interval {
        low,
        high,
        left_open,
        right_open,
    })
}

/// `1,000` and `12,345.5` are numbers to latex2sympy, not sets.
fn thousands(text: &str) -> Option<Number> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let groups: Vec<&str> = whole.split(',').collect();
    let grouped = groups.len() > 1
        && (1..=3).contains(&groups[0].len())
        && groups[1..].iter().all(|g| g.len() == 3)
        && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit()))
        && fraction.bytes().all(|b| b.is_ascii_digit());
    grouped
        .then(|| parse_number(&text.replace(',', ""), Syntax::Latex))
        .flatten()
}

/// `lhs = rhs` (split at the last `=` not part of `\leq`, `<=`, `!=`, `>=`).
fn parse_equation(text: &str) -> Option<MathValue> {
    if text.contains([',', ';']) {
        return None;
    }
    let bytes = text.as_bytes();
    let split = (0..bytes.len()).rev().find(|&i| {
        bytes[i] == b'=' && (i == 0 || !matches!(bytes[i - 1], b'\\' | b'<' | b'!' | b'>'))
    })?;
    let (lhs, rhs) = (text[..split].trim(), text[split + 1..].trim());
    let rhs = parse_number(rhs, Syntax::Latex)?;
    let lhs_first_relation = lhs.split('=').next().unwrap_or(lhs).trim();
    Some(MathValue::Equation {
        rhs,
        assignment: is_variable(lhs_first_relation),
    })
}

/// A lone variable (`x`, `a_1`, `y_{max}`): sympy's assignment `x = 5` keeps its right side.
fn is_variable(text: &str) -> bool {
    static VARIABLE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^[A-Za-z](?:_(?:\{[A-Za-z0-9]+\}|[A-Za-z0-9]))?$").expect("valid regex")
    });
    VARIABLE.is_match(text)
}

/// One number-valued expression, the whole text consumed.
fn parse_number(text: &str, syntax: Syntax) -> Option<Number> {
    let mut parser = Parser {
        text: text.trim(),
        pos: 0,
        syntax,
    };
    let number = parser.sum()?;
    parser.skip_space();
    (parser.pos == parser.text.len()).then_some(number)
}

/// sympy's `sqrt`: exact for perfect squares (`\sqrt{4}` is the integer 2), otherwise kept
/// symbolic, which compares here by value as a float. Roots of negatives are refused (complex).
fn square_root(inner: Number) -> Option<Number> {
    let exact_root = |n: i128| {
        let root = (n as f64).sqrt().round() as i128;
        (root.checked_mul(root) == Some(n)).then_some(root)
    };
    match inner.evaluated() {
        Num::Exact(n, d) if n >= 0 => match (exact_root(n), exact_root(d)) {
            (Some(a), Some(b)) => Some(Number {
                value: Num::Exact(a, b),
                percent: false,
                atomic: true,
            }),
            _ => Some(Number {
                value: Num::Float((n as f64 / d as f64).sqrt()),
                percent: false,
                atomic: false,
            }),
        },
        Num::Float(f) if f >= 0.0 => Some(Number {
            value: Num::Float(f.sqrt()),
            percent: false,
            atomic: false,
        }),
        _ => None,
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    syntax: Syntax,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
        if self.syntax == Syntax::Latex {
            for space in [r"\,", r"\;", r"\quad", r"\ "] {
                if self.rest().starts_with(space) {
                    self.pos += space.len();
                    self.skip_space();
                }
            }
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        let found = self.rest().starts_with(token);
        if found {
            self.pos += token.len();
        }
        found
    }

    fn sum(&mut self) -> Option<Number> {
        let mut left = self.product()?;
        loop {
            let op = if self.eat("+") {
                '+'
            } else if self.eat("-") {
                '-'
            } else {
                return Some(left);
            };
            left = left.apply(self.product()?, op)?;
        }
    }

    fn product(&mut self) -> Option<Number> {
        let mut left = self.unary()?;
        loop {
            let python = self.syntax == Syntax::Python;
            let op = if python && self.rest().trim_start().starts_with("**") {
                return Some(left);
            } else if self.eat("*") || self.eat(r"\cdot") || self.eat(r"\times") {
                '*'
            } else if self.eat("/") || self.eat(r"\div") || (!python && self.eat(":")) {
                '/'
            } else if !python && self.starts_factor() {
                '*'
            } else {
                return Some(left);
            };
            left = left.apply(self.unary()?, op)?;
        }
    }

    /// LaTeX juxtaposition (`2(3)`, `2\frac{1}{2}`) multiplies, as in latex2sympy.
    fn starts_factor(&mut self) -> bool {
        self.skip_space();
        let rest = self.rest();
        rest.starts_with(|c: char| c.is_ascii_digit() || c == '(' || c == '{')
            || [r"\frac", r"\sqrt", r"\pi"]
                .iter()
                .any(|c| rest.starts_with(c))
    }

    fn unary(&mut self) -> Option<Number> {
        if self.eat("-") {
            let inner = self.unary()?;
            let value = Num::Exact(0, 1).combine(inner.value, '-')?;
            return Some(Number { value, ..inner });
        }
        if self.eat("+") {
            return self.unary();
        }
        self.power()
    }

    fn power(&mut self) -> Option<Number> {
        let base = self.atom()?;
        let caret = match self.syntax {
            Syntax::Latex => "^",
            Syntax::Python => "**",
        };
        if !self.eat(caret) {
            return Some(base);
        }
        if self.syntax == Syntax::Latex && (self.eat(r"\circ") || self.eat(r"{\circ}")) {
            return Some(base); // degrees, read without conversion (`convert_degrees=False`)
        }
        let exponent = if self.syntax == Syntax::Latex && !self.rest().starts_with(['{', '(']) {
            self.digit()? // `2^3`: one character
        } else {
            self.unary()?
        };
        let value = base.evaluated().pow(exponent.evaluated())?;
        Some(Number {
            value,
            percent: false,
            atomic: false,
        })
    }

    fn digit(&mut self) -> Option<Number> {
        let c = self.rest().chars().next().filter(char::is_ascii_digit)?;
        self.pos += 1;
        Some(Number::literal(Num::Exact(i128::from(c as u8 - b'0'), 1)))
    }

    fn atom(&mut self) -> Option<Number> {
        self.skip_space();
        let mut number = if self.eat("(") {
            self.closed(")")?
        } else if self.syntax == Syntax::Latex && (self.eat("{") || self.eat(r"\text{")) {
            self.closed("}")? // `\text{5}` (also `\textbf`, `\mathbf` once normalized) is 5
        } else if self.syntax == Syntax::Latex && self.eat(r"\frac") {
            self.fraction()?
        } else if self.syntax == Syntax::Latex && self.eat(r"\sqrt{") {
            square_root(self.closed("}")?)?
        } else if self.syntax == Syntax::Latex && self.eat(r"\pi") {
            Number {
                value: Num::Float(std::f64::consts::PI),
                percent: false,
                atomic: false,
            }
        } else {
            self.literal()?
        };
        if self.syntax == Syntax::Latex && (self.eat(r"\%") || self.eat("%")) {
            number = Number {
                percent: true,
                ..number
            };
        }
        Some(number)
    }

    fn closed(&mut self, close: &str) -> Option<Number> {
        let inner = self.sum()?;
        self.eat(close).then_some(inner)
    }

    /// `\frac{a}{b}`: a literal rational when both sides are integers, as sympy's `Rational`.
    fn fraction(&mut self) -> Option<Number> {
        if !self.eat("{") {
            return None;
        }
        let numerator = self.closed("}")?;
        if !self.eat("{") {
            return None;
        }
        let denominator = self.closed("}")?;
        let mut value = numerator.apply(denominator, '/')?;
        value.atomic = numerator.is_atomic_integer() && denominator.is_atomic_integer();
        Some(value)
    }

    fn literal(&mut self) -> Option<Number> {
        let rest = self.rest();
        let digits = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let token = rest[..digits].to_string();
        if token.is_empty() || token.matches('.').count() > 1 {
            return None;
        }
        self.pos += digits;
        let value = if token.contains('.') {
            Num::Float(token.parse().ok()?)
        } else {
            Num::Exact(token.parse().ok()?, 1)
        };
        Some(Number::literal(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> Number {
        match parse_value(text, Syntax::Latex) {
            Some(MathValue::Number(n)) => n,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn latex_numbers_evaluate_exactly() {
        assert_eq!(number(r"\frac{2}{4}").value, Num::Exact(1, 2));
        assert!(number(r"\frac{2}{4}").atomic);
        assert_eq!(number(r"-\frac{1}{2}").value, Num::Exact(-1, 2));
        assert_eq!(number(r"2^{3}").value, Num::Exact(8, 1));
        assert_eq!(number("2^3").value, Num::Exact(8, 1));
        assert_eq!(number(r"3 \cdot 4").value, Num::Exact(12, 1));
        assert!(!number(r"3 \cdot 4").atomic);
        assert_eq!(number("1,000").value, Num::Exact(1000, 1));
        assert_eq!(number("10^{-2}").value, Num::Exact(1, 100));
        assert_eq!(number("0.5").value, Num::Float(0.5));
        let percent = number(r"50\%");
        assert!(percent.percent && percent.is_atomic_integer());
        assert_eq!(percent.evaluated(), Num::Exact(1, 2));
    }

    #[test]
    fn sets_equations_and_symbols() {
        assert!(
            matches!(parse_value("1,2", Syntax::Latex), Some(MathValue::Set(s)) if s.len() == 2)
        );
        assert!(matches!(
            parse_value("x = 5", Syntax::Latex),
            Some(MathValue::Equation {
                assignment: true,
                ..
            })
        ));
        assert_eq!(parse_value(r"\sqrt{-2}", Syntax::Latex), None);
        assert_eq!(parse_value(r"\sqrt[3]{2}", Syntax::Latex), None);
        assert_eq!(parse_value("x", Syntax::Latex), None);
        assert_eq!(parse_value(r"\frac{1}{0}", Syntax::Latex), None);
        assert!(matches!(
            parse_value("(1, 2]", Syntax::Latex),
            Some(MathValue::Interval {
                left_open: true,
                right_open: false,
                ..
            })
        ));
        assert_eq!(parse_value("(2, 1)", Syntax::Latex), None);
        assert!(
            matches!(parse_value(r"\{3\}", Syntax::Latex), Some(MathValue::Set(s)) if s.len() == 1)
        );
        assert!(matches!(
            parse_value(r"90^{\circ}", Syntax::Latex),
            Some(MathValue::Number(_))
        ));
    }

    #[test]
    fn python_expressions() {
        let Some(MathValue::Number(n)) = parse_value("3/2", Syntax::Python) else {
            panic!()
        };
        assert_eq!(n.value, Num::Exact(3, 2));
        assert!(!n.atomic);
        let Some(MathValue::Number(n)) = parse_value("2**3", Syntax::Python) else {
            panic!()
        };
        assert_eq!(n.value, Num::Exact(8, 1));
        assert_eq!(parse_value("2(3)", Syntax::Python), None);
    }
}
