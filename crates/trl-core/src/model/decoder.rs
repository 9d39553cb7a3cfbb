//! The decoder stack and its two heads: `*ForCausalLM` (vocabulary logits) and
//! `*ForSequenceClassification` (reward scores at the last non-pad token).

use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::module::linear;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use super::config::DecoderConfig;
use super::kv_cache::KvCache;
use super::layers::{CacheStep, DecoderLayer, LayerDropout};
use super::mask::{attention_block_mask, position_ids_from_mask};
use super::projection::{Projection, ProjectionFn};
use super::rope::{RotaryTables, inverse_frequencies};
use super::weights::{WeightReader, WeightWriter};
use crate::kernels::LmHead;
use crate::{Error, Result};

/// A padded batch of token ids as the model consumes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBatch {
    /// `[batch][seq]`
    pub input_ids: Vec<Vec<u32>>,
    /// `[batch][seq]`, 1 for real tokens, 0 for padding (either side).
    pub attention_mask: Vec<Vec<i64>>,
    /// `[batch][seq]`; packed rows restart at 0 for each sample, which also stops attention
    /// from crossing samples.
    pub position_ids: Vec<Vec<i64>>,
}

impl TokenBatch {
    /// A padded batch; position ids follow the mask as transformers' generate computes them.
    pub fn new(input_ids: Vec<Vec<u32>>, attention_mask: Vec<Vec<i64>>) -> Self {
        let position_ids = position_ids_from_mask(&attention_mask);
        TokenBatch {
            input_ids,
            attention_mask,
            position_ids,
        }
    }

    /// A batch with explicit position ids (packing, padding-free).
    pub fn with_position_ids(
        input_ids: Vec<Vec<u32>>,
        attention_mask: Vec<Vec<i64>>,
        position_ids: Vec<Vec<i64>>,
    ) -> Self {
        TokenBatch {
            input_ids,
            attention_mask,
            position_ids,
        }
    }

    /// `[batch, seq]`
    pub fn dims(&self) -> [usize; 2] {
        [
            self.input_ids.len(),
            self.input_ids.first().map_or(0, Vec::len),
        ]
    }

    fn ids_tensor(&self, device: &Device) -> Tensor<2, Int> {
        let flat: Vec<i64> = self
            .input_ids
            .iter()
            .flatten()
            .map(|&id| id as i64)
            .collect();
        Tensor::from_data(TensorData::new(flat, self.dims()), device)
    }

    fn positions_tensor(&self, device: &Device) -> Tensor<2, Int> {
        let flat: Vec<i64> = self.position_ids.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(flat, self.dims()), device)
    }
}

/// `model.*`: embeddings, decoder layers, final norm. Produces hidden states.
#[derive(Module, Debug)]
pub struct Decoder {
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    #[module(skip)]
    inv_freq: Vec<f32>,
    #[module(skip)]
    sliding_window: Option<usize>,
}

