//! The 32-element block types (q8_0, q4_0, q5_0, q5_1) and bf16, after gguf-py's `quants.py`
//! (itself bit-exact with `ggml-quants.c`'s reference quantizers).

use super::{f16_bytes, read_f16};

const QK: usize = 32;

/// bf16 bits of `v` as gguf-py's `BF16.quantize_blocks` (and ggml's `ggml_compute_fp32_to_bf16`):
/// NaN made quiet, otherwise round to nearest even.
pub fn bf16_bits(v: f32) -> u16 {
    let n = v.to_bits();
    if n & 0x7fff_ffff > 0x7f80_0000 {
        return (((n & 0xffff_0000) | (64 << 16)) >> 16) as u16;
    }
    ((u64::from(n) + (0x7fff + u64::from((n >> 16) & 1))) >> 16) as u16
}

/// Rounds half away from zero (C's `roundf`, gguf-py's `np_roundf`).
fn round_away(v: f32) -> f32 {
    let a = v.abs();
    let floored = a.floor();
    (floored + (2.0 * (a - floored)).floor()).copysign(v)
}

/// The element of largest magnitude in a block, keeping its sign; the first one on ties
/// (numpy's `argmax` of `abs`).
fn signed_absmax(block: &[f32]) -> f32 {
    let mut best = block[0];
    for &v in &block[1..] {
        if v.abs() > best.abs() {
            best = v;
        }
    }
    best
}

/// `trunc(x*id + offset)`, every step rounded to f32 (no fused multiply-add).
fn scaled_trunc(x: f32, id: f32, offset: f32) -> f32 {
    (x * id + offset).trunc()
}

/// `1/d`, or 0 where `d` is 0 (`np.where(d == 0, 0, 1 / d)`).
fn inverse(d: f32) -> f32 {
    if d == 0.0 { 0.0 } else { 1.0 / d }
}

/// q8_0: per 32 values an f16 scale `amax/127` and 32 int8 (`Q8_0.quantize_blocks`).
pub fn quantize_q8_0(data: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / QK * 34);
    for block in data.chunks_exact(QK) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = inverse(d);
        out.extend_from_slice(&f16_bytes(d));
        out.extend(block.iter().map(|v| round_away(v * id) as i8 as u8));
    }
    out
}

/// q4_0: per 32 values an f16 scale `max/-8` and 32 nibbles (`Q4_0.quantize_blocks`):
/// `trunc(x*id + 8.5)` in f32, as gguf-py 0.19 and `quantize_row_q4_0_ref` compiled without
/// fused multiply-adds (llama.cpp's own build) compute it.
pub fn quantize_q4_0(data: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / QK * 18);
    for block in data.chunks_exact(QK) {
        let d = signed_absmax(block) / -8.0;
        let id = inverse(d);
        let q: Vec<u8> = block
            .iter()
            .map(|&v| scaled_trunc(v, id, 8.5).clamp(0.0, 15.0) as u8)
            .collect();
        out.extend_from_slice(&f16_bytes(d));
        out.extend((0..QK / 2).map(|j| q[j] | (q[j + QK / 2] << 4)));
    }
    out
}

/// q5_0: per 32 values an f16 scale `max/-16`, 32 high bits and 32 nibbles
/// (`Q5_0.quantize_blocks`, f32 like q4_0).
pub fn quantize_q5_0(data: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / QK * 22);
    for block in data.chunks_exact(QK) {
        let d = signed_absmax(block) / -16.0;
        let id = inverse(d);
        let q: Vec<u8> = block
            .iter()
            .map(|&v| scaled_trunc(v, id, 16.5).clamp(0.0, 31.0) as u8)
            .collect();
        out.extend_from_slice(&f16_bytes(d));
        push_q5(&mut out, &q);
    }
    out
}

