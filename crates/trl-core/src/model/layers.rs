//! One decoder layer of the Llama family: attention (GQA, RoPE, optional q/k norms and biases)
//! and the SwiGLU MLP, each behind an RMSNorm with a residual connection.

use burn::module::Module;
use burn::nn::RmsNorm;
use burn::tensor::{Bool, Device, Tensor};

use super::config::DecoderConfig;
use super::kv_cache::LayerKv;
use super::projection::{Projection, ProjectionFn};
use super::rope::RotaryTables;
use super::weights::{WeightReader, WeightWriter};
use crate::kernels::SharedPrefix;
use crate::{Result, kernels};

/// Multi-head attention with grouped key/value heads, as in `LlamaAttention` / `Qwen3Attention`.
#[derive(Module, Debug)]
pub struct Attention {
    q_proj: Projection,
    k_proj: Projection,
    v_proj: Projection,
    o_proj: Projection,
    /// Qwen3: RMSNorm over each query head.
    q_norm: Option<RmsNorm>,
    /// Qwen3: RMSNorm over each key head.
    k_norm: Option<RmsNorm>,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn load(
        r: &mut WeightReader,
        prefix: &str,
        c: &DecoderConfig,
        device: &Device,
    ) -> Result<Self> {
        let (h, d) = (c.hidden_size, c.head_dim);
        let (q_out, kv_out) = (c.num_attention_heads * d, c.num_key_value_heads * d);
        let norm = |r: &mut WeightReader, name: &str| -> Result<Option<RmsNorm>> {
            if c.qk_norm {
                Ok(Some(r.rms_norm(
                    &format!("{prefix}.{name}"),
                    d,
                    c.rms_norm_eps,
                    device,
                )?))
            } else {
                Ok(None)
            }
        };
        Ok(Attention {
            q_proj: Projection::new(r.linear(
                &format!("{prefix}.q_proj"),
                h,
                q_out,
                c.qkv_bias,
                device,
            )?),
            k_proj: Projection::new(r.linear(
                &format!("{prefix}.k_proj"),
                h,
                kv_out,
                c.qkv_bias,
                device,
            )?),
            v_proj: Projection::new(r.linear(
                &format!("{prefix}.v_proj"),
                h,
                kv_out,
                c.qkv_bias,
                device,
            )?),
            o_proj: Projection::new(r.linear(
                &format!("{prefix}.o_proj"),
                q_out,
                h,
                c.o_bias,
                device,
            )?),
            q_norm: norm(r, "q_norm")?,
            k_norm: norm(r, "k_norm")?,
            num_heads: c.num_attention_heads,
            num_kv_heads: c.num_key_value_heads,
            head_dim: d,
        })
    }

    fn save(&self, w: &mut WeightWriter, prefix: &str) -> Result<()> {
        w.linear(&format!("{prefix}.q_proj"), &self.q_proj.base)?;
        w.linear(&format!("{prefix}.k_proj"), &self.k_proj.base)?;
        w.linear(&format!("{prefix}.v_proj"), &self.v_proj.base)?;
        w.linear(&format!("{prefix}.o_proj"), &self.o_proj.base)?;
        if let Some(norm) = &self.q_norm {
            w.rms_norm(&format!("{prefix}.q_norm"), norm)?;
        }
        if let Some(norm) = &self.k_norm {
            w.rms_norm(&format!("{prefix}.k_norm"), norm)?;
        }
        Ok(())
    }

    fn map_projections(self, prefix: &str, f: &mut ProjectionFn) -> Result<Self> {
        Ok(Attention {
            q_proj: f(&format!("{prefix}.q_proj"), self.q_proj)?,
            k_proj: f(&format!("{prefix}.k_proj"), self.k_proj)?,
            v_proj: f(&format!("{prefix}.v_proj"), self.v_proj)?,
            o_proj: f(&format!("{prefix}.o_proj"), self.o_proj)?,
            ..self
        })
    }