impl Decoder {
    fn load(r: &mut WeightReader, c: &DecoderConfig, device: &Device) -> Result<Self> {
        let layers = (0..c.num_hidden_layers)
            .map(|i| DecoderLayer::load(r, &format!("model.layers.{i}"), c, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Decoder {
            embed_tokens: r.embedding("model.embed_tokens", c.vocab_size, c.hidden_size, device)?,
            layers,
            norm: r.rms_norm("model.norm", c.hidden_size, c.rms_norm_eps, device)?,
            inv_freq: inverse_frequencies(c.head_dim, c.rope_theta, &c.rope_scaling),
            sliding_window: c.sliding_window,
        })
    }

    fn save(&self, w: &mut WeightWriter) -> Result<()> {
        w.embedding("model.embed_tokens", &self.embed_tokens)?;
        for (i, layer) in self.layers.iter().enumerate() {
            layer.save(w, &format!("model.layers.{i}"))?;
        }
        w.rms_norm("model.norm", &self.norm)
    }

    /// Replaces every projection of every layer by `f(hf_path, projection)`.
    pub fn map_projections(self, f: &mut ProjectionFn) -> Result<Self> {
        let layers = self
            .layers
            .into_iter()
            .enumerate()
            .map(|(i, layer)| layer.map_projections(&format!("model.layers.{i}"), f))
            .collect::<Result<Vec<_>>>()?;
        Ok(Decoder { layers, ..self })
    }

    /// Every projection of every layer with its HF path, in module order.
    pub fn projections(&self) -> Vec<(String, &Projection)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            layer.projections(&format!("model.layers.{i}"), &mut out);
        }
        out
    }

    /// Final hidden states `[batch, seq, hidden]`.
    pub fn forward(&self, batch: &TokenBatch) -> Tensor<3> {
        let device = self.embed_tokens.weight.device();
        let rope = RotaryTables::new(&batch.positions_tensor(&device), &self.inv_freq, &device);
        // [batch, 1, seq, seq], shared by every layer
        let blocked: Tensor<4, Bool> = attention_block_mask(
            &batch.attention_mask,
            &batch.position_ids,
            self.sliding_window,
            &device,
        );
        let mut hidden = self.embed_tokens.forward(batch.ids_tensor(&device));
        let checkpointing = super::recompute::checkpointing(&hidden);
        for layer in &self.layers {
            // A frozen adapter with dropout would draw masks in the graph-free pass that its
            // rerun does not: such a layer keeps its activations.
            let dropout = checkpointing.then(|| layer.dropout());
            hidden = match dropout {
                None | Some(LayerDropout::Frozen) => layer.forward(hidden, &rope, &blocked),
                Some(dropout) => {
                    let draws = dropout == LayerDropout::Trainable;
                    let (rope, blocked) = (rope.clone(), blocked.clone());
                    let forward = move |layer: &DecoderLayer, x| layer.forward(x, &rope, &blocked);
                    super::recompute::checkpointed(layer, hidden, forward, draws)
                }
            };
        }
        super::layers::norm(&self.norm, hidden)
    }

    /// Final hidden states `[batch, new, hidden]` of `input_ids` `[batch][new]` (mask
    /// `[batch][new]`) appended to `cache`; the first call (empty cache) is the prefill and
    /// computes exactly what [`Decoder::forward`] computes for the same batch.
    pub fn forward_cached(
        &self,
        input_ids: &[Vec<u32>],
        attention_mask: &[Vec<i64>],
        cache: &mut KvCache,
    ) -> Tensor<3> {
        let device = self.embed_tokens.weight.device();
        let start = cache.len();
        let position_ids = cache.append(attention_mask);
        let batch = TokenBatch::with_position_ids(
            input_ids.to_vec(),
            attention_mask.to_vec(),
            position_ids,
        );
        let new = batch.dims()[1];
        let rope = RotaryTables::new(&batch.positions_tensor(&device), &self.inv_freq, &device);
        let blocked = if start == 0 {
            // [batch, 1, new, new]: the training mask
            attention_block_mask(
                &batch.attention_mask,
                &batch.position_ids,
                self.sliding_window,
                &device,
            )
        } else {
            // [batch, 1, new, capacity]
            cache.block_mask(new, &device)
        };
        let mut hidden = self.embed_tokens.forward(batch.ids_tensor(&device));
        let shared = cache.shared_prefix().clone();
        let step = CacheStep {
            rope: &rope,
            blocked: &blocked,
            start,
            shared: &shared,
        };
        for (layer, layer_cache) in self.layers.iter().zip(cache.layers.iter_mut()) {
            hidden = layer.forward_cached(hidden, &step, layer_cache);
        }
        cache.advance(new);
        super::layers::norm(&self.norm, hidden)
    }

    /// The embedding table `[vocab, hidden]` (the output projection of tied models).
    pub fn embedding_weight(&self) -> Tensor<2> {
        self.embed_tokens.weight.val()
    }
}

/// `*ForCausalLM`: the decoder plus `lm_head`, or the embedding table when tied.
#[derive(Module, Debug)]
pub struct CausalLm {
    model: Decoder,
    /// `None` when `tie_word_embeddings` (or the checkpoint has no `lm_head.weight`).
    lm_head: Option<Projection>,
    #[module(skip)]
    config: DecoderConfig,
}

impl CausalLm {
    /// Builds the model from a checkpoint opened with [`WeightReader`].
    pub fn load(r: &mut WeightReader, config: &DecoderConfig, device: &Device) -> Result<Self> {
        let mut config = config.clone();
        let model = Decoder::load(r, &config, device)?;
        // Tied embeddings: declared by the config, or detected by a missing lm_head.weight.
        let tied = config.tie_word_embeddings || !r.contains("lm_head.weight");
        config.tie_word_embeddings = tied;
        let lm_head = if tied {
            None
        } else {
            Some(Projection::new(r.linear(
                "lm_head",
                config.hidden_size,
                config.vocab_size,
                false,
                device,
            )?))
        };
        Ok(CausalLm {
            model,
            lm_head,
            config,
        })
    }