/// q5_1: per 32 values f16 scale and minimum, 32 high bits and 32 nibbles
/// (`Q5_1.quantize_blocks`).
pub fn quantize_q5_1(data: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / QK * 24);
    for block in data.chunks_exact(QK) {
        let max = block.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let min = block.iter().fold(f32::INFINITY, |m, &v| m.min(v));
        let d = (max - min) / 31.0;
        let id = inverse(d);
        let q: Vec<u8> = block
            .iter()
            .map(|&v| ((v - min) * id + 0.5).trunc().clamp(0.0, 31.0) as u8)
            .collect();
        out.extend_from_slice(&f16_bytes(d));
        out.extend_from_slice(&f16_bytes(min));
        push_q5(&mut out, &q);
    }
    out
}

/// The 5-bit values of one block: bit 4 of each packed into a little-endian u32, then the low
/// nibbles of values j and j+16 in byte j.
fn push_q5(out: &mut Vec<u8>, q: &[u8]) {
    let qh = q
        .iter()
        .enumerate()
        .fold(0u32, |h, (j, &v)| h | (u32::from(v >> 4) << j));
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend((0..QK / 2).map(|j| (q[j] & 0x0f) | ((q[j + QK / 2] & 0x0f) << 4)));
}

/// q8_0 bytes back to f32.
pub fn dequantize_q8_0(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(34)
        .flat_map(|b| {
            let d = read_f16(b);
            b[2..].iter().map(move |&q| f32::from(q as i8) * d)
        })
        .collect()
}

/// q4_0 bytes back to f32.
pub fn dequantize_q4_0(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / 18 * QK);
    for b in bytes.chunks_exact(18) {
        let d = read_f16(b);
        let qs = &b[2..];
        out.extend(qs.iter().map(|q| f32::from((q & 0x0f) as i8 - 8) * d));
        out.extend(qs.iter().map(|q| f32::from((q >> 4) as i8 - 8) * d));
    }
    out
}

/// q5_0 bytes back to f32.
pub fn dequantize_q5_0(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / 22 * QK);
    for b in bytes.chunks_exact(22) {
        let d = read_f16(b);
        let q = unpack_q5(&b[2..6], &b[6..]);
        out.extend(q.iter().map(|&v| f32::from(v as i8 - 16) * d));
    }
    out
}

/// q5_1 bytes back to f32.
pub fn dequantize_q5_1(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / 24 * QK);
    for b in bytes.chunks_exact(24) {
        let (d, m) = (read_f16(b), read_f16(&b[2..]));
        let q = unpack_q5(&b[4..8], &b[8..]);
        out.extend(q.iter().map(|&v| d * f32::from(v) + m));
    }
    out
}

/// The 32 five-bit values of a q5 block from its high-bit word and nibbles.
fn unpack_q5(qh: &[u8], qs: &[u8]) -> [u8; QK] {
    let h = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut q = [0u8; QK];
    for j in 0..QK / 2 {
        q[j] = (qs[j] & 0x0f) | ((((h >> j) & 1) as u8) << 4);
        q[j + QK / 2] = (qs[j] >> 4) | ((((h >> (j + QK / 2)) & 1) as u8) << 4);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_away_from_zero_on_halves() {
        assert_eq!(round_away(2.5), 3.0);
        assert_eq!(round_away(-2.5), -3.0);
        assert_eq!(round_away(0.49), 0.0);
        assert_eq!(round_away(-1.4), -1.0);
    }

    #[test]
    fn bf16_rounds_to_nearest_even_and_quiets_nan() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        assert_eq!(bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80); // tie -> even
        assert_eq!(bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(bf16_bits(f32::from_bits(0x7f80_0001)), 0x7fc0);
    }

    #[test]
    fn zero_blocks_quantize_to_zero_scale() {
        let zeros = [0f32; 32];
        assert_eq!(dequantize_q8_0(&quantize_q8_0(&zeros)), zeros);
        assert_eq!(dequantize_q4_0(&quantize_q4_0(&zeros)), zeros);
        assert_eq!(dequantize_q5_0(&quantize_q5_0(&zeros)), zeros);
    }
}
