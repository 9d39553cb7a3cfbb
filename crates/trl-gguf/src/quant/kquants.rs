//! The k-quants written by `llama-quantize` without an importance matrix: `ggml-quants.c`'s
//! `quantize_row_q4_K_ref`, `quantize_row_q5_K_ref` and `quantize_row_q6_K_ref` (256-value
//! super-blocks of 32- or 16-value sub-blocks with 6- or 8-bit scales). Their dequantizers are
//! in `kdequant.rs`.

use super::{f16_bytes, f16_round};
use crate::format::QK_K;

/// ggml's `GROUP_MAX_EPS`: below this a sub-block counts as all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: round to nearest (ties to even) through the float's mantissa.
fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0f32).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// `make_qkx2_quants`: a scale and minimum (returned negated, as `the_min`) for `x` with
/// levels 0..=nmax, searched over `nstep` rescalings, and the levels in `l`.
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = q as u8;
        let diff = scale * q as f32 + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    let mut laux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = q as u8;
            let (w, lf) = (weights[i], q as f32);
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * (diff * diff);
            }
            if cur_error < best_error {
                l[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Scale and minimum of each 32-value sub-block of a q4_K/q5_K super-block (weights
/// `av_x + |x|`, as the `_ref` quantizers), with the levels in `l`.
fn sub_block_scales(
    x: &[f32],
    l: &mut [u8],
    nmax: i32,
    rmin: f32,
    nstep: i32,
) -> ([f32; 8], [f32; 8]) {
    let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
    let mut weights = [0f32; 32];
    for j in 0..QK_K / 32 {
        let xs = &x[32 * j..32 * j + 32];
        let sum_x2 = xs.iter().fold(0f32, |s, v| s + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        let (scale, min) = make_qkx2_quants(
            nmax,
            xs,
            &weights,
            &mut l[32 * j..32 * j + 32],
            rmin,
            0.1,
            nstep,
        );
        scales[j] = scale;
        mins[j] = min;
    }
    (scales, mins)
}

/// The 12 bytes of eight 6-bit scales and mins, and the f16 `d`/`dmin` they multiply.
fn pack_scales(scales: &[f32; 8], mins: &[f32; 8]) -> ([u8; 12], f32, f32) {
    let max_scale = scales.iter().fold(0f32, |m, &s| if s > m { s } else { m });
    let max_min = mins.iter().fold(0f32, |m, &s| if s > m { s } else { m });
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..8 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    (packed, max_scale / 63.0, max_min / 63.0)
}

/// ggml's `get_scale_min_k4`: sub-block `j`'s 6-bit scale and min from the packed 12 bytes.
pub(super) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Requantizes each value against its sub-block's stored (f16-rounded) scale and min.
fn requantize(x: &[f32], packed: &[u8; 12], d: f32, dmin: f32, nmax: i32, l: &mut [u8]) {
    let (d, dmin) = (f16_round(d), f16_round(dmin));
    for j in 0..QK_K / 32 {
        let (sc, m) = scale_min_k4(j, packed);
        let ds = d * f32::from(sc);
        if ds == 0.0 {
            continue;
        }
        let dm = dmin * f32::from(m);
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / ds).clamp(0, nmax) as u8;
        }
    }
}

/// q4_K: 256 values as f16 `d`, `dmin`, 12 bytes of scales/mins and 128 bytes of nibbles.
pub fn quantize_q4_k(data: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / QK_K * 144);
    let mut l = [0u8; QK_K];
    for x in data.chunks_exact(QK_K) {
        let (scales, mins) = sub_block_scales(x, &mut l, 15, -1.0, 20);
        let (packed, d, dmin) = pack_scales(&scales, &mins);
        requantize(x, &packed, d, dmin, 15, &mut l);
        out.extend_from_slice(&f16_bytes(d));
        out.extend_from_slice(&f16_bytes(dmin));
        out.extend_from_slice(&packed);
        for j in (0..QK_K).step_by(64) {
            out.extend((0..32).map(|i| l[j + i] | (l[j + i + 32] << 4)));
        }
    }
    out
}

/// q5_K: as q4_K plus 32 bytes holding each value's fifth bit.
pub fn quantize_q5_k(data: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / QK_K * 176);
    let mut l = [0u8; QK_K];
    for x in data.chunks_exact(QK_K) {
        let (scales, mins) = sub_block_scales(x, &mut l, 31, -0.5, 15);
        let (packed, d, dmin) = pack_scales(&scales, &mins);
        requantize(x, &packed, d, dmin, 31, &mut l);
        out.extend_from_slice(&f16_bytes(d));
        out.extend_from_slice(&f16_bytes(dmin));
        out.extend_from_slice(&packed);
        let mut qh = [0u8; QK_K / 8];
        let mut ql = [0u8; QK_K / 2];
        let (mut m1, mut m2) = (1u8, 2u8);
        for (chunk, n) in (0..QK_K).step_by(64).enumerate() {
            for j in 0..32 {
                let (mut l1, mut l2) = (l[n + j], l[n + j + 32]);
                if l1 > 15 {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                if l2 > 15 {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[32 * chunk + j] = l1 | (l2 << 4);
            }
            m1 <<= 2;
            m2 <<= 2;
        }
        out.extend_from_slice(&qh);
        out.extend_from_slice(&ql);
    }
    out
}

/// `make_qx_quants` with `rmse_type` 1 and no weights (what `quantize_row_q6_K_ref` calls): a
/// signed scale for levels -nmax..nmax-1, refined over 18 rescalings; levels (+nmax) in `l`.
fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [i8]) -> f32 {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let levels = |iscale: f32, i: usize| nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for (i, &v) in x.iter().enumerate() {
            let q = levels(iscale, i) as f32;
            let w = v * v;
            sumlx += w * v * q;
            suml2 += w * q * q;
        }
        (sumlx, suml2)
    };
    let fill = |l: &mut [i8], iscale: f32| {
        for (i, li) in l.iter_mut().enumerate() {
            *li = (levels(iscale, i) + nmax) as i8;
        }
    };
    let mut iscale = -(nmax as f32) / max;
    fill(l, iscale);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            fill(l, iscale);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// q6_K: 256 values as 128 bytes of low nibbles, 64 bytes of high bit pairs, 16 int8 scales
/// and an f16 `d`.
pub fn quantize_q6_k(data: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / QK_K * 210);
    let mut l = [0i8; QK_K];
    for x in data.chunks_exact(QK_K) {
        let mut scales = [0f32; QK_K / 16];
        let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
        for ib in 0..QK_K / 16 {
            let scale =
                make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16]);
            scales[ib] = scale;
            if scale.abs() > max_abs_scale {
                max_abs_scale = scale.abs();
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            out.extend(std::iter::repeat_n(0u8, 210));
            continue;
        }
        let iscale = -128.0 / max_scale;
        let d = 1.0 / iscale;
        let sc: Vec<i8> = scales
            .iter()
            .map(|&s| nearest_int(iscale * s).min(127) as i8)
            .collect();
        let df = f16_round(d);
        for j in 0..QK_K / 16 {
            let dj = df * f32::from(sc[j]);
            if dj == 0.0 {
                continue;
            }
            for ii in 0..16 {
                l[16 * j + ii] = (nearest_int(x[16 * j + ii] / dj).clamp(-32, 31) + 32) as i8;
            }
        }
        push_q6(&mut out, &l);
        out.extend(sc.iter().map(|&s| s as u8));
        out.extend_from_slice(&f16_bytes(d));
    }
    out
}