    /// The resolved config this model was built from.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// The device the weights live on (where a KV cache for this model must be allocated).
    pub fn device(&self) -> Device {
        self.model.embed_tokens.weight.device()
    }

    /// The decoder without its head (shared by log-prob and generation code).
    pub fn decoder(&self) -> &Decoder {
        &self.model
    }

    /// Hidden states `[batch, seq, hidden]` -> logits `[batch, seq, vocab]`.
    pub fn logits_from_hidden(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => linear(hidden, self.model.embedding_weight().transpose(), None),
        }
    }

    /// The output projection as one weight for the fused head of
    /// [`crate::logprobs::head_label_log_probs`]: the embedding table when tied, else
    /// `lm_head`'s weight with its LoRA adapter or `modules_to_save` copy folded in; `None` when
    /// folding would change what [`Self::logits_from_hidden`] computes for `hidden` (a bias, or
    /// adapter dropout drawn while training), where callers use the logits instead.
    pub fn fused_head(&self, hidden: &Tensor<3>) -> Option<LmHead> {
        match &self.lm_head {
            None => Some(LmHead {
                weight: self.model.embedding_weight(),
                vocab_major: true,
            }),
            Some(head) if head.folds_exactly(hidden) => Some(LmHead {
                weight: head.effective_weight(),
                vocab_major: false,
            }),
            Some(_) => None,
        }
    }

    /// Logits `[batch, seq, vocab]`.
    pub fn forward(&self, batch: &TokenBatch) -> Tensor<3> {
        self.logits_from_hidden(self.model.forward(batch))
    }

    /// Logits `[batch, new, vocab]` of every new position, through the KV cache (see
    /// [`Decoder::forward_cached`]); equal to [`CausalLm::forward`] of the whole sequence at
    /// those positions.
    pub fn forward_cached(
        &self,
        input_ids: &[Vec<u32>],
        attention_mask: &[Vec<i64>],
        cache: &mut KvCache,
    ) -> Tensor<3> {
        self.logits_from_hidden(self.model.forward_cached(input_ids, attention_mask, cache))
    }

    /// Logits `[batch, vocab]` of the last new position only: what a decoding step needs
    /// (the output projection skips the prompt's other positions).
    pub fn last_logits_cached(
        &self,
        input_ids: &[Vec<u32>],
        attention_mask: &[Vec<i64>],
        cache: &mut KvCache,
    ) -> Tensor<2> {
        let hidden = self.model.forward_cached(input_ids, attention_mask, cache);
        let [batch, new, _] = hidden.dims();
        // [batch, 1, hidden] -> [batch, 1, vocab]
        let logits = self.logits_from_hidden(hidden.narrow(1, new - 1, 1));
        let vocab = logits.dims()[2];
        logits.reshape([batch, vocab])
    }

    /// Replaces every projection (`lm_head` included, when untied) by `f(hf_path,
    /// projection)`: how LoRA adapters are attached, merged and switched off.
    pub fn map_projections(self, f: &mut ProjectionFn) -> Result<Self> {
        let model = self.model.map_projections(f)?;
        let lm_head = match self.lm_head {
            Some(head) => Some(f("lm_head", head)?),
            None => None,
        };
        Ok(CausalLm {
            model,
            lm_head,
            config: self.config,
        })
    }

    /// Every projection with its HF path, in module order (`lm_head` last).
    pub fn projections(&self) -> Vec<(String, &Projection)> {
        let mut out = self.model.projections();
        if let Some(head) = &self.lm_head {
            out.push(("lm_head".to_string(), head));
        }
        out
    }

    /// Adds every tensor under its HF name (the base weights; adapters are saved apart).
    pub fn save_weights(&self, w: &mut WeightWriter) -> Result<()> {
        self.model.save(w)?;
        if let Some(head) = &self.lm_head {
            w.linear("lm_head", &head.base)?;
        }
        Ok(())
    }
}

/// `*ForSequenceClassification`: the decoder plus a bias-free `score` head read at the last
/// non-pad token of each row, as transformers does (reward models, `num_labels = 1`).
#[derive(Module, Debug)]
pub struct SequenceClassifier {
    model: Decoder,
    score: Projection,
    #[module(skip)]
    config: DecoderConfig,
}

impl SequenceClassifier {
    /// Builds the model from a checkpoint; the `score` head must be in it.
    pub fn load(r: &mut WeightReader, config: &DecoderConfig, device: &Device) -> Result<Self> {
        let model = Decoder::load(r, config, device)?;
        let score = Projection::new(r.linear(
            "score",
            config.hidden_size,
            config.num_labels,
            false,
            device,
        )?);
        Ok(SequenceClassifier {
            model,
            score,
            config: config.clone(),
        })
    }

