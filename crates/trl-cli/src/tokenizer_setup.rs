//! The tokenizer a training or scoring command uses: the model folder's, checked against the
//! model's embeddings, with TRL's overrides (`chat_template_path`, `eos_token`, `pad_token`)
//! applied and checked before any data is tokenized or any model loads.

use std::path::Path;

use anyhow::{Result, bail};
use trl_core::data::{Dataset, Style};
use trl_core::model::read_config;
use trl_core::tokenizer::{Tokenizer, pad_token_id};

/// TRL's tokenizer keys of a method config (each `None` when unset or the method lacks it).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenizerOverrides<'a> {
    pub chat_template_path: Option<&'a str>,
    pub eos_token: Option<&'a str>,
    pub pad_token: Option<&'a str>,
}

/// The tokenizer of the model folder `dir`, refused (instead of a crash at the first batch)
/// when it can produce ids the model's embeddings do not cover.
pub fn load_tokenizer(dir: &Path) -> Result<Tokenizer> {
    // A peft adapter folder carries the tokenizer but no config.json: its base has it.
    let vocab_size = read_config(&crate::lora::model_config_dir(dir)?)?.vocab_size;
    let tokenizer = Tokenizer::from_dir(dir)?;
    if let Some(max_id) = tokenizer.max_token_id()
        && max_id as usize >= vocab_size
    {
        bail!(
            "{}: the tokenizer has token ids up to {max_id} but config.json's vocab_size is \
             {vocab_size} (the model embeds ids 0..{vocab_size}); the tokenizer does not belong to \
             this model",
            dir.display()
        );
    }
    Ok(tokenizer)
}

/// [`load_tokenizer`] with `overrides` applied. A `pad_token` the vocabulary lacks is an
/// error naming it (core's one pad lookup, which every method then uses), and standard
/// (non-conversational) data with a tokenizer that has no EOS token is refused: TRL appends
/// EOS to every standard text or completion and fails without one.
pub fn training_tokenizer(
    dir: &Path,
    dataset: &Dataset,
    overrides: TokenizerOverrides,
) -> Result<Tokenizer> {
    let mut tokenizer = load_tokenizer(dir)?;
    if let Some(path) = overrides.chat_template_path {
        tokenizer.set_chat_template_from_file(path)?;
    }
    if let Some(eos) = overrides.eos_token {
        tokenizer.set_eos_token(eos)?;
    }
    pad_token_id(&tokenizer, overrides.pad_token)?;
    if tokenizer.eos_token().is_none() && dataset.format.style == Style::Standard {
        bail!(
            "{}: the tokenizer has no EOS token, and TRL appends EOS to every standard \
             (non-conversational) text or completion, so it cannot train on {} data without \
             one: set eos_token in tokenizer_config.json (or pass --eos_token where the command \
             has it)",
            dir.display(),
            dataset.format,
        );
    }
    Ok(tokenizer)
}

/// The text of `chat_template_path` for cache keys ("" when unset); an unreadable file is an
/// error naming it, not an empty key.
pub fn chat_template_text(path: Option<&str>) -> Result<String> {
    match path {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--chat_template_path {path}: {e}")),
        None => Ok(String::new()),
    }
}
