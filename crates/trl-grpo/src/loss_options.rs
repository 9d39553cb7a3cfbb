//! `GRPOConfig`'s loss and advantage keys parsed into what [`crate::loss`] and
//! [`crate::advantages`] take (their errors name the option).

use serde_json::Value;
use trl_core::train::args_check::check::option_error;

use crate::config::GrpoConfig;

impl GrpoConfig {
    /// `scale_rewards` and `multi_objective_aggregation`, parsed (errors name the option).
    pub fn advantage_kinds(
        &self,
    ) -> trl_core::Result<(
        crate::advantages::ScaleRewards,
        crate::advantages::MultiObjectiveAggregation,
    )> {
        fn parse<T: serde::de::DeserializeOwned>(
            option: &str,
            value: String,
        ) -> trl_core::Result<T> {
            serde_json::from_value(Value::String(value.clone()))
                .map_err(|_| option_error(option, format!("unknown value {value:?}")))
        }
        Ok((
            parse("scale_rewards", self.scale_rewards.name())?,
            parse(
                "multi_objective_aggregation",
                self.multi_objective_aggregation.clone(),
            )?,
        ))
    }

    /// The loss's options, parsed and checked (an unknown `loss_type` or level names itself;
    /// TRL's warnings about level/type mismatches are printed).
    pub fn policy_loss_config(&self) -> trl_core::Result<crate::loss::PolicyLossConfig> {
        let config = crate::loss::PolicyLossConfig {
            loss_type: self.loss_type.parse()?,
            epsilon: self.epsilon,
            epsilon_high: self.epsilon_high,
            delta: self.delta,
            beta: self.beta,
            use_bias_correction_kl: self.use_bias_correction_kl,
            importance_sampling_level: self.importance_sampling_level.parse()?,
            sapo_temperature_pos: self.sapo_temperature_pos,
            sapo_temperature_neg: self.sapo_temperature_neg,
            vespo_k_pos: self.vespo_k_pos,
            vespo_lambda_pos: self.vespo_lambda_pos,
            vespo_k_neg: self.vespo_k_neg,
            vespo_lambda_neg: self.vespo_lambda_neg,
            max_completion_length: self.max_completion_length,
            top_entropy_quantile: self.top_entropy_quantile,
            entropy_coef: self.entropy_coef,
            use_adaptive_entropy: false,
        };
        for warning in config.validate()? {
            eprintln!("warning: {warning}");
        }
        Ok(config)
    }
}