/// The 6-bit levels of a q6_K super-block as `ql` (low nibbles) then `qh` (high bit pairs).
fn push_q6(out: &mut Vec<u8>, l: &[i8; QK_K]) {
    let l: Vec<u8> = l.iter().map(|&v| v as u8).collect();
    let mut ql = [0u8; QK_K / 2];
    let mut qh = [0u8; QK_K / 4];
    for (half, j) in (0..QK_K).step_by(128).enumerate() {
        let (ql, qh) = (&mut ql[64 * half..], &mut qh[32 * half..]);
        for i in 0..32 {
            let q = [l[j + i], l[j + i + 32], l[j + i + 64], l[j + i + 96]];
            ql[i] = (q[0] & 0xf) | ((q[2] & 0xf) << 4);
            ql[i + 32] = (q[1] & 0xf) | ((q[3] & 0xf) << 4);
            qh[i] = (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6);
        }
    }
    out.extend_from_slice(&ql);
    out.extend_from_slice(&qh);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{dequantize_q4_k, dequantize_q5_k, dequantize_q6_k};

    /// A fixed, varied super-block without a random-number crate.
    fn sample(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (t % 2001) as f32 / 1000.0 - 1.0 + 0.3 * ((i as f32) * 0.37).sin()
            })
            .collect()
    }

    #[test]
    fn nearest_int_rounds_ties_to_even() {
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(3.5), 4);
        assert_eq!(nearest_int(-1.6), -2);
    }

    #[test]
    fn k_quants_round_trip_within_their_precision() {
        let x = sample(2 * QK_K, 7);
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (q, dq, bound) in [
            (
                quantize_q4_k as fn(&[f32]) -> Vec<u8>,
                dequantize_q4_k as fn(&[u8]) -> Vec<f32>,
                0.12,
            ),
            (quantize_q5_k, dequantize_q5_k, 0.06),
            (quantize_q6_k, dequantize_q6_k, 0.03),
        ] {
            let back = dq(&q(&x));
            let err = x
                .iter()
                .zip(&back)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(err < bound * amax, "max error {err} vs amax {amax}");
        }
    }

    #[test]
    fn zero_super_blocks_stay_zero() {
        let zeros = vec![0f32; QK_K];
        assert_eq!(dequantize_q4_k(&quantize_q4_k(&zeros)), zeros);
        assert_eq!(dequantize_q5_k(&quantize_q5_k(&zeros)), zeros);
        assert_eq!(dequantize_q6_k(&quantize_q6_k(&zeros)), zeros);
    }
}
