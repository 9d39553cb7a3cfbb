//! AdamW with `torch.optim.AdamW`'s exact update, and the HF Trainer's parameter groups.
//!
//! Written here rather than taken from burn-optim because we need three things it does not
//! give together: torch's operation order (so runs match TRL step for step), per-parameter
//! weight-decay groups (HF: no decay on biases and norm weights), and a state we can save and
//! restore by parameter position so a resumed run is bitwise identical.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use super::loss_scale::LossScale;
use crate::Result;
use crate::host::scalar;

/// Hyper-parameters with transformers' `TrainingArguments` names and defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
}

/// First and second moments of one parameter, flattened.
#[derive(Debug, Clone)]
pub struct Moments {
    /// Same shape as the parameter (stored flat with the shape of the tensor it came from).
    pub exp_avg: Tensor<1>,
    pub exp_avg_sq: Tensor<1>,
}

/// Optimizer state: the step count and, per parameter in module visiting order, its moments.
#[derive(Debug, Clone, Default)]
pub struct AdamWState {
    pub step: u64,
    pub moments: Vec<Option<Moments>>,
    /// fp16's dynamic loss scale (`--fp16`), kept and saved with the optimizer as the HF
    /// Trainer saves torch's GradScaler next to it; `None` otherwise.
    pub loss_scale: Option<LossScale>,
}

/// The HF Trainer decays every weight matrix and embedding but no bias and no norm weight;
/// in this model family those are exactly the 1-D parameters.
pub fn decays(rank: usize) -> bool {
    rank >= 2
}

/// Applies one AdamW step to every parameter of `module` that has a gradient in `grads`.
pub fn adamw_step<M: Module>(
    module: M,
    grads: &mut GradientsParams,
    lr: f64,
    config: &AdamWConfig,
    state: &mut AdamWState,
) -> M {
    state.step += 1;
    let mut mapper = AdamWMapper {
        grads,
        lr,
        config,
        state,
        index: 0,
    };
    module.map(&mut mapper)
}

struct AdamWMapper<'a> {
    grads: &'a mut GradientsParams,
    lr: f64,
    config: &'a AdamWConfig,
    state: &'a mut AdamWState,
    index: usize,
}

impl ModuleMapper for AdamWMapper<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let index = self.index;
        self.index += 1;
        if self.state.moments.len() <= index {
            self.state.moments.resize(index + 1, None);
        }
        let Some(grad) = self.grads.remove::<D>(param.id) else {
            return param;
        };
        let (id, tensor, mapper) = param.consume();
        let strategy = tensor.gradient_checkpointing_strategy();
        let shape = tensor.dims();
        let numel: usize = shape.iter().product();
        let c = self.config;
        let (lr, step) = (self.lr, self.state.step as i32);
        // [numel]
        let weights = tensor.inner().reshape([numel]);
        let grad = grad.reshape([numel]);
        let moments = self.state.moments[index].take().unwrap_or_else(|| Moments {
            exp_avg: weights.zeros_like(),
            exp_avg_sq: weights.zeros_like(),
        });
        // torch: param.mul_(1 - lr * wd), then the Adam update on the decayed param.
        let weights = if decays(D) && c.weight_decay != 0.0 {
            weights * (1.0 - lr * c.weight_decay)
        } else {
            weights
        };
        let exp_avg = moments.exp_avg.clone() + (grad.clone() - moments.exp_avg) * (1.0 - c.beta1);
        let exp_avg_sq = moments.exp_avg_sq * c.beta2 + grad.clone() * grad * (1.0 - c.beta2);
        let bias_correction1 = 1.0 - c.beta1.powi(step);
        let bias_correction2_sqrt = (1.0 - c.beta2.powi(step)).sqrt();
        let denom = exp_avg_sq.clone().sqrt() / bias_correction2_sqrt + c.epsilon;
        let updated = weights - exp_avg.clone() / denom * (lr / bias_correction1);
        self.state.moments[index] = Some(Moments {
            exp_avg,
            exp_avg_sq,
        });
        let updated = Tensor::from_inner(updated.reshape(shape));
        // `from_inner` gives the default strategy: the parameter keeps its device's (a
        // checkpointing device's), else the next forward mixes strategies (burn panics) or
        // silently stops recomputing.
        let updated = match strategy {
            Some(strategy) => updated.with_gradient_checkpointing_strategy(strategy),
            None => updated,
        };
        Param::from_mapped_value(id, updated.require_grad(), mapper)
    }
}

/// Total L2 norm of all gradients (torch `clip_grad_norm_`'s return value), then scales every
/// gradient by `min(1, max_norm / (norm + 1e-6))` as torch does. Returns the pre-clip norm.
pub fn clip_grad_norm<M: Module>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: Option<f64>,
) -> Result<f64> {
    let mut squares = SquaredNorms { grads, sum: None };
    module.visit(&mut squares);
    let total = match squares.sum {
        Some(sum) => scalar(sum, "the gradient norm")?.sqrt(),
        None => 0.0,
    };
    if let Some(max_norm) = max_norm.filter(|m| *m > 0.0) {
        let coef = (max_norm / (total + 1e-6)).min(1.0);
        module.visit(&mut ScaleGrads { grads, coef });
    }
    Ok(total)
}

