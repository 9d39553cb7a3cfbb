//! `PPOConfig`'s PPO-specific keys with TRL 1.12's names and defaults (TRL removed PPO after
//! 1.12; `trl/experimental/ppo/ppo_config.py`), plus the batch-size arithmetic `PPOTrainer`
//! derives from them and `TrainingArguments` (`ppo_trainer.py` l.454-479, one process).

use serde::{Deserialize, Serialize};
use trl_core::train::args_check::check::{
    at_least_one, finite, non_negative, option_error, positive,
};

/// Which KL estimator shapes the per-token reward (<http://joschu.net/blog/kl-approx.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KlEstimator {
    /// `log p - log p_ref` (unbiased).
    K1,
    /// `exp(log p_ref - log p) - 1 - (log p_ref - log p)` (unbiased, lower variance).
    K3,
}

/// `stop_token` accepts only `"eos"` (the tokenizer's EOS), as TRL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopToken {
    Eos,
}

/// The keys of TRL 1.12's `PPOConfig` beyond `TrainingArguments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PpoConfig {
    pub dataset_num_proc: Option<usize>,
    /// Mini-batches one rollout batch is split into per PPO epoch.
    pub num_mini_batches: usize,
    /// Episodes (prompts) of the run; `num_train_epochs * rows` when unset.
    pub total_episodes: Option<usize>,
    /// Rows per no-grad forward in the rollout phase.
    pub local_rollout_forward_batch_size: usize,
    /// Sample completions printed this many times over the run (0: never).
    pub num_sample_generations: usize,
    /// Tokens generated per response.
    pub response_length: usize,
    pub stop_token: Option<StopToken>,
    pub stop_token_id: Option<u32>,
    pub temperature: f64,
    /// Subtracted from the score of a response without an EOS token.
    pub missing_eos_penalty: Option<f64>,
    /// The reference model (TRL: `sft_model_path`); the policy's start when unset.
    pub sft_model_path: Option<String>,
    /// The frozen reward model (a sequence classifier, e.g. from `trl reward`).
    pub reward_model_path: Option<String>,
    /// The value model's start (a sequence classifier); the reward model when unset.
    pub value_model_path: Option<String>,
    pub num_ppo_epochs: usize,
    pub whiten_rewards: bool,
    pub kl_coef: f64,
    pub kl_estimator: KlEstimator,
    pub cliprange: f64,
    pub vf_coef: f64,
    pub cliprange_value: f64,
    pub gamma: f64,
    pub lam: f64,
    /// Accepted for TRL compatibility (DeepSpeed ZeRO-3 only); no effect here.
    pub ds3_gather_for_generation: bool,
}

impl Default for PpoConfig {
    fn default() -> Self {
        PpoConfig {
            dataset_num_proc: None,
            num_mini_batches: 1,
            total_episodes: None,
            local_rollout_forward_batch_size: 64,
            num_sample_generations: 10,
            response_length: 53,
            stop_token: None,
            stop_token_id: None,
            temperature: 0.7,
            missing_eos_penalty: None,
            sft_model_path: None,
            reward_model_path: None,
            value_model_path: None,
            num_ppo_epochs: 4,
            whiten_rewards: false,
            kl_coef: 0.05,
            kl_estimator: KlEstimator::K1,
            cliprange: 0.2,
            vf_coef: 0.1,
            cliprange_value: 0.2,
            gamma: 1.0,
            lam: 0.95,
            ds3_gather_for_generation: true,
        }
    }
}

/// The batch sizes `PPOTrainer.__init__` derives; `local_*` sizes are one process's share,
/// the global rollout batch is `local_batch_size * processes` (TRL's `batch_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSizes {
    /// Prompts per rollout and process: `per_device_train_batch_size *
    /// gradient_accumulation_steps`.
    pub local_batch_size: usize,
    /// Rows per optimizer update: `local_batch_size / num_mini_batches`.
    pub mini_batch_size: usize,
    /// Rows per forward/backward: `per_device_train_batch_size`.
    pub micro_batch_size: usize,
    /// Episodes of the run.
    pub total_episodes: usize,
    /// Rollout batches (= optimizer-schedule steps): `ceil(total_episodes / batch_size)`.
    pub num_total_batches: usize,
    /// Rollout batches in one pass over the data (`rows / batch_size`, the dataloader
    /// drops the rest): the last one of each pass trains differently (see `PpoMethod`).
    pub batches_per_pass: usize,
    /// Data-parallel processes sharing every rollout batch (TRL's `world_size`).
    pub processes: usize,
}

impl BatchSizes {
    /// Prompts per rollout over every process (TRL's `batch_size`).
    pub fn batch_size(&self) -> usize {
        self.local_batch_size * self.processes
    }
}

impl PpoConfig {
    /// Range checks on the keys, each error naming its option.
    pub fn validate(&self) -> trl_core::Result<()> {
        at_least_one("num_mini_batches", Some(self.num_mini_batches))?;
        at_least_one("num_ppo_epochs", Some(self.num_ppo_epochs))?;
        at_least_one("response_length", Some(self.response_length))?;
        at_least_one("total_episodes", self.total_episodes)?;
        at_least_one(
            "local_rollout_forward_batch_size",
            Some(self.local_rollout_forward_batch_size),
        )?;
        at_least_one("dataset_num_proc", self.dataset_num_proc)?;
        positive("temperature", self.temperature)?;
        finite("kl_coef", self.kl_coef)?;
        non_negative("cliprange", self.cliprange)?;
        non_negative("cliprange_value", self.cliprange_value)?;
        finite("vf_coef", self.vf_coef)?;
        non_negative("gamma", self.gamma)?;
        non_negative("lam", self.lam)?;
        if let Some(penalty) = self.missing_eos_penalty {
            positive("missing_eos_penalty", penalty)?;
        }
        if self.stop_token.is_some() && self.stop_token_id.is_some() {
            return Err(option_error(
                "stop_token",
                "cannot be set together with --stop_token_id (TRL: mutually exclusive)".into(),
            ));
        }
        Ok(())
    }

