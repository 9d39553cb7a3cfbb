//! DPO as a [`Method`] of core's training loop: one concatenated forward per model, the
//! reference model without autodiff (or its log-probs precomputed once), TRL's metrics.

use std::path::Path;

use burn::tensor::activation::log_sigmoid;
use burn::tensor::{Device, Int, Tensor, TensorData};
use trl_core::host::{f32_values, scalar};
use trl_core::logprobs::{LabelLogProbs, head_label_log_probs};
use trl_core::model::{CausalLm, load_causal_lm, save_causal_lm};
use trl_core::tokenizer::Tokenizer;
use trl_core::train::ref_sync::RefSync;
use trl_core::train::{Method, PreparedStep, StepContext, StepMetrics};
use trl_core::{Error, Result};

use crate::config::DpoConfig;
use trl_core::completions::{PaddingOptions, flatten_padding};

use crate::data::{DpoExample, PairBatch, collate};
use crate::loss::{
    DpoLossType, PairLogps, ld_token_weights, logged_rewards, orpo_log_odds, pair_loss, wpo_weights,
};

/// DPO and its variants on a causal LM.
pub struct DpoMethod {
    pub config: DpoConfig,
    pub tokenizer: Tokenizer,
    pub pad_token_id: u32,
    losses: Vec<(DpoLossType, f64)>,
    /// The frozen (`no_grad`) reference; `None` when every variant is
    /// reference-free or the log-probs were precomputed. TR-DPO blends the policy into it.
    reference: Option<CausalLm>,
    /// TR-DPO (`sync_ref_model`): how the reference follows the policy.
    ref_sync: Option<RefSync>,
}

/// A collated DPO micro-batch with its reference log-probs.
pub struct DpoBatch {
    /// Rows `0..pairs` chosen, `pairs..2 * pairs` rejected.
    pub pairs: PairBatch,
    /// Reference sequence log-probs `[2 * pairs]` (zeros when no variant reads them).
    pub reference: Tensor<1>,
}

impl DpoMethod {
    /// Builds the method around a frozen reference model (see `load_frozen_causal_lm`).
    pub fn new(
        config: DpoConfig,
        tokenizer: Tokenizer,
        reference: Option<CausalLm>,
    ) -> Result<Self> {
        let losses = config.weighted_losses().map_err(|message| Error::Config {
            path: "dpo config".into(),
            message,
        })?;
        let pad_token_id =
            trl_core::tokenizer::pad_token_id(&tokenizer, config.pad_token.as_deref())?;
        let ref_sync = RefSync::from_config(
            config.sync_ref_model,
            config.ref_model_mixup_alpha,
            config.ref_model_sync_steps,
        );
        Ok(DpoMethod {
            config,
            tokenizer,
            pad_token_id,
            losses,
            reference,
            ref_sync,
        })
    }

    /// Frees the reference model once its log-probs are precomputed.
    pub fn drop_reference(&mut self) {
        self.reference = None;
    }

    /// Whether any configured variant reads reference log-probs.
    pub fn needs_reference(config: &DpoConfig) -> bool {
        config
            .loss_type
            .to_vec()
            .iter()
            .any(|k| k.needs_reference())
    }

    fn collate(&self, examples: &[&DpoExample]) -> PairBatch {
        let options = PaddingOptions {
            pad_token_id: self.pad_token_id,
            max_length: self.config.max_length,
            truncation_mode: self.config.truncation_mode,
            pad_to_multiple_of: self.config.pad_to_multiple_of,
        };
        collate(examples, &options)
    }

    /// Sequence log-probs `[2 * pairs]` of the completions, with LD-DPO's length weighting when
    /// `ld_alpha` is set.
    fn sequence_logps(&self, label_logps: &LabelLogProbs, batch: &PairBatch) -> Tensor<1> {
        let Some(alpha) = self.config.ld_alpha else {
            return label_logps.sequence_sums();
        };
        let [rows, width] = label_logps.logps.dims();
        let shift_mask: Vec<Vec<i64>> = batch
            .batch
            .completion_mask
            .iter()
            // An empty row (refused at preparation) shifts to an empty row, not a panic.
            .map(|r| r.get(1..).unwrap_or_default().to_vec())
            .collect();
        let weights = ld_token_weights(&shift_mask, batch.pairs, alpha);
        let weights = Tensor::<2>::from_data(
            TensorData::new(weights, [rows, width]),
            &label_logps.logps.device(),
        );
        (label_logps.logps.clone() * weights)
            .sum_dim(1)
            .reshape([rows])
    }

