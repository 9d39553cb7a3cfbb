//! Which type each tensor is stored as, per outtype: llama.cpp's rules for the tensors kept at
//! higher precision.
//!
//! - f32, f16, bf16 and q8_0 follow `convert_hf_to_gguf.py`: 1-D tensors and norms stay f32,
//!   every other tensor takes the outtype (q8_0 falls back to f16 on a row not divisible by 32).
//! - q4_0 and the k-quant mixes follow `llama-quantize` run on the f32 file
//!   (`llama_tensor_get_type` in llama-quant.cpp, no importance matrix): the output tensor (and
//!   a tied token embedding) in q6_K, `attn_v`/`ffn_down` of some layers in q6_K for the `_M`
//!   mixes, and its fallbacks when a row is not a multiple of the block size.

use crate::error::{Error, Result};
use crate::format::{GgmlType, OutType};

/// What the rules need to know about the model.
#[derive(Debug, Clone, Copy)]
pub struct ModelShape {
    /// Transformer blocks (`n_layer`).
    pub n_layers: usize,
    /// No `output.weight`: the token embedding is also the output projection.
    pub tied_embeddings: bool,
}

/// The type of tensor `name` with PyTorch shape `shape` in a file of `outtype`.
pub fn tensor_type(
    name: &str,
    shape: &[usize],
    outtype: OutType,
    model: ModelShape,
) -> Result<GgmlType> {
    let default = outtype.default_type();
    let cols = shape.last().copied().unwrap_or(1);
    match outtype {
        OutType::F32 => Ok(GgmlType::F32),
        OutType::F16 | OutType::BF16 | OutType::Q8_0 => {
            if shape.len() <= 1 || name.ends_with("_norm.weight") {
                Ok(GgmlType::F32)
            } else if !cols.is_multiple_of(default.block_size()) {
                Ok(GgmlType::F16)
            } else {
                Ok(default)
            }
        }
        OutType::Q4_0 | OutType::Q4KM | OutType::Q5KM | OutType::Q6K => {
            if !quantizable(name, shape) {
                return Ok(GgmlType::F32);
            }
            let chosen = mix_type(name, cols, outtype, model);
            fallback(name, cols, chosen)
        }
    }
}

/// `tensor_allows_quantization`: 2-D (or more) weights that are not norms.
fn quantizable(name: &str, shape: &[usize]) -> bool {
    shape.len() >= 2 && name.ends_with("weight") && !name.contains("_norm.weight")
}

/// `use_more_bits`: the first and last eighth of the layers and every third one between.
fn use_more_bits(layer: usize, n_layers: usize) -> bool {
    let (first, last) = (n_layers / 8, 7 * n_layers / 8);
    layer < first || layer >= last || (layer - first) % 3 == 2
}

/// The block index in `blk.N.` names.
fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// `llama_tensor_get_type_impl` for our outtypes (no experts, not Falcon, no imatrix).
fn mix_type(name: &str, cols: usize, outtype: OutType, model: ModelShape) -> GgmlType {
    let default = outtype.default_type();
    let is_output = name == "output.weight";
    let is_embedding = name == "token_embd.weight";
    if is_output || (model.tied_embeddings && is_embedding) {
        return if !cols.is_multiple_of(default.block_size()) {
            GgmlType::Q8_0
        } else if default != GgmlType::Q8_0 {
            GgmlType::Q6K
        } else {
            default
        };
    }
    let mixes_more_bits = matches!(outtype, OutType::Q4KM | OutType::Q5KM);
    let more_bits = || layer_of(name).is_some_and(|l| use_more_bits(l, model.n_layers));
    let bumped = (name.contains("attn_v.weight") || name.contains("ffn_down")) && mixes_more_bits;
    if bumped && more_bits() {
        GgmlType::Q6K
    } else {
        default
    }
}