    /// TRL's batch-size arithmetic for `rows` training prompts shared by `processes`
    /// data-parallel processes (1 without mpirun).
    pub fn batch_sizes(
        &self,
        per_device_train_batch_size: usize,
        gradient_accumulation_steps: usize,
        num_train_epochs: f64,
        rows: usize,
        processes: usize,
    ) -> trl_core::Result<BatchSizes> {
        let processes = processes.max(1);
        let local_batch_size = per_device_train_batch_size * gradient_accumulation_steps;
        if local_batch_size == 0 || !local_batch_size.is_multiple_of(self.num_mini_batches) {
            return Err(option_error(
                "num_mini_batches",
                format!(
                    "`batch_size` ({local_batch_size} = per_device_train_batch_size * \
                     gradient_accumulation_steps) must be a multiple of `num_mini_batches` ({})",
                    self.num_mini_batches
                ),
            ));
        }
        let mini_batch_size = local_batch_size / self.num_mini_batches;
        if !mini_batch_size.is_multiple_of(per_device_train_batch_size) {
            return Err(option_error(
                "num_mini_batches",
                format!(
                    "a mini-batch ({mini_batch_size} rows) must hold whole micro-batches of \
                     per_device_train_batch_size {per_device_train_batch_size}"
                ),
            ));
        }
        if self.whiten_rewards && mini_batch_size < 8 {
            return Err(option_error(
                "whiten_rewards",
                format!(
                    "a mini-batch of {mini_batch_size} rows is too small for whitening (TRL needs >= 8)"
                ),
            ));
        }
        let batch_size = local_batch_size * processes;
        if rows < batch_size {
            return Err(option_error(
                "per_device_train_batch_size",
                format!(
                    "a rollout batch needs {batch_size} prompts ({local_batch_size} per process x \
                     {processes} processes) but the dataset has {rows} (TRL's dataloader drops \
                     incomplete batches)"
                ),
            ));
        }
        let total_episodes = self
            .total_episodes
            .unwrap_or((num_train_epochs * rows as f64) as usize);
        Ok(BatchSizes {
            local_batch_size,
            mini_batch_size,
            micro_batch_size: per_device_train_batch_size,
            total_episodes,
            num_total_batches: total_episodes.div_ceil(batch_size).max(1),
            batches_per_pass: rows / batch_size,
            processes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_trl_1_12s() {
        let c = PpoConfig::default();
        assert_eq!(
            (c.num_ppo_epochs, c.num_mini_batches, c.response_length),
            (4, 1, 53)
        );
        assert_eq!((c.temperature, c.kl_coef, c.vf_coef), (0.7, 0.05, 0.1));
        assert_eq!(
            (c.cliprange, c.cliprange_value, c.gamma, c.lam),
            (0.2, 0.2, 1.0, 0.95)
        );
        assert_eq!(c.kl_estimator, KlEstimator::K1);
        assert_eq!(c.local_rollout_forward_batch_size, 64);
    }

    #[test]
    fn batch_sizes_follow_trl() {
        let c = PpoConfig {
            num_mini_batches: 2,
            total_episodes: Some(10),
            ..PpoConfig::default()
        };
        let b = c.batch_sizes(2, 2, 1.0, 8, 1).unwrap();
        assert_eq!(
            (b.local_batch_size, b.mini_batch_size, b.num_total_batches),
            (4, 2, 3)
        );
        let b = PpoConfig::default().batch_sizes(2, 1, 3.0, 8, 1).unwrap();
        assert_eq!((b.total_episodes, b.num_total_batches), (24, 12));
        let err = c.batch_sizes(3, 1, 1.0, 8, 1).unwrap_err().to_string();
        assert!(err.contains("num_mini_batches"), "{err}");
        // two processes: a global batch of 8, so 10 episodes take 2 rollout batches
        let b = c.batch_sizes(2, 2, 1.0, 8, 2).unwrap();
        assert_eq!(
            (
                b.local_batch_size,
                b.batch_size(),
                b.num_total_batches,
                b.batches_per_pass
            ),
            (4, 8, 2, 1)
        );
        let err = c.batch_sizes(2, 2, 1.0, 6, 2).unwrap_err().to_string();
        assert!(err.contains("per_device_train_batch_size") && err.contains("2 processes"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let err =
            serde_json::from_value::<PpoConfig>(serde_json::json!({"kl_coeff": 1})).unwrap_err();
        assert!(err.to_string().contains("kl_coeff"), "{err}");
        let err = serde_json::from_value::<PpoConfig>(serde_json::json!({"kl_estimator": "k2"}))
            .unwrap_err();
        assert!(err.to_string().contains("k2"), "{err}");
        let both = PpoConfig {
            stop_token: Some(StopToken::Eos),
            stop_token_id: Some(3),
            ..PpoConfig::default()
        };
        assert!(
            both.validate()
                .unwrap_err()
                .to_string()
                .contains("stop_token")
        );
    }
}
