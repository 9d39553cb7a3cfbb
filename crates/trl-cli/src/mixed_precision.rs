//! `--bf16` / `--fp16` for the training device: mixed precision on the GPU backends
//! ([`trl_core::precision`]); on the CPU backend bf16 products on AMX tiles where the CPU has
//! them (else a note: fp32), and an error for fp16 (as transformers raises); an error naming
//! the flag when the device's runtime cannot multiply in that format (burn's wgpu runtime has
//! no bf16 matmul).

use anyhow::{Result, bail};
use burn::tensor::{Device, Distribution, Tensor};
use trl_core::kernels::cpu_bf16_matmuls_supported;
use trl_core::precision::{HalfPrecision, matmul_in, set_autocast, set_cpu_bf16_matmuls};
use trl_core::train::TrainingArguments;

/// Checks the flags against `device` and switches autocast on (or off) for this process.
pub fn apply(args: &TrainingArguments, device: &Device) -> Result<()> {
    // Both on is refused by `TrainingArguments::validate`, before anything loads.
    let half = match (args.bf16, args.fp16) {
        (true, _) => Some(HalfPrecision::Bf16),
        (false, true) => Some(HalfPrecision::Fp16),
        (false, false) => None,
    };
    set_autocast(None);
    set_cpu_bf16_matmuls(false);
    let Some(half) = half else {
        return Ok(());
    };
    if is_cpu(device) {
        return match half {
            HalfPrecision::Bf16 if cpu_bf16_matmuls_supported() => {
                set_cpu_bf16_matmuls(true);
                eprintln!(
                    "mixed precision: bf16 matmuls on the CPU's AMX tiles (f32 accumulation), \
                     fp32 weights, gradients and optimizer state"
                );
                Ok(())
            }
            HalfPrecision::Bf16 => {
                eprintln!(
                    "note: bf16=true: this CPU has no AMX-BF16, so the CPU backend keeps fp32 \
                     weights and computes in fp32 (mixed precision runs on --device cuda or wgpu)"
                );
                Ok(())
            }
            HalfPrecision::Fp16 => bail!(
                "--fp16 true: fp16 mixed precision needs a GPU backend (--device cuda or wgpu); \
                 the CPU backend trains in fp32 (leave --fp16 out)"
            ),
        };
    }
    if !multiplies_in(device, half) {
        bail!(
            "{} true: this device's runtime has no {:?} matmul (burn's wgpu runtime has none \
             for bf16); use --fp16 true there, --device cuda for bf16, or train in fp32",
            half.flag(),
            half.dtype()
        );
    }
    set_autocast(Some(half));
    let scaling = match half {
        HalfPrecision::Fp16 => ", dynamic loss scaling",
        HalfPrecision::Bf16 => "",
    };
    eprintln!(
        "mixed precision: {:?} matmuls, fp32 weights, gradients and optimizer state{scaling}",
        half.dtype()
    );
    Ok(())
}

/// Whether `device` is the CPU backend (flex), which trains in f32 only.
fn is_cpu(device: &Device) -> bool {
    cfg!(feature = "flex")
        && matches!(
            device.clone().inner().as_dispatch(),
            burn::backend::DispatchDevice::Flex(_)
        )
}

/// Runs one small matmul in `half` on `device`: the runtimes report a dtype they cannot
/// multiply in by panicking at the kernel launch, so that panic (kept off stderr) is the
/// answer.
fn multiplies_in(device: &Device, half: HalfPrecision) -> bool {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let ok = std::panic::catch_unwind(|| {
        let x = Tensor::<2>::random([2, 8], Distribution::Default, device);
        let w = Tensor::<2>::random([8, 2], Distribution::Default, device);
        matmul_in(Some(half), x, w)
            .into_data()
            .try_to_vec::<f32>()
            .is_ok()
    })
    .unwrap_or(false);
    std::panic::set_hook(hook);
    ok
}
