//! The values answer checking compares: numbers as sympy holds them (exact rationals, or floats
//! once a decimal or an irrational is involved), sets, intervals and `lhs = rhs`.

/// A number as sympy would hold it, with what math_verify's comparison looks at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number {
    /// The number (before the percent sign's division by 100).
    pub value: Num,
    /// `X%`: sympy's `X * UnevaluatedExpr(1/100)`; `value` is `X`.
    pub percent: bool,
    /// A literal (sympy `Number` atom: `3`, `0.5`, `\frac{1}{2}`), not the result of an
    /// operation (`2+3`, `3 \cdot 4`), which sympy keeps unevaluated.
    pub atomic: bool,
}

/// An exact rational (`num / den`, reduced, `den > 0`) or a float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// `numerator, denominator`: sympy's `Integer` / `Rational`.
    Exact(i128, i128),
    /// sympy's `Float` (a decimal literal, or arithmetic involving one).
    Float(f64),
}

/// A parsed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum MathValue {
    /// One number.
    Number(Number),
    /// `1, 2` or boxes joined by "and": a finite set (duplicates kept, as they compare alike).
    Set(Vec<Number>),
    /// `lhs = rhs`, kept as its right side; `assignment` when `lhs` is a lone variable (`x = 5`).
    /// `(a, b)`, `[a, b]`, `(a, b]`, `[a, b)`: an interval, as latex2sympy reads them.
    Interval {
        /// The lower end.
        low: Number,
        /// The upper end.
        high: Number,
        /// `(` rather than `[`.
        left_open: bool,
        /// `)` rather than `]`.
        right_open: bool,
    },
    Equation {
        /// The right side of the last `=`.
        rhs: Number,
        /// Whether the left side is a lone variable.
        assignment: bool,
    },
}

impl Num {
    pub(super) fn exact(num: i128, den: i128) -> Option<Num> {
        if den == 0 {
            return None;
        }
        let g = gcd(num.unsigned_abs(), den.unsigned_abs()).max(1) as i128;
        let sign = if den < 0 { -1 } else { 1 };
        Some(Num::Exact(sign * num / g, sign * den / g))
    }

    /// The value as a float.
    pub fn to_f64(self) -> f64 {
        match self {
            Num::Exact(n, d) => n as f64 / d as f64,
            Num::Float(f) => f,
        }
    }

    pub(super) fn is_integer(self) -> bool {
        matches!(self, Num::Exact(_, 1))
    }

    pub(super) fn combine(self, other: Num, op: char) -> Option<Num> {
        match (self, other) {
            (Num::Exact(a, b), Num::Exact(c, d)) => match op {
                '+' => Num::exact(
                    a.checked_mul(d)?.checked_add(c.checked_mul(b)?)?,
                    b.checked_mul(d)?,
                ),
                '-' => Num::exact(
                    a.checked_mul(d)?.checked_sub(c.checked_mul(b)?)?,
                    b.checked_mul(d)?,
                ),
                '*' => Num::exact(a.checked_mul(c)?, b.checked_mul(d)?),
                _ => Num::exact(a.checked_mul(d)?, b.checked_mul(c)?),
            },
            (x, y) => {
                let (x, y) = (x.to_f64(), y.to_f64());
                let v = match op {
                    '+' => x + y,
                    '-' => x - y,
                    '*' => x * y,
                    _ if y == 0.0 => return None,
                    _ => x / y,
                };
                v.is_finite().then_some(Num::Float(v))
            }
        }
    }

    pub(super) fn pow(self, exponent: Num) -> Option<Num> {
        let Num::Exact(e, 1) = exponent else {
            return None; // roots and float powers stay symbolic in sympy: not evaluated here
        };
        match self {
            Num::Exact(n, d) => {
                let e32 = u32::try_from(e.unsigned_abs()).ok().filter(|&e| e <= 256)?;
                let (n, d) = (n.checked_pow(e32)?, d.checked_pow(e32)?);
                if e < 0 {
                    Num::exact(d, n)
                } else {
                    Num::exact(n, d)
                }
            }
            Num::Float(f) => {
                let v = f.powi(i32::try_from(e).ok()?);
                v.is_finite().then_some(Num::Float(v))
            }
        }
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Number {
    pub(super) fn literal(value: Num) -> Number {
        Number {
            value,
            percent: false,
            atomic: true,
        }
    }

    /// sympy's `doit()`: a percentage becomes its value divided by 100.
    pub fn evaluated(self) -> Num {
        if self.percent {
            self.value
                .combine(Num::Exact(100, 1), '/')
                .unwrap_or(self.value)
        } else {
            self.value
        }
    }

    /// A sympy `Integer` (or `Integer%`).
    pub fn is_atomic_integer(self) -> bool {
        self.atomic && self.value.is_integer()
    }

    /// A sympy `Float` (or `Float%`).
    pub fn is_atomic_float(self) -> bool {
        self.atomic && matches!(self.value, Num::Float(_))
    }

    pub(super) fn apply(self, other: Number, op: char) -> Option<Number> {
        let value = self.evaluated().combine(other.evaluated(), op)?;
        Some(Number {
            value,
            percent: false,
            atomic: false,
        })
    }
}
