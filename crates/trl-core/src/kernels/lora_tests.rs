//! The fused LoRA projection against the same math in burn ops: values and gradients with and
//! without dropout, with a frozen or a trainable base, on autodiff and on plain flex.

use burn::tensor::{Device, Distribution, Tensor, TensorData};

use super::composed;
use super::flex;
use super::lora_cpu::{Dropout, dropout_factors};
use crate::random_stream::draw;

fn device() -> Device {
    Device::flex().autodiff()
}

fn random<const D: usize>(dims: [usize; D]) -> Tensor<D> {
    draw(dims, Distribution::Normal(0.0, 1.0), &device())
}

fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar::<f32>()
}

const SCALING: f64 = 2.0;

/// `x @ base + scaling * ((x * factors) @ a) @ b` in burn ops, `factors` the fused kernel's
/// mask (`None`: no dropout).
fn reference(x: Tensor<2>, [base, a, b]: [Tensor<2>; 3], dropout: Option<Dropout>) -> Tensor<2> {
    let dims = x.dims();
    let input = match dropout {
        Some(dropout) => {
            let factors = dropout_factors(dims[0] * dims[1], dropout);
            x.clone() * Tensor::<2>::from_data(TensorData::new(factors, dims), &device())
        }
        None => x.clone(),
    };
    x.matmul(base) + input.matmul(a).matmul(b) * SCALING
}

/// Forward values and the gradients of `sum(out * w)` of the fused op and the reference;
/// `None` for a tensor that has no gradient.
type Run = (Tensor<2>, [Option<Tensor<2>>; 4]);

fn run(fused: bool, tensors: &[Tensor<2>; 4], dropout: Option<Dropout>, w: &Tensor<2>) -> Run {
    let [x, base, a, b] = tensors.clone();
    let out = if fused {
        flex::lora_linear(x, [base, a, b], SCALING, dropout)
    } else {
        reference(x, [base, a, b], dropout)
    };
    let grads = (out.clone() * w.clone()).sum().backward();
    let grad = |t: &Tensor<2>| t.grad(&grads).map(Tensor::<2>::from_inner);
    (out.inner(), tensors.each_ref().map(grad))
}

/// Runs both on x `[37, 24]`, base `[24, 40]`, rank 5 (no size a multiple of the SIMD lanes),
/// with the tensors `trainable` marks tracked, and compares.
fn check(trainable: [bool; 4], dropout: Option<Dropout>) {
    let shapes = [[37, 24], [24, 40], [24, 5], [5, 40]];
    let tensors = [0, 1, 2, 3].map(|i| {
        let t = random(shapes[i]);
        if trainable[i] { t.require_grad() } else { t }
    });
    let w = draw([37, 40], Distribution::Default, &device());
    assert!(flex::runs_on_flex(&tensors[0]));
    let (fused, reference) = (
        run(true, &tensors, dropout, &w),
        run(false, &tensors, dropout, &w),
    );
    assert!(max_abs_diff(fused.0, reference.0) < 1e-4, "forward");
    for (i, (f, r)) in fused.1.into_iter().zip(reference.1).enumerate() {
        match (f, r) {
            (Some(f), Some(r)) => assert!(max_abs_diff(f, r) < 1e-3, "gradient {i}"),
            (None, None) => assert!(!trainable[i], "gradient {i} missing"),
            _ => panic!("gradient {i}: present on one side only"),
        }
    }
}

#[test]
fn lora_with_dropout_and_a_frozen_base_matches_the_composed_math() {
    let dropout = Dropout {
        keep: 0.7,
        seed: 11,
    };
    check([true, false, true, true], Some(dropout));
}

#[test]
fn lora_without_dropout_matches_the_composed_math() {
    check([true, false, true, true], None);
}

#[test]
fn a_trainable_base_gets_its_gradient_and_an_untracked_input_none() {
    let dropout = Dropout { keep: 0.5, seed: 3 };
    check([false, true, true, true], Some(dropout));
    check([true, true, false, false], None);
}

#[test]
fn inference_without_autodiff_matches_the_composed_op() {
    let plain = Device::flex();
    let tensor = |dims: [usize; 2]| draw(dims, Distribution::Default, &plain);
    let (x, base, a, b) = (
        draw([2, 9, 16], Distribution::Default, &plain),
        tensor([16, 12]),
        tensor([16, 4]),
        tensor([4, 12]),
    );
    let weights = [base, a, b];
    let fused = super::lora_linear(x.clone(), weights.clone(), SCALING, None);
    let reference = composed::lora_linear(x, weights, SCALING, None);
    assert_eq!(fused.dims(), [2, 9, 12]);
    assert!(max_abs_diff(fused, reference) < 1e-5);
}

/// The mask's seed comes from the device's random stream: reseeding it repeats the output,
/// another seed or no dropout changes it.
#[test]
fn the_dropout_mask_follows_the_device_seed() {
    let x = random([3, 5, 16]).require_grad();
    let weights = [random([16, 8]), random([16, 4]), random([4, 8])];
    let forward = |seed: u64| {
        let _stream = crate::random_stream::hold();
        device().seed(seed);
        super::lora_linear(x.clone(), weights.clone(), SCALING, Some(0.5)).inner()
    };
    let (first, again) = (forward(5), forward(5));
    assert_eq!(
        first.into_data(),
        again.into_data(),
        "the same seed drew another mask"
    );
    let (first, other) = (forward(5), forward(6));
    assert!(max_abs_diff(first.clone(), other) > 1e-3);
    let undropped = super::lora_linear(x.clone(), weights.clone(), SCALING, None).inner();
    assert!(max_abs_diff(first, undropped) > 1e-3);
}

#[test]
fn a_plain_linear_through_the_empty_adapter_matches_burns_matmul_and_its_gradients() {
    let x = random([2, 19, 24]).require_grad();
    let weight = random([24, 40]).require_grad();
    let w = draw([2, 19, 40], Distribution::Default, &device());
    let fused = super::linear(x.clone(), weight.clone());
    let plain = x.clone().matmul(weight.clone().unsqueeze());
    assert!(max_abs_diff(fused.clone(), plain.clone()) < 1e-5, "forward");
    let fused_grads = (fused * w.clone()).sum().backward();
    let plain_grads = (plain * w).sum().backward();
    let dx = (x.grad(&fused_grads).unwrap(), x.grad(&plain_grads).unwrap());
    assert!(max_abs_diff(Tensor::<3>::from_inner(dx.0), Tensor::from_inner(dx.1)) < 1e-4);
    let dw = (
        weight.grad(&fused_grads).unwrap(),
        weight.grad(&plain_grads).unwrap(),
    );
    assert!(max_abs_diff(Tensor::<2>::from_inner(dw.0), Tensor::from_inner(dw.1)) < 1e-4);
}