    fn projections<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Projection)>) {
        for (name, p) in [
            ("q_proj", &self.q_proj),
            ("k_proj", &self.k_proj),
            ("v_proj", &self.v_proj),
            ("o_proj", &self.o_proj),
        ] {
            out.push((format!("{prefix}.{name}"), p));
        }
    }

    /// `x` `[batch, seq, hidden]`, `blocked` `[batch, 1, seq, seq]` -> `[batch, seq, hidden]`.
    fn forward(&self, x: Tensor<3>, rope: &RotaryTables, blocked: &Tensor<4, Bool>) -> Tensor<3> {
        let [batch, seq, _] = x.dims();
        let (q, k, v) = self.queries_keys_values(x, rope);
        // [batch, seq, heads, head_dim] -> [batch, seq, heads * head_dim]
        let context = kernels::attention(q, k, v, blocked).reshape([
            batch,
            seq,
            self.num_heads * self.head_dim,
        ]);
        self.o_proj.forward(context)
    }

    /// Projections, q/k norms and RoPE of `x` `[batch, seq, hidden]`: q `[batch, heads, seq,
    /// head_dim]`, k and v `[batch, kv_heads, seq, head_dim]`.
    fn queries_keys_values(
        &self,
        x: Tensor<3>,
        rope: &RotaryTables,
    ) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let [batch, seq, _] = x.dims();
        let (heads, kv_heads, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let split_heads = |t: Tensor<3>, n: usize| t.reshape([batch, seq, n, d]).swap_dims(1, 2);
        // [batch, heads, seq, head_dim]
        let mut q = split_heads(self.q_proj.forward(x.clone()), heads);
        // [batch, kv_heads, seq, head_dim]
        let mut k = split_heads(self.k_proj.forward(x.clone()), kv_heads);
        let v = split_heads(self.v_proj.forward(x), kv_heads);
        if let (Some(q_norm), Some(k_norm)) = (&self.q_norm, &self.k_norm) {
            q = norm(q_norm, q);
            k = norm(k_norm, k);
        }
        (rope.apply(q), rope.apply(k), v)
    }

    /// The incremental forward: `x` `[batch, new, hidden]` at cache columns `start..start +
    /// new`; writes its keys and values into `cache` and attends over every cached column.
    /// `blocked` is `[batch, 1, new, new]` when the cache was empty (the prefill runs the
    /// training attention on the new tokens alone) and `[batch, 1, new, capacity]` after.
    fn forward_cached(&self, x: Tensor<3>, step: &CacheStep, cache: &mut LayerKv) -> Tensor<3> {
        let CacheStep {
            rope,
            blocked,
            start,
            shared,
        } = *step;
        let [batch, new, _] = x.dims();
        let (q, k, v) = self.queries_keys_values(x, rope);
        let write = |buffer: &mut Option<Tensor<4>>, value: Tensor<4>| {
            let [rows, heads, _, d] = value.dims();
            let taken = buffer
                .take()
                .expect("cache tensors are present between writes");
            *buffer =
                Some(taken.slice_assign([0..rows, 0..heads, start..start + new, 0..d], value));
        };
        let context = if start == 0 {
            write(&mut cache.keys, k.clone());
            write(&mut cache.values, v.clone());
            kernels::attention(q, k, v, blocked)
        } else {
            write(&mut cache.keys, k);
            write(&mut cache.values, v);
            let keys = cache.keys.clone().expect("written above");
            let values = cache.values.clone().expect("written above");
            kernels::cached_attention(q, keys, values, blocked, shared)
        };
        // [batch, new, heads, head_dim] -> [batch, new, heads * head_dim]
        self.o_proj
            .forward(context.reshape([batch, new, self.num_heads * self.head_dim]))
    }
}

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    gate_proj: Projection,
    up_proj: Projection,
    down_proj: Projection,
}

impl Mlp {
    fn load(
        r: &mut WeightReader,
        prefix: &str,
        c: &DecoderConfig,
        device: &Device,
    ) -> Result<Self> {
        let (h, i, b) = (c.hidden_size, c.intermediate_size, c.mlp_bias);
        Ok(Mlp {
            gate_proj: Projection::new(r.linear(
                &format!("{prefix}.gate_proj"),
                h,
                i,
                b,
                device,
            )?),
            up_proj: Projection::new(r.linear(&format!("{prefix}.up_proj"), h, i, b, device)?),
            down_proj: Projection::new(r.linear(
                &format!("{prefix}.down_proj"),
                i,
                h,
                b,
                device,
            )?),
        })
    }

    fn save(&self, w: &mut WeightWriter, prefix: &str) -> Result<()> {
        w.linear(&format!("{prefix}.gate_proj"), &self.gate_proj.base)?;
        w.linear(&format!("{prefix}.up_proj"), &self.up_proj.base)?;
        w.linear(&format!("{prefix}.down_proj"), &self.down_proj.base)
    }

    /// `[batch, seq, hidden]` -> `[batch, seq, hidden]`
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let (gate, up, down) = (&self.gate_proj, &self.up_proj, &self.down_proj);
        // Adapters without dropout fold into the weights, so the fused kernel keeps running.
        if gate.folds_exactly(&x) && up.folds_exactly(&x) && down.folds_exactly(&x) {
            return kernels::swiglu_mlp(
                x,
                gate.effective_weight(),
                up.effective_weight(),
                down.effective_weight(),
            );
        }
        let activated = kernels::composed::swiglu(gate.forward(x.clone()), up.forward(x));
        down.forward(activated)
    }

    fn map_projections(self, prefix: &str, f: &mut ProjectionFn) -> Result<Self> {
        Ok(Mlp {
            gate_proj: f(&format!("{prefix}.gate_proj"), self.gate_proj)?,
            up_proj: f(&format!("{prefix}.up_proj"), self.up_proj)?,
            down_proj: f(&format!("{prefix}.down_proj"), self.down_proj)?,
        })
    }

    fn projections<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Projection)>) {
        out.push((format!("{prefix}.gate_proj"), &self.gate_proj));
        out.push((format!("{prefix}.up_proj"), &self.up_proj));
        out.push((format!("{prefix}.down_proj"), &self.down_proj));
    }
}

