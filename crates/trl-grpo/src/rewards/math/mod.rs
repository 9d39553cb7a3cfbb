//! The practical core of the `math_verify` package (0.9) that TRL's `accuracy_reward` calls:
//! `parse(solution)`, `parse(completion, LaTeX only, boxed first)` and `verify(gold, answer)`.
//!
//! Extraction (which part of the text is the answer) and normalization (`\dfrac` -> `\frac`,
//! units dropped, `\boxed{}` unwrapped) follow math_verify's regexes exactly. Values are read by
//! a small exact evaluator (numbers, fractions, percentages, `+ - * / ^`, sets, `x = 5`) instead
//! of sympy; an answer it cannot evaluate (`\sqrt{2}`, `\pi`, `x+1`) falls back to comparing the
//! normalized strings, which is what math_verify does when sympy fails. The one difference: two
//! symbolic answers written differently (`\frac{\sqrt{2}}{2}` vs `\frac{1}{\sqrt{2}}`) count as
//! different here and equal in math_verify.

mod boxed;
mod extract;
mod normalize;
mod parse;
mod value;

pub use extract::{Parsed, parse_answer, parse_gold};
pub use value::{MathValue, Num, Number};

/// `verify(gold, answer)` with math_verify's defaults (`float_rounding=6`, strict): values
/// against values, matched strings against matched strings.
pub fn verify(gold: &Parsed, answer: &Parsed) -> bool {
    let values = match (&gold.value, &answer.value) {
        (Some(gold), Some(answer)) => values_equal(gold, answer),
        _ => false,
    };
    let strings = match (&gold.fallback, &answer.fallback) {
        (Some(gold), Some(answer)) => {
            let (gold, answer) = (gold.trim(), answer.trim());
            !gold.is_empty() && gold == answer
        }
        _ => false,
    };
    values || strings
}

/// `sympy_expr_eq` for the values this module reads: an equation answer is compared by its
/// right side unless the gold is one too; an assignment gold (`x = 5`) by its right side.
fn values_equal(gold: &MathValue, answer: &MathValue) -> bool {
    let (gold, answer) = match (gold, answer) {
        // Two relations: sympy compares them as relations; left to the string comparison.
        (MathValue::Equation { .. }, MathValue::Equation { .. }) => return false,
        (_, MathValue::Equation { rhs, .. }) => (gold.clone(), MathValue::Number(*rhs)),
        (
            MathValue::Equation {
                rhs,
                assignment: true,
            },
            _,
        ) => (MathValue::Number(*rhs), answer.clone()),
        (MathValue::Equation { .. }, _) => return false,
        _ => (gold.clone(), answer.clone()),
    };
    match (gold, answer) {
        (MathValue::Number(gold), MathValue::Number(answer)) => numbers_equal(gold, answer),
        (gold, answer) => sets_equal(&elements(gold), &elements(answer)),
    }
}

fn elements(value: MathValue) -> Vec<Number> {
    match value {
        MathValue::Number(n) | MathValue::Equation { rhs: n, .. } => vec![n],
        MathValue::Set(set) => set,
    }
}

/// `sympy_deep_compare_set_and_tuple`: same size, elements equal in sorted order.
fn sets_equal(gold: &[Number], answer: &[Number]) -> bool {
    let sorted = |set: &[Number]| {
        let mut set = set.to_vec();
        set.sort_by(|a, b| a.evaluated().to_f64().total_cmp(&b.evaluated().to_f64()));
        set
    };
    gold.len() == answer.len()
        && sorted(gold)
            .into_iter()
            .zip(sorted(answer))
            .all(|(g, a)| numbers_equal(g, a))
}

/// `sympy_numeric_eq` (then `simplify(a - b) == 0`, which for numbers is exact equality):
/// with a float literal on either side both are rounded to 6 decimals; two integer literals
/// compare without their percent signs (math_verify's `9% == 9`); otherwise exactly.
pub fn numbers_equal(gold: Number, answer: Number) -> bool {
    if gold == answer {
        return true;
    }
    let (g, a) = (gold.evaluated(), answer.evaluated());
    if gold.atomic || answer.atomic {
        if gold.is_atomic_float() || answer.is_atomic_float() {
            return round6(g) == round6(a);
        }
        if gold.is_atomic_integer() && answer.is_atomic_integer() {
            return gold.value == answer.value;
        }
    }
    exactly_equal(g, a)
}

fn exactly_equal(a: Num, b: Num) -> bool {
    match (a, b) {
        (Num::Exact(..), Num::Exact(..)) => a == b,
        _ => {
            let (a, b) = (a.to_f64(), b.to_f64());
            (a - b).abs() <= 1e-15 * a.abs().max(b.abs())
        }
    }
}

/// sympy's `round(6)`: the value to 6 decimal places.
fn round6(value: Num) -> f64 {
    (value.to_f64() * 1e6).round()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(completion: &str, solution: &str) -> bool {
        verify(&parse_gold(solution), &parse_answer(completion))
    }

    #[test]
    fn values_compare_as_math_verify_compares_them() {
        assert!(check(r"\boxed{0.333333}", r"\frac{1}{3}"));
        assert!(!check(r"\boxed{0.33}", r"\frac{1}{3}"));
        assert!(check(r"\boxed{50}", "50%"));
        assert!(check(r"\boxed{0.5}", "50%"));
        assert!(check(r"\boxed{x = 5}", "5"));
        assert!(!check(r"\boxed{2}", "1/2"));
        assert!(check(r"\boxed{\sqrt{2}}", r"$\sqrt{2}$"));
        assert!(!check(r"\boxed{\sqrt{3}}", r"$\sqrt{2}$"));
        assert!(check(r"\boxed{1, 2}", "$2, 1$"));
    }
}
