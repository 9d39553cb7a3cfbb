//! Reward-model training as a [`Method`] of core's training loop.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use trl_core::Result;
use trl_core::model::{
    HeadKind, SequenceClassifier, WeightReader, WeightWriter, read_config, save_pretrained,
};
use trl_core::tokenizer::Tokenizer;
use trl_core::train::{Method, PreparedStep, StepContext, StepMetrics};

use crate::config::RewardConfig;
use crate::data::{PairBatch, RewardExample, collate};
use crate::loss::{PairScores, bradley_terry_loss, reward_stats};

/// Bradley–Terry training of a one-label sequence classifier on preference pairs.
pub struct RewardMethod {
    pub config: RewardConfig,
    pub tokenizer: Tokenizer,
    pub pad_token_id: u32,
    pad_to_multiple_of: Option<usize>,
}

impl RewardMethod {
    /// Builds the method. The tokenizer's pad token must already be the one TRL picks
    /// ([`resolve_pad_token`]); the model's `pad_token_id` must be set to it.
    pub fn new(
        config: RewardConfig,
        tokenizer: Tokenizer,
    ) -> std::result::Result<Self, crate::Error> {
        let pad_token_id = tokenizer.pad_token_id().ok_or_else(|| {
            crate::Error::Config("the tokenizer has no pad token; set pad_token".into())
        })?;
        let pad_to_multiple_of = config.pad_multiple()?;
        Ok(RewardMethod {
            config,
            tokenizer,
            pad_token_id,
            pad_to_multiple_of,
        })
    }

    /// The micro-batch as the model sees it.
    pub fn collate(&self, examples: &[&RewardExample]) -> PairBatch {
        collate(examples, self.pad_token_id, self.pad_to_multiple_of)
    }
}

/// TRL's pad token: `pad_token` if given, else the tokenizer's, else its EOS. Sets it on the
/// tokenizer (so the saved tokenizer has it) and returns its id.
pub fn resolve_pad_token(
    tokenizer: &mut Tokenizer,
    pad_token: Option<&str>,
) -> std::result::Result<u32, crate::Error> {
    trl_core::tokenizer::set_pad_token(tokenizer, pad_token)
        .map_err(|e| crate::Error::Config(e.to_string()))
}

fn host(tensor: Tensor<1>) -> Result<Vec<f32>> {
    trl_core::host::f32_values(tensor.without_autodiff(), "rewards")
}

impl Method for RewardMethod {
    type Model = SequenceClassifier;
    type Example = RewardExample;
    type Batch = PairBatch;

    fn prepare(
        &mut self,
        _model: &SequenceClassifier,
        micro_batches: &[Vec<&RewardExample>],
        _ctx: &StepContext,
    ) -> Result<PreparedStep<PairBatch>> {
        let batches = micro_batches.iter().map(|e| self.collate(e)).collect();
        Ok(PreparedStep::single(batches))
    }

    /// One item per micro-batch: TRL's loss is a mean over the micro-batch's pairs, and the
    /// HF Trainer divides it by the number of micro-batches in the step
    /// (`loss_is_scaled_for_ga` is false for the reward trainer).
    fn items_in(&self, _batch: &PairBatch) -> f64 {
        1.0
    }

    fn loss(
        &self,
        model: &SequenceClassifier,
        batch: &PairBatch,
        items_in_step: f64,
    ) -> Result<(Tensor<1>, StepMetrics)> {
        let pairs = batch.pairs;
        // [2 * pairs, 1] -> [2 * pairs]: chosen rows first, then rejected
        let rewards = model.forward(&batch.tokens)?.reshape([2 * pairs]);
        let device = rewards.device();
        let scores = PairScores {
            chosen: rewards.clone().narrow(0, 0, pairs),
            rejected: rewards.narrow(0, pairs, pairs),
            margin: batch
                .margin
                .as_ref()
                .map(|m| Tensor::from_data(TensorData::new(m.clone(), [pairs]), &device)),
        };
        let loss =
            bradley_terry_loss(&scores, self.config.center_rewards_coefficient) / items_in_step;

        let stats = reward_stats(&host(scores.chosen)?, &host(scores.rejected)?);
        let mut metrics = StepMetrics {
            num_tokens: batch.num_tokens,
            ..StepMetrics::default()
        };
        metrics.push("min_reward", stats.min_reward);
        metrics.push("mean_reward", stats.mean_reward);
        metrics.push("max_reward", stats.max_reward);
        metrics.push("accuracy", stats.accuracy);
        metrics.push("margin", stats.margin);
        Ok((loss, metrics))
    }

    fn supports_eval(&self) -> bool {
        true
    }

    /// TRL's eval `compute_loss`: the training forward and metrics, the loss the batch's mean.
    fn eval_batch(
        &mut self,
        model: &SequenceClassifier,
        examples: &[&RewardExample],
        ctx: &trl_core::train::EvalContext,
    ) -> Result<(f64, StepMetrics)> {
        trl_core::train::eval::offline_eval_batch(self, model, examples, ctx)
    }

    fn save_model(&self, model: &SequenceClassifier, dir: &Path) -> Result<()> {
        let mut writer = WeightWriter::default();
        model.save_weights(&mut writer)?;
        save_pretrained(dir, model.config(), &writer)?;
        self.tokenizer.save(dir)
    }

    fn load_model(&self, dir: &Path, device: &Device) -> Result<SequenceClassifier> {
        let config = read_config(dir)?;
        if config.head != HeadKind::SequenceClassification {
            return Err(trl_core::Error::Config {
                path: dir.join("config.json"),
                message: "expected a *ForSequenceClassification checkpoint".into(),
            });
        }
        let mut reader = WeightReader::open(dir)?;
        SequenceClassifier::load(&mut reader, &config, device)
    }
}