/// What every layer of one incremental forward shares: the RoPE tables of the new positions,
/// the mask (`[batch, 1, new, new]` for the prefill, `[batch, 1, new, capacity]` after), the
/// first cache column written, and which rows' prompt columns are copies of another's.
#[derive(Clone, Copy)]
pub(crate) struct CacheStep<'a> {
    pub rope: &'a RotaryTables,
    pub blocked: &'a Tensor<4, Bool>,
    pub start: usize,
    pub shared: &'a SharedPrefix,
}

/// What LoRA dropout a decoder layer draws in a training forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LayerDropout {
    /// No adapter with dropout.
    None,
    /// Adapters with dropout, all trainable.
    Trainable,
    /// An adapter with dropout that does not train.
    Frozen,
}

/// A pre-norm decoder block (`model.layers.N`).
#[derive(Module, Debug)]
pub struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl DecoderLayer {
    /// Loads `{prefix}.*` with HF names.
    pub fn load(
        r: &mut WeightReader,
        prefix: &str,
        c: &DecoderConfig,
        device: &Device,
    ) -> Result<Self> {
        let (h, eps) = (c.hidden_size, c.rms_norm_eps);
        Ok(DecoderLayer {
            input_layernorm: r.rms_norm(&format!("{prefix}.input_layernorm"), h, eps, device)?,
            self_attn: Attention::load(r, &format!("{prefix}.self_attn"), c, device)?,
            post_attention_layernorm: r.rms_norm(
                &format!("{prefix}.post_attention_layernorm"),
                h,
                eps,
                device,
            )?,
            mlp: Mlp::load(r, &format!("{prefix}.mlp"), c, device)?,
        })
    }

    /// Writes `{prefix}.*` with HF names.
    pub fn save(&self, w: &mut WeightWriter, prefix: &str) -> Result<()> {
        w.rms_norm(&format!("{prefix}.input_layernorm"), &self.input_layernorm)?;
        self.self_attn.save(w, &format!("{prefix}.self_attn"))?;
        w.rms_norm(
            &format!("{prefix}.post_attention_layernorm"),
            &self.post_attention_layernorm,
        )?;
        self.mlp.save(w, &format!("{prefix}.mlp"))
    }

    /// Replaces every projection by `f(hf_path, projection)` (attaching or removing adapters).
    pub fn map_projections(self, prefix: &str, f: &mut ProjectionFn) -> Result<Self> {
        Ok(DecoderLayer {
            self_attn: self
                .self_attn
                .map_projections(&format!("{prefix}.self_attn"), f)?,
            mlp: self.mlp.map_projections(&format!("{prefix}.mlp"), f)?,
            ..self
        })
    }

    /// Every projection with its HF path, in module order.
    pub fn projections<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Projection)>) {
        self.self_attn
            .projections(&format!("{prefix}.self_attn"), out);
        self.mlp.projections(&format!("{prefix}.mlp"), out);
    }

    /// Whether the layer's LoRA adapters draw dropout masks in a training forward, and whether
    /// any of those is frozen (what per-layer recomputation needs to know).
    pub(crate) fn dropout(&self) -> LayerDropout {
        let mut projections = Vec::new();
        self.projections("", &mut projections);
        let mut found = LayerDropout::None;
        for adapter in projections.iter().filter_map(|(_, p)| p.lora.as_ref()) {
            if adapter.dropout <= 0.0 {
                continue;
            }
            if !adapter.lora_a.weight.val().is_require_grad() {
                return LayerDropout::Frozen;
            }
            found = LayerDropout::Trainable;
        }
        found
    }

    /// `[batch, seq, hidden]` -> `[batch, seq, hidden]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: &RotaryTables,
        blocked: &Tensor<4, Bool>,
    ) -> Tensor<3> {
        let attended =
            self.self_attn
                .forward(norm(&self.input_layernorm, x.clone()), rope, blocked);
        let x = x + attended;
        let mlp_out = self
            .mlp
            .forward(norm(&self.post_attention_layernorm, x.clone()));
        x + mlp_out
    }

    /// [`DecoderLayer::forward`] through the KV cache (see [`Attention::forward_cached`]).
    pub(crate) fn forward_cached(
        &self,
        x: Tensor<3>,
        step: &CacheStep,
        cache: &mut LayerKv,
    ) -> Tensor<3> {
        let normed = norm(&self.input_layernorm, x.clone());
        let x = x + self.self_attn.forward_cached(normed, step, cache);
        let mlp_out = self
            .mlp
            .forward(norm(&self.post_attention_layernorm, x.clone()));
        x + mlp_out
    }
}

/// `norm` applied through the fused kernel (same formula as `RmsNorm::forward`).
pub fn norm<const D: usize>(norm: &RmsNorm, x: Tensor<D>) -> Tensor<D> {
    kernels::rms_norm(x, norm.gamma.val(), norm.epsilon)
}
