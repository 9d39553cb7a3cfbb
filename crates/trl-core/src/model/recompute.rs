//! Per-decoder-layer activation checkpointing (`--gradient_checkpointing true`), as
//! transformers' `torch.utils.checkpoint` around each layer: the layer's forward runs without
//! keeping anything for the backward, its graph node keeps only the layer input, and the
//! backward reruns the layer under a graph of its own and backpropagates through it. Peak
//! memory falls from every layer's activations to one layer's plus the layer inputs.
//!
//! The device's gradient-checkpointing strategy (burn's `BalancedCheckpointing`, set by
//! trl-cli) is what turns it on; the layers then run under that strategy too. A layer that draws
//! random numbers (LoRA dropout) draws them from a seed of its own, set again before the rerun,
//! as torch's checkpoint restores the RNG state, so the rerun sees the same masks; after each
//! pass the device's stream continues from a seed drawn before it, so later draws are fresh.

// Built without a backend (trl-core alone), no layer can recompute: the machinery is unused.
#![cfg_attr(
    not(any(feature = "flex", feature = "wgpu", feature = "cuda")),
    allow(dead_code, unused_imports, unused_variables)
)]

use std::marker::PhantomData;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{BalancedCheckpointing, CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, DispatchKindConversion, DispatchTensor, GradientCheckpointingStrategy,
};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Distribution, Int, Tensor};

use crate::lora;

/// An autodiff tensor of backend `B` (whatever the strategy: the tensor type is the same).
type Tracked<B> = FloatTensor<Autodiff<B>>;

/// A layer's forward with its parameters, `[batch, seq, hidden]` -> `[batch, seq, hidden]`, kept
/// for the rerun.
type LayerFn = dyn Fn(Tensor<3>) -> Tensor<3> + Send + Sync;

/// Whether `x`'s device records its graph with the checkpointing strategy (the switch).
pub fn checkpointing(x: &Tensor<3>) -> bool {
    x.device().gradient_checkpointing_strategy() == Some(GradientCheckpointingStrategy::Balanced)
}

/// `forward(module, x)` (`[batch, seq, hidden]` -> `[batch, seq, hidden]`, everything but
/// the module and its input captured) through one recomputing graph node when checkpointing is
/// on and the layer trains (its input or one of `module`'s parameters needs a gradient); else
/// `forward(module, x)`. `draws`: a training forward of the layer draws random numbers (LoRA
/// dropout, from trainable adapters only: the graph-free pass runs in training mode).
pub fn checkpointed<M, F>(module: &M, x: Tensor<3>, forward: F, draws: bool) -> Tensor<3>
where
    M: Module + Clone + Send + Sync + 'static,
    F: Fn(&M, Tensor<3>) -> Tensor<3> + Send + Sync + 'static,
{
    if !checkpointing(&x) {
        return forward(module, x);
    }
    #[cfg(feature = "flex")]
    if matches!(
        x.device().inner().as_dispatch(),
        burn::backend::DispatchDevice::Flex(_)
    ) {
        return on::<burn::backend::Flex, BalancedCheckpointing, M, F>(module, x, forward, draws);
    }
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    if matches!(
        x.device().inner().as_dispatch(),
        burn::backend::DispatchDevice::Cube(_)
    ) {
        return on::<burn::backend::Cube, BalancedCheckpointing, M, F>(module, x, forward, draws);
    }
    forward(module, x)
}

/// The trainable parameters of a module, as autodiff primitives of backend `B`.
struct TrainableParams<B: Backend, C> {
    found: Vec<Tracked<B>>,
    strategy: PhantomData<C>,
}

impl<B: Backend, C: CheckpointStrategy> ModuleVisitor for TrainableParams<B, C>
where
    DispatchTensor: DispatchKindConversion<Autodiff<B, C>>,
{
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Ok(tensor) = param.val().try_into_primitive::<Autodiff<B, C>>()
            && tensor.is_tracked()
        {
            self.found.push(tensor);
        }
    }
}

/// A seed for the layer's random draws, from the device's stream.
fn draw_seed(device: &Device) -> u64 {
    let draw = Tensor::<1, Int>::random([1], Distribution::Uniform(0.0, 1e9), device);
    draw.into_scalar::<i64>() as u64
}

/// Runs `pass` with the device's stream set to `seed` (when given), then lets the stream go on
/// from a seed drawn before, so what `pass` drew is not drawn again later.
fn with_seed<T>(device: &Device, seed: Option<u64>, pass: impl FnOnce() -> T) -> T {
    let Some(seed) = seed else {
        return pass();
    };
    let next = draw_seed(device);
    device.seed(seed);
    let out = pass();
    device.seed(next);
    out
}

