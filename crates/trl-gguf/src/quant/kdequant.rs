//! The k-quant dequantizers (`dequantize_row_q4_K`, `_q5_K`, `_q6_K` in ggml-quants.c): what
//! llama.cpp computes from the stored blocks, for reading files back and checking them.

use super::kquants::scale_min_k4;
use super::read_f16;
use crate::format::QK_K;
/// q4_K bytes back to f32 (`dequantize_row_q4_K`).
pub fn dequantize_q4_k(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / 144 * QK_K);
    for b in bytes.chunks_exact(144) {
        let (d, dmin, scales, qs) = (read_f16(b), read_f16(&b[2..]), &b[4..16], &b[16..]);
        for (k, q) in qs.chunks_exact(32).enumerate() {
            for (half, shift) in [(0, 0), (1, 4)] {
                let (sc, m) = scale_min_k4(2 * k + half, scales);
                let (d1, m1) = (d * f32::from(sc), dmin * f32::from(m));
                out.extend(q.iter().map(|v| d1 * f32::from((v >> shift) & 0xf) - m1));
            }
        }
    }
    out
}

/// q5_K bytes back to f32 (`dequantize_row_q5_K`).
pub fn dequantize_q5_k(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / 176 * QK_K);
    for b in bytes.chunks_exact(176) {
        let (d, dmin, scales) = (read_f16(b), read_f16(&b[2..]), &b[4..16]);
        let (qh, qs) = (&b[16..48], &b[48..]);
        for (k, q) in qs.chunks_exact(32).enumerate() {
            for (half, shift) in [(0, 0), (1, 4)] {
                let (sc, m) = scale_min_k4(2 * k + half, scales);
                let (d1, m1) = (d * f32::from(sc), dmin * f32::from(m));
                let bit = 2 * k + half;
                out.extend(q.iter().zip(qh).map(|(v, h)| {
                    let hi = if h & (1 << bit) != 0 { 16 } else { 0 };
                    d1 * f32::from(((v >> shift) & 0xf) + hi) - m1
                }));
            }
        }
    }
    out
}

/// q6_K bytes back to f32 (`dequantize_row_q6_K`).
pub fn dequantize_q6_k(bytes: &[u8]) -> Vec<f32> {
    let mut out = vec![0f32; bytes.len() / 210 * QK_K];
    for (b, y) in bytes.chunks_exact(210).zip(out.chunks_exact_mut(QK_K)) {
        let (ql, qh, sc, d) = (&b[..128], &b[128..192], &b[192..208], read_f16(&b[208..]));
        for half in 0..2 {
            let (ql, qh, sc, y) = (
                &ql[64 * half..],
                &qh[32 * half..],
                &sc[8 * half..],
                &mut y[128 * half..],
            );
            for l in 0..32 {
                let is = l / 16;
                let q = [
                    ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i8 - 32,
                    ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32,
                    ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32,
                    ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32,
                ];
                for (k, qk) in q.iter().enumerate() {
                    y[l + 32 * k] = d * f32::from(sc[is + 2 * k] as i8) * f32::from(*qk);
                }
            }
        }
    }
    out
}