/// `tensor_type_fallback`: a type whose block does not divide the row falls back to a
/// 32-element type, then to f16.
fn fallback(name: &str, cols: usize, chosen: GgmlType) -> Result<GgmlType> {
    if cols.is_multiple_of(chosen.block_size()) {
        return Ok(chosen);
    }
    let next = match chosen {
        GgmlType::Q4K => GgmlType::Q5_0,
        GgmlType::Q5K => GgmlType::Q5_1,
        GgmlType::Q6K => GgmlType::Q8_0,
        other => {
            return Err(Error::Unsupported(format!(
                "tensor {name}: a row of {cols} values cannot be stored as {other} (llama.cpp has no fallback)"
            )));
        }
    };
    Ok(if cols.is_multiple_of(next.block_size()) {
        next
    } else {
        GgmlType::F16
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: ModelShape = ModelShape {
        n_layers: 2,
        tied_embeddings: false,
    };

    fn ty(name: &str, shape: &[usize], outtype: OutType, model: ModelShape) -> GgmlType {
        tensor_type(name, shape, outtype, model).unwrap()
    }

    #[test]
    fn norms_and_vectors_stay_f32() {
        for outtype in [OutType::F16, OutType::Q8_0, OutType::Q4KM] {
            assert_eq!(
                ty("blk.0.attn_norm.weight", &[64], outtype, SMALL),
                GgmlType::F32
            );
            assert_eq!(
                ty("blk.0.attn_q.bias", &[64], outtype, SMALL),
                GgmlType::F32
            );
        }
        assert_eq!(
            ty("blk.0.attn_q.weight", &[64, 64], OutType::BF16, SMALL),
            GgmlType::BF16
        );
    }

    #[test]
    fn k_quant_mixes_follow_llama_quantize() {
        let big = ModelShape {
            n_layers: 32,
            tied_embeddings: false,
        };
        let q4km = |name: &str| ty(name, &[4096, 4096], OutType::Q4KM, big);
        assert_eq!(q4km("output.weight"), GgmlType::Q6K);
        assert_eq!(q4km("token_embd.weight"), GgmlType::Q4K);
        assert_eq!(q4km("blk.0.attn_v.weight"), GgmlType::Q6K); // first eighth
        assert_eq!(q4km("blk.4.attn_v.weight"), GgmlType::Q4K);
        assert_eq!(q4km("blk.6.ffn_down.weight"), GgmlType::Q6K); // (6 - 4) % 3 == 2
        assert_eq!(q4km("blk.31.ffn_down.weight"), GgmlType::Q6K); // last eighth
        assert_eq!(q4km("blk.5.attn_q.weight"), GgmlType::Q4K);
        let tied = ModelShape {
            n_layers: 32,
            tied_embeddings: true,
        };
        assert_eq!(
            ty("token_embd.weight", &[4096, 4096], OutType::Q4_0, tied),
            GgmlType::Q6K
        );
        assert_eq!(
            ty("blk.0.ffn_down.weight", &[4096, 4096], OutType::Q4_0, big),
            GgmlType::Q4_0
        );
    }

    #[test]
    fn rows_shorter_than_a_super_block_fall_back() {
        assert_eq!(
            ty("blk.0.attn_q.weight", &[64, 64], OutType::Q4KM, SMALL),
            GgmlType::Q5_0
        );
        assert_eq!(
            ty("blk.0.attn_q.weight", &[64, 64], OutType::Q5KM, SMALL),
            GgmlType::Q5_1
        );
        assert_eq!(
            ty("blk.0.attn_q.weight", &[64, 64], OutType::Q6K, SMALL),
            GgmlType::Q8_0
        );
        assert_eq!(
            ty("output.weight", &[384, 64], OutType::Q4KM, SMALL),
            GgmlType::Q8_0
        );
        assert_eq!(
            ty("blk.0.attn_q.weight", &[64, 48], OutType::Q8_0, SMALL),
            GgmlType::F16
        );
        assert!(tensor_type("blk.0.attn_q.weight", &[64, 48], OutType::Q4_0, SMALL).is_err());
    }
}
