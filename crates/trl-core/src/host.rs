//! Reading a tensor's values back to the host as `f32`, whatever dtype the backend computed
//! in (bf16/f16 tensors are converted), or an error: never an empty vector that later code
//! would index.

use burn::tensor::Tensor;

use crate::{Error, Result};

/// The values of `tensor` (any shape, flattened row-major) as `f32`; `what` names them in
/// the error.
pub fn f32_values<const D: usize>(tensor: Tensor<D>, what: &str) -> Result<Vec<f32>> {
    tensor.try_into_vec_as::<f32>().map_err(|e| Error::Device {
        message: format!("{what} could not be read back from the device as f32: {e:?}"),
    })
}

/// The value of a one-element tensor as `f64`, or an error naming `what`. A device that failed
/// (out of GPU memory, a buffer larger than the driver allocates) reports it at the first read
/// back to the host, which must be an error naming the cause, not a panic.
pub fn scalar<const D: usize>(tensor: Tensor<D>, what: &str) -> Result<f64> {
    tensor.try_into_scalar::<f64>().map_err(|e| Error::Device {
        message: format!("{what} could not be read back from the device: {e:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{DType, Device, TensorData};

    #[test]
    fn reads_half_precision_values_as_f32() {
        let device = Device::default();
        let tensor = Tensor::<1>::from_data(TensorData::new(vec![1.5f32, -2.0], [2]), &device);
        let half = tensor.cast(DType::F16);
        assert_eq!(f32_values(half, "test").unwrap(), vec![1.5, -2.0]);
    }
}
