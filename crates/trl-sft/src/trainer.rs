//! SFT as a [`Method`] of core's training loop.

use std::path::Path;

use burn::tensor::{Device, Tensor};
use trl_core::Result;
use trl_core::logprobs::model_label_log_probs;
use trl_core::model::{CausalLm, load_causal_lm, save_causal_lm};
use trl_core::tokenizer::Tokenizer;
use trl_core::train::eval::offline_eval_batch;
use trl_core::train::{EvalContext, Method, PreparedStep, StepContext, StepMetrics};

use crate::config::SftConfig;
use crate::data::{SftBatch, SftExample, collate};
use crate::loss::sft_loss;

/// SFT on a causal LM: token NLL (or DFT) on the label tokens, with TRL's metrics.
pub struct SftMethod {
    pub config: SftConfig,
    pub tokenizer: Tokenizer,
    pub pad_token_id: u32,
    /// Padding-free batches: explicit `padding_free`, or packing (TRL forces it with bfd).
    pub padding_free: bool,
}

impl SftMethod {
    /// Builds the method; the pad token is `pad_token`, else the tokenizer's, else EOS (TRL).
    pub fn new(config: SftConfig, tokenizer: Tokenizer) -> std::result::Result<Self, String> {
        let pad = trl_core::tokenizer::pad_token_id(&tokenizer, config.pad_token.as_deref())
            .map_err(|e| e.to_string())?;
        let padding_free = config.padding_free || config.packing;
        Ok(SftMethod {
            config,
            tokenizer,
            pad_token_id: pad,
            padding_free,
        })
    }
}

impl Method for SftMethod {
    type Model = CausalLm;
    type Example = SftExample;
    type Batch = SftBatch;

    fn prepare(
        &mut self,
        _model: &CausalLm,
        micro_batches: &[Vec<&SftExample>],
        _ctx: &StepContext,
    ) -> Result<PreparedStep<SftBatch>> {
        let batches = micro_batches
            .iter()
            .map(|examples| {
                collate(
                    examples,
                    self.pad_token_id,
                    self.padding_free,
                    self.config.pad_to_multiple_of,
                )
            })
            .collect();
        Ok(PreparedStep::single(batches))
    }

    fn items_in(&self, batch: &SftBatch) -> f64 {
        // transformers' num_items_in_batch: label tokens after the shift (and, padding-free,
        // after masking each sample's first token).
        batch
            .labels
            .iter()
            .map(|row| row.iter().skip(1).filter(|&&l| l != -100).count() as f64)
            .sum()
    }

    fn loss(
        &self,
        model: &CausalLm,
        batch: &SftBatch,
        items_in_step: f64,
    ) -> Result<(Tensor<1>, StepMetrics)> {
        let label_logps = model_label_log_probs(model, &batch.tokens, &batch.labels);
        let loss = sft_loss(&label_logps, self.config.loss_type, items_in_step);
        let mut metrics = StepMetrics {
            num_tokens: batch.num_tokens,
            ..StepMetrics::default()
        };
        let (entropy, counted) = label_logps.entropy_sum()?;
        metrics.push(
            "entropy",
            if counted > 0.0 {
                entropy / counted
            } else {
                0.0
            },
        );
        let (correct, total) = label_logps.accuracy_counts()?;
        metrics.push(
            "mean_token_accuracy",
            if total > 0.0 { correct / total } else { 0.0 },
        );
        Ok((loss, metrics))
    }

    fn supports_eval(&self) -> bool {
        true
    }

    /// TRL's eval `compute_loss`: the training forward and metrics, the loss normalised by
    /// the batch's own label tokens.
    fn eval_batch(
        &mut self,
        model: &CausalLm,
        examples: &[&SftExample],
        ctx: &EvalContext,
    ) -> Result<(f64, StepMetrics)> {
        offline_eval_batch(self, model, examples, ctx)
    }

    fn save_model(&self, model: &CausalLm, dir: &Path) -> Result<()> {
        save_causal_lm(model, &self.tokenizer, dir)
    }

    fn load_model(&self, dir: &Path, device: &Device) -> Result<CausalLm> {
        load_causal_lm(dir, device)
    }
}
