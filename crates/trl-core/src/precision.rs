//! Mixed precision (`--bf16 true` / `--fp16 true` on the GPU backends) as transformers does it
//! with `torch.autocast`: the weights, their gradients and the optimizer state stay f32 (the
//! master copy), and the matmuls of the projections and the MLP run in half precision on
//! half-precision copies made on the fly, their outputs brought back to f32; norms, softmax,
//! the log-probs and the loss stay in f32 (autocast's f32 list). fp16 adds a dynamic loss
//! scale (`train::loss_scale`) so that small gradients do not flush to zero.
//!
//! The setting is process-wide, like the autocast context a Trainer enters around its whole
//! loop: `trl-cli` sets it once for the training device, before any model runs.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use burn::tensor::{DType, Tensor};

/// The half-precision format matmuls run in under mixed precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HalfPrecision {
    /// `--bf16 true`: f32's range, 8 bits of mantissa; no loss scaling needed.
    Bf16,
    /// `--fp16 true`: 11 bits of mantissa, range up to 65504; needs loss scaling.
    Fp16,
}

impl HalfPrecision {
    /// burn's dtype of this format.
    pub fn dtype(self) -> DType {
        match self {
            HalfPrecision::Bf16 => DType::BF16,
            HalfPrecision::Fp16 => DType::F16,
        }
    }

    /// The TrainingArguments flag that asks for it.
    pub fn flag(self) -> &'static str {
        match self {
            HalfPrecision::Bf16 => "--bf16",
            HalfPrecision::Fp16 => "--fp16",
        }
    }
}

/// 0: off, 1: bf16, 2: fp16.
static AUTOCAST: AtomicU8 = AtomicU8::new(0);

/// Turns mixed precision on (or off with `None`) for every later forward.
pub fn set_autocast(half: Option<HalfPrecision>) {
    let code = match half {
        None => 0,
        Some(HalfPrecision::Bf16) => 1,
        Some(HalfPrecision::Fp16) => 2,
    };
    AUTOCAST.store(code, Ordering::Relaxed);
}

/// The format matmuls run in now, `None` when they run in their inputs' dtype.
pub fn autocast() -> Option<HalfPrecision> {
    match AUTOCAST.load(Ordering::Relaxed) {
        1 => Some(HalfPrecision::Bf16),
        2 => Some(HalfPrecision::Fp16),
        _ => None,
    }
}

/// Whether `--bf16 true` runs on the CPU backend's AMX tiles (see [`set_cpu_bf16_matmuls`]).
static CPU_BF16: AtomicBool = AtomicBool::new(false);

/// `--bf16 true` on the CPU backend, where the CPU has AMX-BF16
/// ([`crate::kernels::cpu_bf16_matmuls_supported`]): every projection's products (forward and
/// backward, adapters and LM head included) take bf16-rounded operands and accumulate in f32,
/// as torch's CPU autocast does; weights, gradients, optimizer state, attention, norms and the
/// loss stay f32. Process-wide, set once by `trl-cli` before any model runs.
pub fn set_cpu_bf16_matmuls(on: bool) {
    CPU_BF16.store(on, Ordering::Relaxed);
}

/// Whether [`set_cpu_bf16_matmuls`] switched the CPU backend's bf16 products on.
pub fn cpu_bf16_matmuls() -> bool {
    CPU_BF16.load(Ordering::Relaxed)
}

/// `x @ weight` (`x` `[.., in]`, `weight` `[in, out]`) in the current autocast format: both
/// cast to it, the product cast back to `x`'s dtype (the cast's backward brings the gradients
/// back to f32, so the f32 weight is what the optimizer updates).
pub fn matmul<const D: usize>(x: Tensor<D>, weight: Tensor<2>) -> Tensor<D> {
    matmul_in(autocast(), x, weight)
}

/// [`matmul`] with an explicit format: the pure function behind it.
pub fn matmul_in<const D: usize>(
    half: Option<HalfPrecision>,
    x: Tensor<D>,
    weight: Tensor<2>,
) -> Tensor<D> {
    let dtype = x.dtype();
    match half {
        Some(half) if dtype == DType::F32 => {
            let product = x
                .cast(half.dtype())
                .matmul(weight.cast(half.dtype()).unsqueeze());
            product.cast(dtype)
        }
        _ => x.matmul(weight.unsqueeze()),
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};

    use super::*;
    use crate::random_stream::draw;

    #[test]
    fn a_half_matmul_rounds_like_its_format_and_keeps_f32_gradients() {
        let device = Device::flex().autodiff();
        let x = draw([2, 3, 16], Distribution::Normal(0.0, 1.0), &device);
        let w = draw([16, 5], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let exact = matmul_in(None, x.clone(), w.clone());
        let half = matmul_in(Some(HalfPrecision::Fp16), x.clone(), w.clone());
        assert_eq!(half.dtype(), DType::F32);
        let diff = (half.clone() - exact.clone())
            .abs()
            .max()
            .into_scalar::<f32>();
        // fp16 keeps 11 bits: products of 16 terms of size ~1 differ by ~1e-3, not 0.
        assert!(diff > 0.0 && diff < 2e-2, "{diff}");
        let grads = half.sum().backward();
        let grad = w.grad(&grads).unwrap();
        assert_eq!(grad.dtype(), DType::F32);
        let exact_grad = w.grad(&exact.sum().backward()).unwrap();
        let diff = (grad - exact_grad).abs().max().into_scalar::<f32>();
        assert!(diff < 2e-2, "{diff}");
    }
}
