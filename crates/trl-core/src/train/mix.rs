//! Blending one model's parameters into another's, `target = α·source + (1-α)·target`
//! (TR-DPO's reference-model sync, Gorbatovski et al. 2024, arXiv:2404.09656).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// Returns `target` with every parameter replaced by `alpha * source + (1 - alpha) * target`.
/// Both modules must have the same structure; `source` may live on an autodiff device (its
/// values are taken without autodiff).
pub fn mix_parameters<M: Module>(target: M, source: &M, alpha: f64) -> M {
    let mut collect = Collect { values: Vec::new() };
    source.visit(&mut collect);
    let mut mixer = Mix {
        values: collect.values.into_iter(),
        alpha,
    };
    target.map(&mut mixer)
}

struct Collect {
    /// flattened parameter values in visiting order
    values: Vec<Tensor<1>>,
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val().without_autodiff();
        let numel: usize = value.dims().iter().product();
        self.values.push(value.reshape([numel]));
    }
}

struct Mix {
    values: std::vec::IntoIter<Tensor<1>>,
    alpha: f64,
}

impl ModuleMapper for Mix {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(source) = self.values.next() else {
            return param;
        };
        let alpha = self.alpha;
        param.map(|target| {
            let shape = target.dims();
            let source = source.reshape(shape).to_device(&target.device());
            source * alpha + target * (1.0 - alpha)
        })
    }
}
