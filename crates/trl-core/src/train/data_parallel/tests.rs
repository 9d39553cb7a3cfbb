use std::collections::VecDeque;
use std::sync::Mutex;

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use super::*;

#[derive(Module, Debug)]
struct Toy {
    weight: Param<Tensor<2>>,
    bias: Param<Tensor<1>>,
    unused: Param<Tensor<1>>,
}

fn toy(values: [f32; 4], device: &Device) -> Toy {
    let [a, b, c, d] = values;
    Toy {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![a, b], [1, 2]),
            device,
        )),
        bias: Param::from_tensor(Tensor::from_data(TensorData::new(vec![c], [1]), device)),
        unused: Param::from_tensor(Tensor::from_data(TensorData::new(vec![d], [1]), device)),
    }
}

/// Rank 1 of 2, the other rank being a copy of this one (its sums double every value), with
/// rank 0's broadcast chunks queued in advance.
struct Twin {
    root_chunks: Mutex<VecDeque<Vec<u8>>>,
}

impl Collective for Twin {
    fn rank(&self) -> usize {
        1
    }
    fn size(&self) -> usize {
        2
    }
    fn all_reduce_sum_f32(&self, values: &mut [f32]) {
        values.iter_mut().for_each(|v| *v *= 2.0);
    }
    fn all_reduce_sum_f64(&self, values: &mut [f64]) {
        values.iter_mut().for_each(|v| *v *= 2.0);
    }
    fn broadcast_from_root(&self, bytes: &mut [u8]) {
        let chunk = self.root_chunks.lock().unwrap().pop_front().unwrap();
        bytes.copy_from_slice(&chunk);
    }
    fn barrier(&self) {}
    fn abort(&self, code: i32) -> ! {
        panic!("aborted with {code}")
    }
}

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn every_rank_takes_the_root_parameters_and_keeps_tracking_gradients() {
    let device = Device::default().autodiff();
    let root = toy([1.0, 2.0, 3.0, 4.0], &device);
    let chunks = [
        root.weight.val(),
        root.bias.val().reshape([1, 1]),
        root.unused.val().reshape([1, 1]),
    ]
    .into_iter()
    .map(|t| t.into_data().as_bytes().to_vec())
    .collect();
    let world = Twin {
        root_chunks: Mutex::new(chunks),
    };
    let local = broadcast_parameters(toy([9.0, 9.0, 9.0, 9.0], &device), &world);
    assert_eq!(values(local.weight.val()), [1.0, 2.0]);
    assert_eq!(values(local.bias.val()), [3.0]);
    assert!(local.weight.val().is_require_grad());
    assert!(world.root_chunks.lock().unwrap().is_empty());
}

#[test]
fn gradients_are_summed_and_a_parameter_nobody_used_stays_without_one() {
    let device = Device::default().autodiff();
    let model = toy([1.0, 1.0, 1.0, 1.0], &device);
    // d/dweight = [3, 4], d/dbias = 5, `unused` gets no gradient.
    let weights = Tensor::from_data(TensorData::new(vec![3.0f32, 4.0], [1, 2]), &device);
    let loss = (model.weight.val() * weights).sum() + model.bias.val().sum() * 5.0;
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    let world = Twin {
        root_chunks: Mutex::new(VecDeque::new()),
    };
    all_reduce_gradients(&model, &mut grads, &world).unwrap();
    assert_eq!(values(grads.get::<2>(model.weight.id).unwrap()), [6.0, 8.0]);
    assert_eq!(values(grads.get::<1>(model.bias.id).unwrap()), [10.0]);
    assert!(grads.get::<1>(model.unused.id).is_none());
}

#[test]
fn one_process_changes_nothing() {
    let device = Device::default().autodiff();
    let model = toy([1.0, 2.0, 3.0, 4.0], &device);
    let loss = model.weight.val().sum();
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    let world = crate::train::collective::SingleProcess;
    all_reduce_gradients(&model, &mut grads, &world).unwrap();
    assert_eq!(values(grads.get::<2>(model.weight.id).unwrap()), [1.0, 1.0]);
    let model = broadcast_parameters(model, &world);
    assert_eq!(values(model.unused.val()), [4.0]);
}

#[test]
fn ranks_that_drifted_apart_are_an_error() {
    let device = Device::default().autodiff();
    let root = toy([1.0, 2.0, 3.0, 4.0], &device);
    let mut checksum = Checksum(0xcbf2_9ce4_8422_2325);
    root.visit(&mut checksum);
    let same = Twin {
        root_chunks: Mutex::new(VecDeque::from([checksum.0.to_le_bytes().to_vec()])),
    };
    check_same_parameters(&root, &same).unwrap();
    let drifted = toy([1.0, 2.0, 3.0, 4.5], &device);
    let other = Twin {
        root_chunks: Mutex::new(VecDeque::from([checksum.0.to_le_bytes().to_vec()])),
    };
    let err = check_same_parameters(&drifted, &other)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rank 1's parameters differ from rank 0's"),
        "{err}"
    );
}
