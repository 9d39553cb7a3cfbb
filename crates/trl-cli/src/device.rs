//! `--device` strings (`cpu`, `cuda`, `cuda:1`, `wgpu`) parsed into a burn [`Device`] among
//! the backends compiled into this binary (cargo features `flex`, `cuda`, `wgpu`).

use anyhow::{Result, bail};
use burn::tensor::Device;

/// Backends compiled into this build, for `trl env` and error messages.
pub fn compiled_backends() -> Vec<&'static str> {
    let mut names = Vec::new();
    if cfg!(feature = "flex") {
        names.push("cpu (burn flex, simd + rayon)");
    }
    if cfg!(feature = "cuda") {
        names.push("cuda");
    }
    if cfg!(feature = "wgpu") {
        names.push("wgpu");
    }
    names
}

/// The device used when `--device` is not given: CUDA if compiled in, else the CPU.
pub fn default_device_spec() -> &'static str {
    if cfg!(feature = "cuda") {
        "cuda:0"
    } else if cfg!(feature = "flex") {
        "cpu"
    } else {
        "wgpu"
    }
}

/// Parses a `--device` value into a device of a compiled-in backend.
pub fn parse_device(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    let (kind, index) = match spec.split_once(':') {
        Some((kind, index)) => match index.parse::<usize>() {
            Ok(index) => (kind.to_string(), index),
            Err(_) => bail!("--device {spec:?}: the part after ':' must be an index, like cuda:0"),
        },
        None => (spec.clone(), 0),
    };
    match kind.as_str() {
        "cpu" => cpu(&spec),
        "cuda" => cuda(&spec, index),
        "wgpu" | "gpu" => wgpu(&spec, index),
        _ => bail!("--device {spec:?} is unknown; expected cpu, cuda, cuda:N or wgpu"),
    }
}

fn missing(spec: &str, feature: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "--device {spec:?} needs the `{feature}` backend, which this build does not have \
         (compiled in: {}); rebuild with `cargo build --release --features {feature}`",
        compiled_backends().join(", ")
    )
}

#[cfg(feature = "flex")]
fn cpu(_spec: &str) -> Result<Device> {
    Ok(Device::flex())
}
#[cfg(not(feature = "flex"))]
fn cpu(spec: &str) -> Result<Device> {
    Err(missing(spec, "flex"))
}

#[cfg(feature = "cuda")]
fn cuda(_spec: &str, index: usize) -> Result<Device> {
    Ok(Device::cuda(index))
}
#[cfg(not(feature = "cuda"))]
fn cuda(spec: &str, _index: usize) -> Result<Device> {
    Err(missing(spec, "cuda"))
}

#[cfg(feature = "wgpu")]
fn wgpu(_spec: &str, index: usize) -> Result<Device> {
    use burn::tensor::DeviceKind;
    let kind = if index == 0 {
        DeviceKind::DefaultDevice
    } else {
        DeviceKind::DiscreteGpu(index)
    };
    Ok(Device::wgpu(kind))
}
#[cfg(not(feature = "wgpu"))]
fn wgpu(spec: &str, _index: usize) -> Result<Device> {
    Err(missing(spec, "wgpu"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_device_is_a_clear_error() {
        let err = parse_device("tpu").unwrap_err().to_string();
        assert!(err.contains("tpu") && err.contains("expected cpu"), "{err}");
        assert!(
            parse_device("cuda:x")
                .unwrap_err()
                .to_string()
                .contains("index")
        );
    }

    #[cfg(feature = "flex")]
    #[test]
    fn cpu_parses() {
        assert!(parse_device("CPU").is_ok());
    }
}
