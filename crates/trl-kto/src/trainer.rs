//! KTO as a [`Method`] of core's training loop.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use trl_core::Result;
use trl_core::completions::{CompletionBatch, PaddingOptions, TruncationMode, collate_completions};
use trl_core::host::scalar;
use trl_core::logprobs::model_label_log_probs;
use trl_core::model::{CausalLm, load_causal_lm, save_causal_lm};
use trl_core::tokenizer::Tokenizer;
use trl_core::train::{Method, PreparedStep, StepContext, StepMetrics};

use crate::config::KtoConfig;
use crate::data::KtoExample;
use crate::loss::kto_losses;

/// KTO on a causal LM, with a frozen reference model (or precomputed reference log-probs).
pub struct KtoMethod {
    pub config: KtoConfig,
    pub tokenizer: Tokenizer,
    pub pad_token_id: u32,
    /// `pub(crate)` so the parity tests can check it is unchanged by training.
    pub(crate) reference: Option<CausalLm>,
}

/// A collated KTO micro-batch with its reference log-probs.
pub struct KtoBatch {
    /// Each example's own completion.
    pub batch: CompletionBatch,
    /// Each example's mismatched completion (the KL baseline), when the loss uses it.
    pub kl_batch: Option<CompletionBatch>,
    /// Per row: desirable (`true`) or not.
    pub labels: Vec<bool>,
    /// Reference log-probs of `batch` `[rows]` and of `kl_batch` `[rows]`.
    pub ref_logps: Tensor<1>,
    pub ref_kl_logps: Option<Tensor<1>>,
}

impl KtoMethod {
    /// Builds the method around a frozen reference model (see `load_frozen_causal_lm`).
    pub fn new(
        config: KtoConfig,
        tokenizer: Tokenizer,
        reference: Option<CausalLm>,
    ) -> Result<Self> {
        let pad_token_id = trl_core::tokenizer::pad_token_id(&tokenizer, None)?;
        Ok(KtoMethod {
            config,
            tokenizer,
            pad_token_id,
            reference,
        })
    }

    fn options(&self) -> PaddingOptions {
        PaddingOptions {
            pad_token_id: self.pad_token_id,
            max_length: self.config.max_length,
            truncation_mode: TruncationMode::KeepStart,
            pad_to_multiple_of: self.config.pad_to_multiple_of,
        }
    }

    /// `(main batch, KL batch)`: each example's own completion, and its mismatched one.
    pub(crate) fn collate(
        &self,
        examples: &[&KtoExample],
    ) -> (CompletionBatch, Option<CompletionBatch>) {
        let rows: Vec<(&[u32], &[u32])> = examples
            .iter()
            .map(|e| (e.prompt_ids.as_slice(), e.completion_ids.as_slice()))
            .collect();
        let kl_rows: Option<Vec<(&[u32], &[u32])>> = examples
            .iter()
            .map(|e| {
                e.kl_completion_ids
                    .as_ref()
                    .map(|kl| (e.prompt_ids.as_slice(), kl.as_slice()))
            })
            .collect();
        let options = self.options();
        let kl = kl_rows
            .filter(|_| self.config.loss_type.uses_kl())
            .map(|rows| collate_completions(&rows, &options));
        (collate_completions(&rows, &options), kl)
    }

    /// Summed completion log-probs `[rows]` of `batch` under `model`.
    fn sequence_logps(model: &CausalLm, batch: &CompletionBatch) -> Tensor<1> {
        model_label_log_probs(model, &batch.tokens, &batch.labels).sequence_sums()
    }