/// [`checkpointed`] on backend `B` under strategy `C`.
fn on<B, C, M, F>(module: &M, x: Tensor<3>, forward: F, draws: bool) -> Tensor<3>
where
    B: Backend,
    C: CheckpointStrategy,
    M: Module + Clone + Send + Sync + 'static,
    F: Fn(&M, Tensor<3>) -> Tensor<3> + Send + Sync + 'static,
    DispatchTensor: DispatchKindConversion<B> + DispatchKindConversion<Autodiff<B, C>>,
{
    let mut params = TrainableParams::<B, C> {
        found: Vec::new(),
        strategy: PhantomData,
    };
    module.visit(&mut params);
    let Ok(input) = x.clone().try_into_primitive::<Autodiff<B, C>>() else {
        return forward(module, x);
    };
    if !input.is_tracked() && params.found.is_empty() {
        return forward(module, x);
    }
    // The parameters' gradients reach them through this node, so it must be recorded even
    // when the input is a constant (the first layer under LoRA).
    let input = match input.is_tracked() {
        true => input,
        false => input.require_grad(),
    };
    let device = x.device();
    // The first pass records no graph: the plain input through untracked parameters (burn's
    // autodiff would keep a tracked pass's nodes until the backward), in training mode.
    let untracked = module.clone().no_grad();
    let plain_input = Tensor::from_primitive::<B>(input.primitive().clone());
    let seed = draws.then(|| draw_seed(&device));
    let out = with_seed(&device, seed, || {
        lora::adapter::as_training(|| forward(&untracked, plain_input))
    });
    let out = match out.clone().try_into_primitive::<B>() {
        Ok(plain) => plain,
        Err(_) => out
            .try_into_primitive::<Autodiff<B, C>>()
            .expect("a layer's output lives on its input's backend")
            .into_primitive(),
    };
    #[cfg(debug_assertions)]
    let checksum = sum_of::<B>(&out);
    let owned = module.clone();
    let rerun: Arc<LayerFn> = Arc::new(move |x| forward(&owned, x));
    let node = LayerBackward::<C>(PhantomData);
    let result = match node.prepare::<C>([input.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let state = LayerState {
                input: input.into_primitive(),
                params: params.found,
                seed,
                device,
                forward: rerun,
                #[cfg(debug_assertions)]
                checksum,
            };
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Tensor::from_primitive::<Autodiff<B, C>>(result)
}

/// What the rerun needs: the layer input (plain), the parameters to hand gradients to, and the
/// seed of the layer's random draws.
#[derive(Clone)]
struct LayerState<B: Backend> {
    input: FloatTensor<B>,
    params: Vec<Tracked<B>>,
    /// The seed of the layer's random draws, when it draws any.
    seed: Option<u64>,
    device: Device,
    forward: Arc<LayerFn>,
    /// The first pass's output summed: debug builds check that the rerun computes the same
    /// (the same dropout masks included).
    #[cfg(debug_assertions)]
    checksum: f64,
}

/// The sum of a plain tensor's elements, in f64 on the host.
#[cfg(debug_assertions)]
fn sum_of<B: Backend>(tensor: &FloatTensor<B>) -> f64
where
    DispatchTensor: DispatchKindConversion<B>,
{
    let tensor = Tensor::<3>::from_primitive::<B>(tensor.clone());
    tensor.sum().into_scalar::<f32>() as f64
}

impl<B: Backend> std::fmt::Debug for LayerState<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LayerState({} parameters, seed {:?})",
            self.params.len(),
            self.seed
        )
    }
}

/// The backward: reruns the layer under its own graph and backpropagates `grad` through it.
#[derive(Debug)]
struct LayerBackward<C>(PhantomData<C>);