    /// Final hidden states `[rows, seq, hidden]` of the padded batch (the LM head runs fused
    /// with the log-probs); with `padding_free` the model runs on the real tokens only (one
    /// row, positions restarting per sequence) and the states are gathered back into the
    /// padded layout.
    fn hidden(&self, model: &CausalLm, batch: &PairBatch) -> Tensor<3> {
        let tokens = &batch.batch.tokens;
        if !self.config.padding_free {
            return model.decoder().forward(tokens);
        }
        let [rows, width] = tokens.dims();
        let (flat, index) = flatten_padding(tokens);
        // [1, total, hidden] -> [total, hidden]
        let hidden = model.decoder().forward(&flat);
        let [_, total, size] = hidden.dims();
        let device = hidden.device();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [rows * width]), &device);
        hidden
            .reshape([total, size])
            .select(0, index)
            .reshape([rows, width, size])
    }

    /// Reference sequence log-probs `[2 * pairs]` (zeros when no variant needs them).
    fn reference_logps(
        &self,
        examples: &[&DpoExample],
        batch: &PairBatch,
        device: &Device,
    ) -> Result<Tensor<1>> {
        let rows = 2 * batch.pairs;
        if let Some(first) = examples.first()
            && first.ref_logps.is_some()
        {
            let mut values = vec![0f32; rows];
            for (i, example) in examples.iter().enumerate() {
                let (chosen, rejected) = example.ref_logps.unwrap_or_default();
                values[i] = chosen as f32;
                values[i + batch.pairs] = rejected as f32;
            }
            return Ok(Tensor::from_data(TensorData::new(values, [rows]), device));
        }
        match self.reference.as_ref() {
            Some(reference) => {
                let hidden = self.hidden(reference, batch);
                let label_logps = head_label_log_probs(reference, hidden, &batch.batch.labels, 1.0);
                Ok(self.sequence_logps(&label_logps, batch).to_device(device))
            }
            None => Ok(Tensor::zeros([rows], device)),
        }
    }

    /// Computes `(chosen, rejected)` reference log-probs for every example, `batch_size` pairs
    /// at a time (TRL's `precompute_ref_log_probs`).
    pub fn precompute_reference(
        &self,
        examples: &mut [DpoExample],
        batch_size: usize,
        device: &Device,
    ) -> Result<()> {
        for start in (0..examples.len()).step_by(batch_size.max(1)) {
            let end = (start + batch_size.max(1)).min(examples.len());
            let chunk: Vec<&DpoExample> = examples[start..end].iter().collect();
            let batch = self.collate(&chunk);
            let logps = trl_core::host::f32_values(
                self.reference_logps(&chunk, &batch, device)?,
                "reference log-probs",
            )?;
            for (i, example) in examples[start..end].iter_mut().enumerate() {
                example.ref_logps = Some((logps[i] as f64, logps[i + batch.pairs] as f64));
            }
        }
        Ok(())
    }
}

fn mean(values: &[f32]) -> f64 {
    values.iter().map(|&v| v as f64).sum::<f64>() / values.len().max(1) as f64
}

impl Method for DpoMethod {
    type Model = CausalLm;
    type Example = DpoExample;
    type Batch = DpoBatch;