/// Multiplies every gradient of `module`'s parameters by `coef` (fp16's unscaling).
pub fn scale_gradients<M: Module>(module: &M, grads: &mut GradientsParams, coef: f64) {
    module.visit(&mut ScaleGrads { grads, coef });
}

struct SquaredNorms<'a> {
    grads: &'a GradientsParams,
    /// running sum of squares, `[1]`, kept on device to avoid a sync per parameter
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorms<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let squares = grad.powi_scalar(2).sum().reshape([1]);
            self.sum = Some(match self.sum.take() {
                Some(sum) => sum + squares,
                None => squares,
            });
        }
    }
}

struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    coef: f64,
}

impl ModuleVisitor for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, grad * self.coef);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::tensor::{Device, TensorData};

    #[derive(Module, Debug)]
    struct Toy {
        weight: Param<Tensor<2>>,
        bias: Param<Tensor<1>>,
    }

    /// torch's AdamW betas and epsilon with `weight_decay`.
    fn torch_defaults(weight_decay: f64) -> AdamWConfig {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            weight_decay,
        }
    }

    /// One AdamW step against torch's formula evaluated by hand in f64 for a single element.
    #[test]
    fn matches_torch_update_and_skips_decay_on_biases() {
        let device = Device::default().autodiff();
        let toy = Toy {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![1.0f32, -2.0], [1, 2]),
                &device,
            )),
            bias: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![0.5f32], [1]),
                &device,
            )),
        };
        let loss = (toy.weight.val() * 3.0).sum() + (toy.bias.val() * 3.0).sum();
        let mut grads = GradientsParams::from_grads(loss.backward(), &toy);
        let config = torch_defaults(0.1);
        let mut state = AdamWState::default();
        let toy = adamw_step(toy, &mut grads, 0.01, &config, &mut state);
        let expected = |p: f64, wd: f64| {
            let p = p * (1.0 - 0.01 * wd);
            let (m, v): (f64, f64) = (0.1 * 3.0, 0.001 * 9.0);
            let denom = v.sqrt() / (1.0f64 - 0.999).sqrt() + 1e-8;
            p - (m / denom) * (0.01 / (1.0 - 0.9))
        };
        let w = toy.weight.val().into_data().try_to_vec::<f32>().unwrap();
        let b = toy.bias.val().into_data().try_to_vec::<f32>().unwrap();
        assert!((w[0] as f64 - expected(1.0, 0.1)).abs() < 1e-6, "{w:?}");
        assert!((b[0] as f64 - expected(0.5, 0.0)).abs() < 1e-6, "{b:?}");
    }

    /// An updated parameter stays on its device's gradient-checkpointing strategy: LoRA's
    /// adapters next to frozen base weights on a checkpointing device made burn panic on the
    /// second step, and a fully trained model silently stopped recomputing.
    #[test]
    fn an_update_keeps_the_checkpointing_strategy() {
        let device = Device::default().autodiff().gradient_checkpointing();
        let toy = Toy {
            weight: Param::from_tensor(Tensor::ones([1, 2], &device)),
            bias: Param::from_tensor(Tensor::ones([1], &device)),
        };
        let loss = toy.weight.val().sum() + toy.bias.val().sum();
        let mut grads = GradientsParams::from_grads(loss.backward(), &toy);
        let config = torch_defaults(0.0);
        let toy = adamw_step(toy, &mut grads, 0.01, &config, &mut AdamWState::default());
        let expected = device.gradient_checkpointing_strategy();
        assert!(expected.is_some());
        assert_eq!(toy.weight.val().gradient_checkpointing_strategy(), expected);
        assert_eq!(toy.bias.val().gradient_checkpointing_strategy(), expected);
        assert!(toy.weight.val().is_require_grad());
    }

    #[test]
    fn clipping_scales_to_max_norm_and_returns_the_raw_norm() {
        let device = Device::default().autodiff();
        let toy = Toy {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![1.0f32, 1.0], [1, 2]),
                &device,
            )),
            bias: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![1.0f32], [1]),
                &device,
            )),
        };
        // grads: weight [3, 4], bias [0] -> norm 5
        let loss = (toy.weight.val()
            * Tensor::from_data(TensorData::new(vec![3.0f32, 4.0], [1, 2]), &device))
        .sum()
            + toy.bias.val().sum() * 0.0;
        let mut grads = GradientsParams::from_grads(loss.backward(), &toy);
        let norm = clip_grad_norm(&toy, &mut grads, Some(1.0)).unwrap();
        assert!((norm - 5.0).abs() < 1e-6);
        let g = grads
            .get::<2>(toy.weight.id)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(
            (g[0] - 0.6).abs() < 1e-5 && (g[1] - 0.8).abs() < 1e-5,
            "{g:?}"
        );
    }
}
