//! Which formats each of TRL's training methods takes (TRL 1.16 trainers and their docs). Every
//! method takes both styles, standard and conversational.
//!
//! | method | formats | what TRL does with them |
//! | --- | --- | --- |
//! | sft | language modeling, prompt-completion | loss on the completion only for prompt-completion |
//! | dpo | preference (explicit or implicit prompt) | `extract_prompt` when there is no `prompt` column |
//! | reward | preference (explicit or implicit prompt) | prompt + chosen / prompt + rejected |
//! | kto | unpaired preference, preference | `extract_prompt`, then `unpair_preference_dataset` |
//! | grpo, rloo | prompt-only | other columns go to the reward functions |
//! | ppo | prompt-only | TRL 1.12's PPOTrainer (removed from TRL after 1.12) |

use std::fmt;
use std::str::FromStr;

use super::format::FormatKind;

/// A TRL training method, as named on the command line (`trl sft`, `trl dpo`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Sft,
    Dpo,
    Kto,
    Reward,
    Grpo,
    Rloo,
    Ppo,
}

impl Method {
    /// Every method, in the order `trl --help` lists them.
    pub const ALL: [Method; 7] = [
        Method::Sft,
        Method::Dpo,
        Method::Kto,
        Method::Reward,
        Method::Grpo,
        Method::Rloo,
        Method::Ppo,
    ];

    /// The subcommand name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Sft => "sft",
            Method::Dpo => "dpo",
            Method::Kto => "kto",
            Method::Reward => "reward",
            Method::Grpo => "grpo",
            Method::Rloo => "rloo",
            Method::Ppo => "ppo",
        }
    }

    /// The formats the method's trainer takes, the preferred one first.
    pub fn formats(self) -> &'static [FormatKind] {
        use FormatKind::*;
        match self {
            Method::Sft => &[LanguageModeling, PromptCompletion],
            Method::Dpo | Method::Reward => &[Preference, ImplicitPreference],
            Method::Kto => &[UnpairedPreference, Preference, ImplicitPreference],
            Method::Grpo | Method::Rloo | Method::Ppo => &[PromptOnly],
        }
    }

    /// Whether the method trains on data of this format.
    pub fn accepts(self, kind: FormatKind) -> bool {
        self.formats().contains(&kind)
    }

    /// TRL's default `max_length` for the method's config, `None` where the config has none
    /// (GRPO and RLOO bound the completion instead).
    pub fn default_max_length(self) -> Option<usize> {
        match self {
            Method::Sft | Method::Dpo | Method::Kto | Method::Reward => Some(1024),
            Method::Grpo | Method::Rloo | Method::Ppo => None,
        }
    }

    /// What the method does with a row longer than `max_length`.
    pub fn over_length_effect(self) -> &'static str {
        match self {
            Method::Reward => "dropped",
            _ => "truncated",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Method::ALL
            .into_iter()
            .find(|method| method.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                format!(
                    "unknown method `{name}`: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_name_back() {
        for method in Method::ALL {
            assert_eq!(method.name().parse::<Method>(), Ok(method));
        }
        assert_eq!("DPO".parse::<Method>(), Ok(Method::Dpo));
        let error = "orpo".parse::<Method>().unwrap_err();
        assert!(
            error.contains("sft, dpo, kto, reward, grpo, rloo, ppo"),
            "{error}"
        );
    }

    #[test]
    fn every_format_has_a_method() {
        for kind in FormatKind::ALL {
            assert!(Method::ALL.iter().any(|m| m.accepts(kind)), "{kind}");
        }
        assert!(Method::Kto.accepts(FormatKind::ImplicitPreference));
        assert!(!Method::Sft.accepts(FormatKind::PromptOnly));
        assert!(!Method::Grpo.accepts(FormatKind::PromptCompletion));
    }
}