    fn prepare(
        &mut self,
        _model: &CausalLm,
        micro_batches: &[Vec<&DpoExample>],
        ctx: &StepContext,
    ) -> Result<PreparedStep<DpoBatch>> {
        let batches = micro_batches
            .iter()
            .map(|examples| {
                let pairs = self.collate(examples);
                let reference = self.reference_logps(examples, &pairs, ctx.device)?;
                Ok(DpoBatch { pairs, reference })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(PreparedStep::single(batches))
    }

    /// One item per micro-batch: TRL's DPO loss is the mean over the micro-batch's pairs, and
    /// the HF Trainer divides it by the number of micro-batches in the update
    /// (`loss_is_scaled_for_ga = False`), so a short micro-batch weighs as much as a full one.
    fn items_in(&self, _batch: &DpoBatch) -> f64 {
        1.0
    }

    fn loss(
        &self,
        model: &CausalLm,
        dpo_batch: &DpoBatch,
        items_in_step: f64,
    ) -> Result<(Tensor<1>, StepMetrics)> {
        let batch = &dpo_batch.pairs;
        let pairs = batch.pairs;
        let device = model.decoder().embedding_weight().device();
        // [2 * pairs, seq, hidden]: chosen rows first, then rejected
        let hidden = self.hidden(model, batch);
        let hidden_for_orpo = hidden.clone();
        let label_logps = head_label_log_probs(model, hidden, &batch.batch.labels, 1.0);
        let logps = self.sequence_logps(&label_logps, batch);
        let reference = dpo_batch.reference.clone();
        let tokens = batch
            .batch
            .completion_mask
            .iter()
            .map(|row| (row.iter().sum::<i64>() as f32).max(1.0))
            .collect::<Vec<f32>>();
        let tokens = Tensor::<1>::from_data(TensorData::new(tokens, [2 * pairs]), &device);
        let chosen_token_logps = label_logps.logps.clone().narrow(0, 0, pairs);
        let chosen_token_count = scalar(
            label_logps.token_counts().narrow(0, 0, pairs).sum(),
            "the chosen rows' token count",
        )?
        .max(1.0);
        // ORPO's NLL covers the prompt too: score every attended token of the chosen rows.
        let chosen_full_nll = if self.losses.iter().any(|(k, _)| *k == DpoLossType::Orpo) {
            let full_labels: Vec<Vec<i64>> = batch.batch.tokens.input_ids[..pairs]
                .iter()
                .zip(&batch.batch.tokens.attention_mask)
                .map(|(ids, mask)| {
                    ids.iter()
                        .zip(mask)
                        .map(|(&id, &m)| if m == 1 { id as i64 } else { -100 })
                        .collect()
                })
                .collect();
            let chosen_hidden = hidden_for_orpo.clone().narrow(0, 0, pairs);
            let full = head_label_log_probs(model, chosen_hidden, &full_labels, 1.0);
            full.nll_sum().reshape([1]) / full.num_label_tokens()?.max(1.0)
        } else {
            Tensor::zeros([1], &device)
        };
        let inputs = PairLogps {
            chosen_full_nll,
            chosen: logps.clone().narrow(0, 0, pairs),
            rejected: logps.clone().narrow(0, pairs, pairs),
            ref_chosen: reference.clone().narrow(0, 0, pairs),
            ref_rejected: reference.clone().narrow(0, pairs, pairs),
            chosen_tokens: tokens.clone().narrow(0, 0, pairs),
            rejected_tokens: tokens.narrow(0, pairs, pairs),
            sft_nll: chosen_token_logps.sum().neg().reshape([1]) / chosen_token_count,
        };
        let params = self.config.loss_params();
        let weights = self.config.use_weighting.then(|| {
            let mask = label_logps.mask.clone().without_autodiff();
            let token_logps = label_logps.logps.clone().without_autodiff();
            wpo_weights(token_logps, label_logps.log_sum_sq_probs(), mask).to_device(&device)
        });
        let mut loss = Tensor::<1>::zeros([1], &device);
        for &(kind, weight) in &self.losses {
            let mut per_pair = pair_loss(kind, &inputs, &params);
            if let Some(w) = &weights {
                per_pair = per_pair * w.clone();
            }
            loss = loss + per_pair.mean().reshape([1]) * (weight / items_in_step);
        }

        let mut metrics = StepMetrics {
            num_tokens: batch.batch.num_tokens,
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
        let host = |t: Tensor<1>| f32_values(t.without_autodiff(), "the logged rewards");
        // SimPO/ORPO runs (optionally with `sft`, CPOTrainer's cpo_alpha term) log like TRL's
        // CPOTrainer/ORPOTrainer; anything with a DPO loss logs like DPOTrainer.
        let kinds = || self.losses.iter().map(|(kind, _)| *kind);
        let reference_free = kinds().any(DpoLossType::is_reference_free_objective)
            && kinds().all(|k| k.is_reference_free_objective() || k == DpoLossType::Sft);
        let logged = logged_rewards(&inputs, self.config.beta, reference_free);
        let chosen_rewards: Vec<f32> = host(logged.chosen)?;
        let rejected_rewards: Vec<f32> = host(logged.rejected)?;
        let (chosen_rows, rejected_rows): (Vec<usize>, Vec<usize>) =
            ((0..pairs).collect(), (pairs..2 * pairs).collect());
        let (chosen_logits, chosen_n) = label_logps.mean_logits_sum_rows(&chosen_rows)?;
        let (rejected_logits, rejected_n) = label_logps.mean_logits_sum_rows(&rejected_rows)?;
        metrics.push(
            "logits/chosen",
            if chosen_n > 0.0 {
                chosen_logits / chosen_n
            } else {
                0.0
            },
        );
        metrics.push(
            "logits/rejected",
            if rejected_n > 0.0 {
                rejected_logits / rejected_n
            } else {
                0.0
            },
        );
        let (correct, total) = label_logps.accuracy_counts_rows(&chosen_rows)?;
        metrics.push(
            "mean_token_accuracy",
            if total > 0.0 { correct / total } else { 0.0 },
        );
        metrics.push("rewards/chosen", mean(&chosen_rewards));
        metrics.push("rewards/rejected", mean(&rejected_rewards));
        let wins: Vec<f32> = chosen_rewards
            .iter()
            .zip(&rejected_rewards)
            .map(|(c, r)| (c > r) as u8 as f32)
            .collect();
        metrics.push("rewards/accuracies", mean(&wins));
        let margins: Vec<f32> = chosen_rewards
            .iter()
            .zip(&rejected_rewards)
            .map(|(c, r)| c - r)
            .collect();
        metrics.push("rewards/margins", mean(&margins));
        metrics.push("logps/chosen", mean(&host(logged.chosen_logps)?));
        metrics.push("logps/rejected", mean(&host(logged.rejected_logps)?));
        if reference_free {
            // CPOTrainer's `nll_loss` is the chosen completions' NLL, ORPOTrainer's covers the
            // prompt too; ORPOTrainer adds its odds-ratio terms.
            let orpo = self.losses.iter().any(|(k, _)| *k == DpoLossType::Orpo);
            let nll = if orpo {
                &inputs.chosen_full_nll
            } else {
                &inputs.sft_nll
            };
            metrics.push("nll_loss", mean(&host(nll.clone())?));
            if orpo {
                let log_odds = orpo_log_odds(&inputs);
                metrics.push(
                    "log_odds_ratio",
                    mean(&host(log_sigmoid(log_odds.clone()))?),
                );
                metrics.push("log_odds_chosen", mean(&host(log_odds)?));
            }
        }
        Ok((loss.reshape([1]), metrics))
    }

    fn supports_eval(&self) -> bool {
        true
    }

    /// TRL's eval `compute_loss`: the training forward and metrics, the loss the batch's mean.
    fn eval_batch(
        &mut self,
        model: &CausalLm,
        examples: &[&DpoExample],
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

    fn after_step(&mut self, model: &CausalLm, step: u64) -> Result<()> {
        match &self.ref_sync {
            Some(sync) => sync.after_step(&mut self.reference, model, step),
            None => Ok(()),
        }
    }

    /// TR-DPO's reference changes during training: each checkpoint keeps it.
    fn save_state(&self, dir: &Path) -> Result<()> {
        match &self.ref_sync {
            Some(sync) => sync.save(self.reference.as_ref(), &self.tokenizer, dir),
            None => Ok(()),
        }
    }

    fn load_state(&mut self, dir: &Path, device: &Device) -> Result<()> {
        match &self.ref_sync {
            Some(sync) => sync.load(&mut self.reference, dir, device),
            None => Ok(()),
        }
    }
}
