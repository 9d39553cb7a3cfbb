//! ggml's reference quantizers, hand-written in Rust.
//!
//! Why hand-written: the GGUF bytes must be bit-exact with what llama.cpp's tools write (the
//! numpy quantizers of gguf-py for the 32-element block types, `ggml-quants.c`'s
//! `quantize_row_*_ref` for the k-quants, which `llama-quantize` uses without an importance
//! matrix), and no Rust crate reproduces them. Every function here follows its reference line
//! by line, in f32 arithmetic in the same order (Rust never fuses a multiply-add, and neither
//! does llama.cpp's portable build of these reference functions).
//!
//! Input is a row-major f32 tensor whose length is a multiple of the type's block size; output
//! is the concatenated blocks, as stored in the file.

mod kdequant;
mod kquants;
mod legacy;

pub use kdequant::{dequantize_q4_k, dequantize_q5_k, dequantize_q6_k};
pub use kquants::{quantize_q4_k, quantize_q5_k, quantize_q6_k};
pub use legacy::{
    bf16_bits, dequantize_q4_0, dequantize_q5_0, dequantize_q5_1, dequantize_q8_0, quantize_q4_0,
    quantize_q5_0, quantize_q5_1, quantize_q8_0,
};

use crate::format::GgmlType;

/// Values below which a tensor is quantized on the calling thread alone.
const PARALLEL_MIN_VALUES: usize = 1 << 16;

/// `data` (f32, row-major; length a multiple of `ty`'s block size) stored as `ty`.
/// Returns `None` for a type we do not write (q4_1). Large tensors are split at block
/// boundaries over the available cores; blocks are independent, so the bytes are the same.
pub fn quantize(ty: GgmlType, data: &[f32]) -> Option<Vec<u8>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    quantize_on(ty, data, cores.min(data.len() / PARALLEL_MIN_VALUES).max(1))
}

/// [`quantize`] on `threads` threads.
fn quantize_on(ty: GgmlType, data: &[f32], threads: usize) -> Option<Vec<u8>> {
    if threads <= 1 {
        return quantize_serial(ty, data);
    }
    let block = ty.block_size();
    let per_thread = (data.len() / block).div_ceil(threads) * block;
    let parts: Vec<Option<Vec<u8>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = data
            .chunks(per_thread.max(block))
            .map(|part| scope.spawn(move || quantize_serial(ty, part)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(None))
            .collect()
    });
    parts
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .map(|p| p.concat())
}

/// [`quantize`] on the calling thread.
fn quantize_serial(ty: GgmlType, data: &[f32]) -> Option<Vec<u8>> {
    let bytes = match ty {
        GgmlType::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => data
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        GgmlType::BF16 => data
            .iter()
            .flat_map(|v| bf16_bits(*v).to_le_bytes())
            .collect(),
        GgmlType::Q8_0 => quantize_q8_0(data),
        GgmlType::Q4_0 => quantize_q4_0(data),
        GgmlType::Q5_0 => quantize_q5_0(data),
        GgmlType::Q5_1 => quantize_q5_1(data),
        GgmlType::Q4K => quantize_q4_k(data),
        GgmlType::Q5K => quantize_q5_k(data),
        GgmlType::Q6K => quantize_q6_k(data),
        GgmlType::Q4_1 => return None,
    };
    Some(bytes)
}

/// Tensor bytes of type `ty` back to f32 (ggml's `dequantize_row_*`), for checks and readers.
/// Returns `None` for a type we do not read (q4_1).
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> Option<Vec<f32>> {
    let values = match ty {
        GgmlType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        GgmlType::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        GgmlType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
            .collect(),
        GgmlType::Q8_0 => dequantize_q8_0(bytes),
        GgmlType::Q4_0 => dequantize_q4_0(bytes),
        GgmlType::Q5_0 => dequantize_q5_0(bytes),
        GgmlType::Q5_1 => dequantize_q5_1(bytes),
        GgmlType::Q4K => dequantize_q4_k(bytes),
        GgmlType::Q5K => dequantize_q5_k(bytes),
        GgmlType::Q6K => dequantize_q6_k(bytes),
        GgmlType::Q4_1 => return None,
    };
    Some(values)
}

/// An f32 stored as f16 and read back, as ggml's `GGML_FP32_TO_FP16` then `GGML_FP16_TO_FP32`.
pub(crate) fn f16_round(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

/// Little-endian f16 bytes of `v` (round to nearest even, like numpy and ggml).
pub(crate) fn f16_bytes(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_le_bytes()
}

/// An f16 at `bytes[0..2]` as f32.
pub(crate) fn read_f16(bytes: &[u8]) -> f32 {
    half::f16::from_le_bytes([bytes[0], bytes[1]]).to_f32()
}

#[cfg(test)]
mod reference_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_write_the_same_bytes_as_one() {
        let data: Vec<f32> = (0..3 * 256 * 7)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        for ty in [GgmlType::Q4K, GgmlType::Q6K, GgmlType::Q8_0, GgmlType::F16] {
            assert_eq!(quantize_on(ty, &data, 4), quantize_on(ty, &data, 1), "{ty}");
        }
    }
}