    /// Builds the decoder from a checkpoint and a fresh `score` head with `num_labels`
    /// outputs, initialised like transformers (normal, std = `initializer_range`).
    pub fn load_with_new_head(
        r: &mut WeightReader,
        config: &DecoderConfig,
        num_labels: usize,
        initializer_range: f64,
        device: &Device,
    ) -> Result<Self> {
        let model = Decoder::load(r, config, device)?;
        let weight = Tensor::<2>::random(
            [config.hidden_size, num_labels],
            burn::tensor::Distribution::Normal(0.0, initializer_range),
            device,
        );
        let mut config = config.clone();
        config.head = super::config::HeadKind::SequenceClassification;
        config.num_labels = num_labels;
        Ok(SequenceClassifier {
            model,
            score: Projection::new(Linear {
                weight: Param::from_tensor(weight),
                bias: None,
            }),
            config,
        })
    }

    /// The resolved config this model was built from.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Sets `config.pad_token_id`: which token [`SequenceClassifier::forward`] skips to find
    /// each row's last token, and what `config.json` records (TRL sets it to the tokenizer's).
    pub fn set_pad_token_id(&mut self, pad_token_id: u32) {
        self.config.pad_token_id = Some(pad_token_id);
        self.config
            .raw
            .insert("pad_token_id".into(), pad_token_id.into());
    }

    /// Sets `config.eos_token_id` (TRL mirrors an `eos_token` override onto the model config).
    pub fn set_eos_token_id(&mut self, eos_token_id: u32) {
        self.config.eos_token_ids = vec![eos_token_id];
        self.config
            .raw
            .insert("eos_token_id".into(), eos_token_id.into());
    }

    /// Scores `[batch, num_labels]` at each row's last non-pad token.
    pub fn forward(&self, batch: &TokenBatch) -> Result<Tensor<2>> {
        let [rows, _] = batch.dims();
        let last = last_non_pad_positions(&batch.input_ids, self.config.pad_token_id)?;
        let hidden = self.model.forward(batch);
        let [_, _, width] = hidden.dims();
        let device = hidden.device();
        let index: Vec<i64> = last.iter().map(|&p| p as i64).collect();
        // [batch, 1, hidden]
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [rows]), &device)
            .reshape([rows, 1, 1])
            .expand([rows, 1, width]);
        let pooled = hidden.gather(1, index).reshape([rows, width]);
        Ok(self.score.forward(pooled))
    }

    /// Scores `[batch, seq, num_labels]` at every position, not only the last token: what a
    /// PPO value model reads, one value per response token (TRL's `get_reward` logits).
    pub fn forward_tokens(&self, batch: &TokenBatch) -> Tensor<3> {
        self.score.forward(self.model.forward(batch))
    }

    /// Replaces every projection (`score` included) by `f(hf_path, projection)`.
    pub fn map_projections(self, f: &mut ProjectionFn) -> Result<Self> {
        Ok(SequenceClassifier {
            model: self.model.map_projections(f)?,
            score: f("score", self.score)?,
            config: self.config,
        })
    }

    /// Every projection with its HF path, in module order (`score` last).
    pub fn projections(&self) -> Vec<(String, &Projection)> {
        let mut out = self.model.projections();
        out.push(("score".to_string(), &self.score));
        out
    }

    /// Adds every tensor under its HF name (the base weights; adapters are saved apart).
    pub fn save_weights(&self, w: &mut WeightWriter) -> Result<()> {
        self.model.save(w)?;
        w.linear("score", &self.score.base)
    }
}

/// transformers' rule: the rightmost token that is not `pad_token_id` (works for left and
/// right padding); without a pad token only a batch of one is allowed.
pub fn last_non_pad_positions(
    input_ids: &[Vec<u32>],
    pad_token_id: Option<u32>,
) -> Result<Vec<usize>> {
    match pad_token_id {
        Some(pad) => Ok(input_ids
            .iter()
            .map(|row| row.iter().rposition(|&id| id != pad).unwrap_or(0))
            .collect()),
        None if input_ids.len() <= 1 => Ok(input_ids
            .iter()
            .map(|row| row.len().saturating_sub(1))
            .collect()),
        None => Err(Error::Config {
            path: "config.json".into(),
            message:
                "pad_token_id is not set: a sequence-classification model cannot find the last \
                      token of a padded batch; set pad_token_id in config.json"
                    .into(),
        }),
    }
}