    /// Reference `(completion logps [rows], KL logps [rows])`.
    fn reference_logps(
        &self,
        examples: &[&KtoExample],
        batch: &CompletionBatch,
        kl_batch: Option<&CompletionBatch>,
        device: &Device,
    ) -> (Tensor<1>, Option<Tensor<1>>) {
        let rows = examples.len();
        if examples.first().is_some_and(|e| e.ref_logps.is_some()) {
            let (main, kl): (Vec<f32>, Vec<f32>) = examples
                .iter()
                .map(|e| {
                    e.ref_logps
                        .map_or((0.0, 0.0), |(a, b)| (a as f32, b as f32))
                })
                .unzip();
            let tensor = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [rows]), device);
            return (tensor(main), kl_batch.map(|_| tensor(kl)));
        }
        match &self.reference {
            Some(reference) => (
                Self::sequence_logps(reference, batch).to_device(device),
                kl_batch.map(|kl| Self::sequence_logps(reference, kl).to_device(device)),
            ),
            None => (
                Tensor::zeros([rows], device),
                kl_batch.map(|_| Tensor::zeros([rows], device)),
            ),
        }
    }

    /// TRL's `precompute_ref_log_probs`: reference log-probs of every example, once.
    pub fn precompute_reference(
        &self,
        examples: &mut [KtoExample],
        batch_size: usize,
        device: &Device,
    ) -> Result<()> {
        for start in (0..examples.len()).step_by(batch_size.max(1)) {
            let end = (start + batch_size.max(1)).min(examples.len());
            let chunk: Vec<&KtoExample> = examples[start..end].iter().collect();
            let (batch, kl) = self.collate(&chunk);
            let (main, kl) = self.reference_logps(&chunk, &batch, kl.as_ref(), device);
            let main = trl_core::host::f32_values(main, "reference log-probs")?;
            let kl = match kl {
                Some(t) => Some(trl_core::host::f32_values(t, "reference KL log-probs")?),
                None => None,
            };
            for (i, example) in examples[start..end].iter_mut().enumerate() {
                example.ref_logps =
                    Some((main[i] as f64, kl.as_ref().map_or(0.0, |k| k[i] as f64)));
            }
        }
        Ok(())
    }

    /// Frees the reference model once its log-probs are precomputed.
    pub fn drop_reference(&mut self) {
        self.reference = None;
    }
}

fn select(values: &Tensor<1>, rows: &[usize]) -> Option<Tensor<1>> {
    if rows.is_empty() {
        return None;
    }
    let index: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    let index = Tensor::<1, Int>::from_data(TensorData::new(index, [rows.len()]), &values.device());
    Some(values.clone().select(0, index))
}

fn host_sum(t: &Option<Tensor<1>>) -> Result<f64> {
    t.as_ref().map_or(Ok(0.0), |t| {
        scalar(t.clone().without_autodiff().sum(), "a logged KTO sum")
    })
}

impl Method for KtoMethod {
    type Model = CausalLm;
    type Example = KtoExample;
    type Batch = KtoBatch;

    fn prepare(
        &mut self,
        _model: &CausalLm,
        micro_batches: &[Vec<&KtoExample>],
        ctx: &StepContext,
    ) -> Result<PreparedStep<KtoBatch>> {
        let batches = micro_batches
            .iter()
            .map(|examples| {
                let (batch, kl_batch) = self.collate(examples);
                let (ref_logps, ref_kl_logps) =
                    self.reference_logps(examples, &batch, kl_batch.as_ref(), ctx.device);
                KtoBatch {
                    labels: examples.iter().map(|e| e.label).collect(),
                    batch,
                    kl_batch,
                    ref_logps,
                    ref_kl_logps,
                }
            })
            .collect();
        Ok(PreparedStep::single(batches))
    }

    /// One item per micro-batch: TRL's KTO loss is the mean over the micro-batch's rows, and
    /// the HF Trainer divides it by the number of micro-batches in the update
    /// (`loss_is_scaled_for_ga = False`).
    fn items_in(&self, _batch: &KtoBatch) -> f64 {
        1.0
    }

