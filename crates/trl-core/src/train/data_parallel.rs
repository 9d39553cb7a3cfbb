//! Data-parallel training over a [`Collective`]: what DDP does around an optimizer step,
//! through host buffers so that it works on every burn backend.
//!
//! - [`broadcast_parameters`]: every rank starts from rank 0's weights (DDP's broadcast at
//!   construction);
//! - [`all_reduce_gradients`]: after the micro-batches of an update, the gradients of every
//!   trainable parameter are summed over the ranks as one flattened `f32` buffer (each rank's
//!   loss was already divided by the items of the whole global batch, so the sum is the
//!   gradient of the global batch's loss), then the optimizer step is the same on every rank.
//!
//! - [`check_same_parameters`]: at the end of a run, every rank compares a checksum of its
//!   parameters with rank 0's, so ranks that drifted apart are an error, not a silent
//!   difference.
//!
//! With one process all three return at once.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, Shape, Tensor, TensorData};

use super::collective::Collective;
use crate::host::f32_values;
use crate::{Error, Result};

/// Most values one MPI call carries: MPI counts are `int`, and a bounded chunk keeps the
/// receive copy small.
const CHUNK: usize = 1 << 26;

/// `module` with every float parameter replaced by rank 0's value (dtype, device and
/// gradient tracking kept).
pub fn broadcast_parameters<M: Module>(module: M, world: &dyn Collective) -> M {
    if world.size() == 1 {
        return module;
    }
    module.map(&mut Broadcast { world })
}

struct Broadcast<'a> {
    world: &'a dyn Collective,
}

impl ModuleMapper for Broadcast<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let device = tensor.device();
        let tracked = tensor.is_require_grad();
        let data = tensor.into_data();
        let (shape, dtype) = (data.shape().clone(), data.dtype());
        let mut bytes = data.as_bytes().to_vec();
        for chunk in bytes.chunks_mut(CHUNK) {
            self.world.broadcast_from_root(chunk);
        }
        let value =
            Tensor::<D>::from_data(TensorData::from_bytes_vec(bytes, shape, dtype), &device);
        let value = if tracked { value.require_grad() } else { value };
        Param::from_mapped_value(id, value, mapper)
    }
}

/// Sums `grads` over the ranks, in place. Every parameter that tracks gradients takes part
/// (the same list on every rank, in module order); one that got no gradient on a rank adds
/// zeros there, and one that got none on any rank stays absent (AdamW then skips it, as it
/// would in one process).
pub fn all_reduce_gradients<M: Module>(
    module: &M,
    grads: &mut GradientsParams,
    world: &dyn Collective,
) -> Result<()> {
    if world.size() == 1 {
        return Ok(());
    }
    let mut gather = Gather {
        grads,
        values: Vec::new(),
        present: Vec::new(),
        error: None,
    };
    module.visit(&mut gather);
    if let Some(error) = gather.error {
        return Err(error);
    }
    // [values of every trainable parameter..., one presence flag per parameter]
    let count = gather.present.len();
    let mut buffer = gather.values;
    buffer.extend_from_slice(&gather.present);
    for chunk in buffer.chunks_mut(CHUNK) {
        world.all_reduce_sum_f32(chunk);
    }
    let present = buffer.split_off(buffer.len() - count);
    let mut scatter = Scatter {
        grads,
        values: &buffer,
        present: &present,
        offset: 0,
        index: 0,
    };
    module.visit(&mut scatter);
    Ok(())
}

struct Gather<'a> {
    grads: &'a GradientsParams,
    values: Vec<f32>,
    present: Vec<f32>,
    error: Option<Error>,
}

impl ModuleVisitor for Gather<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        if !value.is_require_grad() || self.error.is_some() {
            return;
        }
        let numel = value.shape().num_elements();
        match self.grads.get::<D>(param.id) {
            Some(grad) => match f32_values(grad, "a gradient") {
                Ok(values) => {
                    self.values.extend_from_slice(&values);
                    self.present.push(1.0);
                }
                Err(error) => self.error = Some(error),
            },
            None => {
                self.values.resize(self.values.len() + numel, 0.0);
                self.present.push(0.0);
            }
        }
    }
}

struct Scatter<'a> {
    grads: &'a mut GradientsParams,
    values: &'a [f32],
    present: &'a [f32],
    offset: usize,
    index: usize,
}

impl ModuleVisitor for Scatter<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        if !value.is_require_grad() {
            return;
        }
        let shape = value.shape();
        let numel = shape.num_elements();
        let values = &self.values[self.offset..self.offset + numel];
        self.offset += numel;
        let present = self.present[self.index] > 0.0;
        self.index += 1;
        if !present {
            return;
        }
        let (device, dtype) = match self.grads.remove::<D>(param.id) {
            Some(grad) => (grad.device(), grad.dtype()),
            None => (value.clone().inner().device(), value.dtype()),
        };
        self.grads
            .register(param.id, host_tensor::<D>(values, shape, &device, dtype));
    }
}

/// `values` as a tensor of `shape` on `device` in `dtype`.
fn host_tensor<const D: usize>(
    values: &[f32],
    shape: Shape,
    device: &Device,
    dtype: DType,
) -> Tensor<D> {
    let tensor = Tensor::<D>::from_data(TensorData::new(values.to_vec(), shape), device);
    if dtype == DType::F32 {
        tensor
    } else {
        tensor.cast(dtype)
    }
}

/// An error unless every rank's float parameters are bitwise rank 0's (compared through a
/// 64-bit FNV-1a checksum of their bytes, in module order).
pub fn check_same_parameters<M: Module>(module: &M, world: &dyn Collective) -> Result<()> {
    if world.size() == 1 {
        return Ok(());
    }
    let mut checksum = Checksum(0xcbf2_9ce4_8422_2325);
    module.visit(&mut checksum);
    let mine = checksum.0.to_le_bytes();
    let mut root = mine;
    world.broadcast_from_root(&mut root);
    if root != mine {
        return Err(Error::Device {
            message: format!(
                "rank {}'s parameters differ from rank 0's after training (checksum {:016x} vs \
                 {:016x}): the ranks did not apply the same updates",
                world.rank(),
                u64::from_le_bytes(mine),
                u64::from_le_bytes(root)
            ),
        });
    }
    Ok(())
}

struct Checksum(u64);

impl ModuleVisitor for Checksum {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        for &byte in param.val().into_data().as_bytes() {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests;
