//! Blending one model's parameters into another's, `target = α·source + (1-α)·target`
//! (TR-DPO's reference-model sync, Gorbatovski et al. 2024, arXiv:2404.09656).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

use crate::{Error, Result};

/// Returns `target` with every parameter replaced by `alpha * source + (1 - alpha) * target`.
/// `source` may live on an autodiff device (its values are taken without autodiff). Two
/// modules whose parameters differ in number or shape (a `ref_model` of another size) are an
/// error naming the first mismatch, never a panic in a reshape.
pub fn mix_parameters<M: Module>(target: M, source: &M, alpha: f64) -> Result<M> {
    let mut collect = Collect { values: Vec::new() };
    source.visit(&mut collect);
    let mut target_shapes = Shapes { shapes: Vec::new() };
    target.visit(&mut target_shapes);
    let source_shapes: Vec<Vec<usize>> = collect.values.iter().map(|(s, _)| s.clone()).collect();
    if source_shapes != target_shapes.shapes {
        let first = source_shapes
            .iter()
            .zip(&target_shapes.shapes)
            .position(|(a, b)| a != b)
            .unwrap_or(source_shapes.len().min(target_shapes.shapes.len()));
        return Err(Error::Weights {
            message: format!(
                "cannot mix models of different shapes: parameter {first} is {:?} in the policy \
                 but {:?} in the reference ({} vs {} parameters)",
                source_shapes.get(first),
                target_shapes.shapes.get(first),
                source_shapes.len(),
                target_shapes.shapes.len()
            ),
        });
    }
    let mut mixer = Mix {
        values: collect
            .values
            .into_iter()
            .map(|(_, v)| v)
            .collect::<Vec<_>>()
            .into_iter(),
        alpha,
    };
    Ok(target.map(&mut mixer))
}

struct Shapes {
    shapes: Vec<Vec<usize>>,
}

impl ModuleVisitor for Shapes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.shapes.push(param.val().dims().to_vec());
    }
}

struct Collect {
    /// (shape, flattened values) of every parameter, in visiting order
    values: Vec<(Vec<usize>, Tensor<1>)>,
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val().without_autodiff();
        let shape = value.dims().to_vec();
        let numel: usize = shape.iter().product();
        self.values.push((shape, value.reshape([numel])));
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
            // Same shape: checked against the source's shapes before mapping.
            let shape = target.dims();
            let source = source.reshape(shape).to_device(&target.device());
            source * alpha + target * (1.0 - alpha)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::Device;

    #[test]
    fn models_of_different_shapes_are_an_error_not_a_panic() {
        // burn-nn fills a layer's weights from the random stream at their first read.
        let _stream = crate::random_stream::hold();
        let device = Device::default();
        let small = LinearConfig::new(2, 3).init(&device);
        let large = LinearConfig::new(2, 4).init(&device);
        let err = mix_parameters(small.clone(), &large, 0.5)
            .unwrap_err()
            .to_string();
        assert!(err.contains("different shapes"), "{err}");
        let mixed = mix_parameters(small.clone(), &small, 0.5).unwrap();
        assert_eq!(mixed.weight.val().dims(), [2, 3]);
    }
}