impl<B, C> Backward<B, 1> for LayerBackward<C>
where
    B: Backend,
    C: CheckpointStrategy,
    DispatchTensor: DispatchKindConversion<B> + DispatchKindConversion<Autodiff<B, C>>,
{
    type State = LayerState<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let state = ops.state;
        let input = Tracked::<B>::new(state.input).require_grad();
        let out = with_seed(&state.device, state.seed, || {
            (state.forward)(Tensor::from_primitive::<Autodiff<B, C>>(input.clone()))
        });
        #[cfg(debug_assertions)]
        {
            let rerun = out.clone().inner().sum().into_scalar::<f32>() as f64;
            let tolerance = 1e-4 * state.checksum.abs().max(1.0);
            assert!(
                (rerun - state.checksum).abs() <= tolerance,
                "a checkpointed layer's rerun differs from its first pass: {rerun} vs {}",
                state.checksum
            );
        }
        let weighted = (out * Tensor::<3>::from_primitive::<B>(grad)).sum();
        let inner = weighted
            .try_into_primitive::<Autodiff<B, C>>()
            .expect("the rerun is recorded on the layer's backend")
            .backward();
        let [parent] = ops.parents;
        if let (Some(parent), Some(g)) = (parent, input.grad(&inner)) {
            grads.register::<B>(parent.id, g);
        }
        for param in &state.params {
            if let Some(g) = param.grad(&inner) {
                grads.register::<B>(param.id(), g);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Tensor};

    use crate::lora::{LoraConfig, load_adapter};
    use crate::model::parity_tests::{case_batch, fixtures, read_json};
    use crate::model::{CausalLm, load_causal_lm};

    /// Every parameter's gradient, flattened in module order (empty where none).
    struct Flatten<'a>(&'a GradientsParams, Vec<f32>);

    impl ModuleVisitor for Flatten<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.0.get::<D>(param.id) {
                self.1.extend(grad.into_data().try_to_vec::<f32>().unwrap());
            }
        }
    }

    /// The gradients of `mean(logits²)` on the fixture batch of `model_name`, the model built
    /// on `device`, with the fixture adapter `adapter` (a trained peft adapter: its B factors
    /// are not zero, so the adapters' gradients reach every layer) attached when given.
    fn gradients(device: &Device, model_name: &str, adapter: Option<&str>) -> Vec<f32> {
        let base = load_causal_lm(&fixtures().join("models").join(model_name), device).unwrap();
        let model: CausalLm = match adapter {
            Some(name) => {
                let dir = fixtures().join("adapters").join(name);
                let config = LoraConfig::read(&dir).unwrap();
                load_adapter(base, &config, &dir, device).unwrap()
            }
            None => base,
        };
        gradients_of(&model, model_name)
    }

    /// The gradients of `mean(logits²)` of `model` on `model_name`'s fixture batch.
    fn gradients_of(model: &CausalLm, model_name: &str) -> Vec<f32> {
        let logits = format!("expected/logits/{model_name}.json");
        let expected = read_json(&fixtures().join(logits));
        let batch = case_batch(&expected["cases"]["left_pad"]);
        let loss: Tensor<1> = model.forward(&batch).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), model);
        let mut flat = Flatten(&grads, Vec::new());
        model.visit(&mut flat);
        flat.1
    }

    fn assert_close(plain: &[f32], checkpointed: &[f32]) {
        assert_eq!(plain.len(), checkpointed.len());
        assert!(plain.iter().any(|g| *g != 0.0));
        for (i, (a, b)) in plain.iter().zip(checkpointed).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 + 1e-4 * a.abs(),
                "gradient {i}: {a} vs {b}"
            );
        }
    }

    /// Full fine-tuning and LoRA on every linear layer (where the first layer's input is a
    /// constant and the adapters' gradients reach them only through the layer nodes): the same
    /// gradients with and without. Nothing here draws random numbers, so tests beside it
    /// drawing from the process's one stream change nothing.
    #[test]
    fn checkpointed_layers_give_the_plain_graphs_gradients() {
        let plain = Device::default().autodiff();
        let checkpointed = plain.clone().gradient_checkpointing();
        for (model, adapter) in [
            ("tiny-llama", None),
            ("tiny-qwen3", Some("qwen3-all-linear-rslora")),
        ] {
            let (a, b) = (
                gradients(&plain, model, adapter),
                gradients(&checkpointed, model, adapter),
            );
            assert_close(&a, &b);
        }
    }

    /// With LoRA dropout (a trained peft adapter, so the dropped branch matters) the rerun
    /// draws the first pass's masks: debug builds assert that the rerun equals the first pass,
    /// which fails when the first pass draws no mask or other ones.
    #[test]
    fn a_rerun_with_dropout_draws_the_first_pass_masks() {
        // The masks' seeds come from the process's one stream: no other test may draw
        // between a pass's seeding and its masks.
        let _stream = crate::random_stream::hold();
        let device = Device::default().autodiff().gradient_checkpointing();
        let dir = fixtures().join("adapters/llama-qv");
        let mut config = LoraConfig::read(&dir).unwrap();
        config.lora_dropout = 0.5;
        let base = load_causal_lm(&fixtures().join("models/tiny-llama"), &device).unwrap();
        let model = load_adapter(base, &config, &dir, &device).unwrap();
        let grads = gradients_of(&model, "tiny-llama");
        assert!(grads.iter().all(|g| g.is_finite()) && grads.iter().any(|g| *g != 0.0));
    }
}
