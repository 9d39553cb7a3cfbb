//! The practical core of the `math_verify` package (0.9) that TRL's `accuracy_reward` calls:
//! `parse(solution)`, `parse(completion, LaTeX only, boxed first)` and `verify(gold, answer)`.
//!
//! Extraction (which part of the text is the answer) and normalization (`\dfrac` -> `\frac`,
//! units dropped, `\boxed{}` unwrapped) follow math_verify's regexes exactly. Values are read by
//! a small evaluator instead of sympy: numbers, fractions, percentages, `+ - * / : ^`, `\sqrt`,
//! `\pi`, sets, intervals and `x = 5`, exactly (rationals) where sympy is exact and as floats
//! where it keeps a symbolic value. An answer it cannot evaluate (a variable, a function, a
//! matrix) falls back to comparing the normalized strings, which is what math_verify does when
//! sympy fails to parse. The difference that remains: two symbolic answers written differently
//! (`x^2+2x+1` vs `(x+1)^2`, `\text{two}` vs `two`) are different here and may be equal in
//! math_verify. `reference/rewards_reference.py` pins the agreement on ~1,200 cases.

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
    match (&gold, &answer) {
        (MathValue::Number(gold), MathValue::Number(answer)) => numbers_equal(*gold, *answer),
        (MathValue::Interval { .. }, _) | (_, MathValue::Interval { .. }) => {
            intervals_equal(&gold, &answer)
        }
        _ => sets_equal(&elements(gold), &elements(answer)),
    }
}

/// `sympy_compare_interval`, and math_verify's rule that an open interval `(a, b)` equals the
/// pair `a, b` (read as a set), compared in order.
fn intervals_equal(gold: &MathValue, answer: &MathValue) -> bool {
    let open_pair = |value: &MathValue| match value {
        MathValue::Interval {
            low,
            high,
            left_open: true,
            right_open: true,
        } => Some([*low, *high]),
        _ => None,
    };
    match (gold, answer) {
        (
            MathValue::Interval {
                low: a,
                high: b,
                left_open: l1,
                right_open: r1,
            },
            MathValue::Interval {
                low: c,
                high: d,
                left_open: l2,
                right_open: r2,
            },
        ) => l1 == l2 && r1 == r2 && numbers_equal(*a, *c) && numbers_equal(*b, *d),
        (MathValue::Set(set), interval) | (interval, MathValue::Set(set)) if set.len() == 2 => {
            let Some(pair) = open_pair(interval) else {
                return false;
            };
            let mut sorted = set.clone();
            sorted.sort_by(|a, b| a.evaluated().to_f64().total_cmp(&b.evaluated().to_f64()));
            let (gold_pair, answer_pair) = if matches!(gold, MathValue::Set(_)) {
                (sorted, pair.to_vec())
            } else {
                (pair.to_vec(), sorted)
            };
            gold_pair
                .into_iter()
                .zip(answer_pair)
                .all(|(g, a)| numbers_equal(g, a))
        }
        _ => false,
    }
}

fn elements(value: MathValue) -> Vec<Number> {
    match value {
        MathValue::Number(n) | MathValue::Equation { rhs: n, .. } => vec![n],
        MathValue::Set(set) => set,
        MathValue::Interval { low, high, .. } => vec![low, high],
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