    fn loss(
        &self,
        model: &CausalLm,
        kto_batch: &KtoBatch,
        items_in_step: f64,
    ) -> Result<(Tensor<1>, StepMetrics)> {
        let (batch, kl_batch) = (&kto_batch.batch, kto_batch.kl_batch.as_ref());
        let device = model.decoder().embedding_weight().device();
        // The KL completions are scored without autodiff, as TRL does under no_grad.
        let kl_logps =
            kl_batch.map(|kl| Self::sequence_logps(&model.valid(), kl).to_device(&device));
        let label_logps = model_label_log_probs(model, &batch.tokens, &batch.labels);
        let logps = label_logps.sequence_sums();
        let (ref_logps, ref_kl_logps) =
            (kto_batch.ref_logps.clone(), kto_batch.ref_kl_logps.clone());
        let kl_value = match (kl_logps, ref_kl_logps) {
            (Some(policy), Some(reference)) => {
                scalar((policy - reference).mean(), "the KTO KL estimate")?.max(0.0)
            }
            _ => 0.0,
        };
        let kl = Tensor::<1>::from_data(TensorData::new(vec![kl_value as f32], [1]), &device);
        let labels = &kto_batch.labels;
        let chosen_rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i]).collect();
        let rejected_rows: Vec<usize> = (0..labels.len()).filter(|&i| !labels[i]).collect();
        let logratios = logps.clone() - ref_logps;
        let (chosen_logratios, rejected_logratios) = (
            select(&logratios, &chosen_rows),
            select(&logratios, &rejected_rows),
        );
        let c = &self.config;
        let parts = kto_losses(
            c.loss_type,
            chosen_logratios.clone(),
            rejected_logratios.clone(),
            kl,
            c.beta,
            c.desirable_weight,
            c.undesirable_weight,
        );
        let loss = parts
            .into_iter()
            .map(|p| p.sum().reshape([1]))
            .reduce(|a, b| a + b)
            .unwrap_or_else(|| Tensor::zeros([1], &device))
            / (labels.len().max(1) as f64 * items_in_step);

        let mut metrics = StepMetrics {
            num_tokens: batch.num_tokens,
            ..StepMetrics::default()
        };
        metrics.push("kl", kl_value);
        let (entropy, counted) = label_logps.entropy_sum()?;
        metrics.push(
            "entropy",
            if counted > 0.0 {
                entropy / counted
            } else {
                0.0
            },
        );
        let (chosen_logits, chosen_n) = label_logps.mean_logits_sum_rows(&chosen_rows)?;
        if chosen_n > 0.0 {
            metrics.push("logits/chosen", chosen_logits / chosen_n);
        }
        let (rejected_logits, rejected_n) = label_logps.mean_logits_sum_rows(&rejected_rows)?;
        if rejected_n > 0.0 {
            metrics.push("logits/rejected", rejected_logits / rejected_n);
        }
        let (n_chosen, n_rejected) = (chosen_rows.len() as f64, rejected_rows.len() as f64);
        let chosen_reward = c.beta * host_sum(&chosen_logratios)? / n_chosen.max(1.0);
        let rejected_reward = c.beta * host_sum(&rejected_logratios)? / n_rejected.max(1.0);
        if n_chosen > 0.0 {
            metrics.push("rewards/chosen", chosen_reward);
            metrics.push(
                "logps/chosen",
                host_sum(&select(&logps, &chosen_rows))? / n_chosen,
            );
        }
        if n_rejected > 0.0 {
            metrics.push("rewards/rejected", rejected_reward);
            metrics.push(
                "logps/rejected",
                host_sum(&select(&logps, &rejected_rows))? / n_rejected,
            );
        }
        if n_chosen > 0.0 && n_rejected > 0.0 {
            metrics.push("rewards/margins", chosen_reward - rejected_reward);
        }
        Ok((loss, metrics))
    }

    fn supports_eval(&self) -> bool {
        true
    }

    /// TRL's eval `compute_loss`: the training forward and metrics, the loss the batch's mean.
    fn eval_batch(
        &mut self,
        model: &CausalLm,
        examples: &[&KtoExample],
        ctx: &trl_core::train::EvalContext,
    ) -> Result<(f64, StepMetrics)> {
        trl_core::train::eval::offline_eval_batch(self, model, examples, ctx)
    }

    fn save_model(&self, model: &CausalLm, dir: &Path) -> Result<()> {
        save_causal_lm(model, &self.tokenizer, dir)
    }

    fn load_model(&self, dir: &Path, device: &Device) -> Result<CausalLm> {
        load_causal_lm(dir, device)
    }
}
