//! `activation_checkpointing` (transformers 5) and its deprecated alias
//! `gradient_checkpointing` (the name TRL's configs set), resolved as
//! `TrainingArguments.__post_init__` does: the new name wins when set, else the old one, else
//! the default: off in transformers' `TrainingArguments`, on in every TRL config
//! (`_BaseConfig`, which the CLI's commands follow: [`TRL_CHECKPOINTING_DEFAULT`]). When on, the training device records its graph with burn's checkpointing strategy
//! (`Device::gradient_checkpointing`), which is also what makes each decoder layer one
//! recomputing graph node (`model::recompute`, as torch's per-layer checkpoint): only layer
//! inputs are kept, each layer is rerun in the backward. Numerically it changes nothing, except
//! that LoRA dropout masks come from per-layer seeds drawn from the device's random stream, so
//! they differ from a run without it (each run is still reproducible).

use serde_json::Value;

use super::args::TrainingArguments;
use super::args_check::check::option_error;
use crate::Result;

/// TRL's `_BaseConfig` default of `gradient_checkpointing` (TRL 1.16 for SFT, DPO, KTO,
/// reward, GRPO and RLOO; TRL 1.12 for PPO): on, unlike transformers' `TrainingArguments`.
pub const TRL_CHECKPOINTING_DEFAULT: bool = true;

impl TrainingArguments {
    /// Whether the run recomputes activations in the backward with transformers' default
    /// (off); see [`TrainingArguments::activation_checkpointing_or`].
    pub fn activation_checkpointing(&self) -> Result<bool> {
        self.activation_checkpointing_or(false)
    }

    /// Whether the run recomputes activations in the backward, `default` when neither name is
    /// set, after checking the kwargs: `use_reentrant` (any value: there is one
    /// implementation), `every_n_layers` 1 and `offload` false are accepted; anything else is
    /// an error naming the key.
    pub fn activation_checkpointing_or(&self, default: bool) -> Result<bool> {
        let on = self
            .activation_checkpointing
            .or(self.gradient_checkpointing)
            .unwrap_or(default);
        let (name, kwargs) = match &self.activation_checkpointing_kwargs {
            Some(kwargs) => ("activation_checkpointing_kwargs", kwargs),
            None => match &self.gradient_checkpointing_kwargs {
                Some(kwargs) => ("gradient_checkpointing_kwargs", kwargs),
                None => return Ok(on),
            },
        };
        check_kwargs(name, kwargs)?;
        Ok(on)
    }
}

/// The kwargs trl-rs can honour: every layer is recomputed, on the device.
fn check_kwargs(name: &str, kwargs: &Value) -> Result<()> {
    let map = match kwargs {
        Value::Null => return Ok(()),
        Value::Object(map) => map,
        other => {
            return Err(option_error(
                name,
                format!("{other}: expected a mapping of keys to values"),
            ));
        }
    };
    for (key, value) in map {
        let supported = match key.as_str() {
            "use_reentrant" => value.is_boolean(),
            "every_n_layers" => value.as_u64() == Some(1),
            "offload" => value == &Value::Bool(false),
            _ => false,
        };
        if !supported {
            return Err(option_error(
                name,
                format!(
                    "{key}={value} is not supported: trl-rs recomputes every layer's \
                     activations on the device (use_reentrant, every_n_layers=1 and \
                     offload=false are accepted)"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn args(pairs: Value) -> TrainingArguments {
        serde_json::from_value(pairs).unwrap()
    }

    #[test]
    fn the_new_name_wins_over_the_deprecated_alias() {
        assert!(!args(json!({})).activation_checkpointing().unwrap());
        let old = args(json!({"gradient_checkpointing": true}));
        assert!(old.activation_checkpointing().unwrap());
        let both = args(json!({"gradient_checkpointing": true, "activation_checkpointing": false}));
        assert!(!both.activation_checkpointing().unwrap());
        // TRL's configs: on unless a name says otherwise.
        assert!(
            args(json!({}))
                .activation_checkpointing_or(TRL_CHECKPOINTING_DEFAULT)
                .unwrap()
        );
        assert!(
            !both
                .activation_checkpointing_or(TRL_CHECKPOINTING_DEFAULT)
                .unwrap()
        );
    }

    #[test]
    fn unsupported_kwargs_are_errors_naming_the_key() {
        let ok = args(json!({"gradient_checkpointing": true,
            "gradient_checkpointing_kwargs": {"use_reentrant": false}}));
        assert!(ok.activation_checkpointing().unwrap());
        let err = args(json!({"activation_checkpointing": true,
            "activation_checkpointing_kwargs": {"every_n_layers": 2}}))
        .activation_checkpointing()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("activation_checkpointing_kwargs") && err.contains("every_n_layers"),
            "{err}"
        );
        assert!(
            args(json!({"gradient_checkpointing_kwargs": {"offload": true}}))
                .validate()
                .is_err()
        );
    }
}
