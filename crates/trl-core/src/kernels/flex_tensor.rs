//! Conversions between flex tensors and the slices the `*_cpu` kernels work on, shared by
//! every flex implementation of the fused ops (`flex_forward`, `flex_backward`, `flex_head`,
//! `flex_lora`).

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, TensorData};

/// A contiguous copy (or the tensor itself when it already is one) whose storage is exactly
/// its elements.
pub(super) fn contiguous(t: &FlexTensor) -> FlexTensor {
    t.to_contiguous()
}

/// Cannot fail on user data: `kernels/mod.rs` dispatches to the fused kernels only after
/// `all_f32` (other dtypes run composed), and every caller passes a `contiguous` copy.
pub(super) fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("fused kernels take contiguous f32 tensors")
}

/// A flex f32 tensor of shape `dims` holding `values` (row-major).
pub(super) fn new_f32(values: Vec<f32>, dims: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, dims.to_vec()))
}

/// Integer labels of any integer dtype as i64.
pub(super) fn labels_i64(labels: &FlexTensor) -> Vec<i64> {
    let labels = contiguous(labels);
    match labels.dtype() {
        DType::I64 => labels.storage::<i64>().to_vec(),
        DType::I32 => labels.storage::<i32>().iter().map(|&l| l as i64).collect(),
        DType::U32 => labels.storage::<u32>().iter().map(|&l| l as i64).collect(),
        other => panic!("label log-probs take integer labels, not {other:?}"),
    }
}
