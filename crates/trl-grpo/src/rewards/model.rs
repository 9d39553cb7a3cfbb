//! A reward model as a reward function: a `*ForSequenceClassification` folder written by
//! `trl reward` scores prompt + completion, as TRL 1.16's `GRPOTrainer._calculate_rewards` does
//! for a reward function that is a model: conversational data goes through the reward model's
//! chat template (`prompt + completion` messages, with the config's `chat_template_kwargs`),
//! standard data is `prompt + completion` as one string; both are tokenized without special
//! tokens, padded on the right, and the score is `logits[:, 0]` at the last non-pad token.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use serde_json::{Map, Value};
use trl_core::model::{HeadKind, SequenceClassifier, WeightReader, read_config};
use trl_core::tokenizer::{RenderOptions, Tokenizer, pad_token_id};
use trl_reward::score::score_sequences;

use super::error::{Result, RewardError};
use super::input::Content;
use super::{RewardFunction, RewardInput};

/// A loaded reward model and its tokenizer.
pub struct RewardModelReward {
    name: String,
    path: PathBuf,
    /// Inference only: the model without autodiff.
    model: SequenceClassifier,
    tokenizer: Tokenizer,
    pad_token_id: u32,
    batch_size: usize,
    render: RenderOptions,
}

/// The reward's name in logs: the last path component of the id or folder as given (TRL's
/// `config._name_or_path.split("/")[-1]`), so `out/my-rm` logs as `rewards/my-rm/mean`.
pub fn model_reward_name(id_or_path: &str) -> String {
    Path::new(id_or_path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| id_or_path.to_string())
}

impl RewardModelReward {
    /// Loads the reward model `id_or_path` (a folder or hub id) on `device`. `batch_size`
    /// sequences go through one forward pass; `chat_template_kwargs` are the training config's.
    pub fn load(
        id_or_path: &str,
        device: &Device,
        chat_template_kwargs: Map<String, Value>,
        batch_size: usize,
    ) -> Result<Self> {
        let model_error = |source: trl_core::Error| RewardError::Model {
            path: id_or_path.to_string(),
            source,
        };
        let dir = trl_core::hub::resolve_model(id_or_path, None).map_err(model_error)?;
        let config = read_config(&dir).map_err(model_error)?;
        let refuse = |message: String| RewardError::Params {
            function: id_or_path.to_string(),
            message,
        };
        if config.head != HeadKind::SequenceClassification || config.num_labels != 1 {
            return Err(refuse(format!(
                "{} is a {} with {} label(s); a reward model is a *ForSequenceClassification \
                 model with one label, e.g. the output of `trl reward`",
                dir.display(),
                config.architecture_name(),
                config.num_labels
            )));
        }
        let tokenizer = Tokenizer::from_dir(&dir).map_err(model_error)?;
        // TRL: `pad_token = pad_token or eos_token`, and the model's pad id is set to it.
        let pad_token_id = pad_token_id(&tokenizer, None).map_err(model_error)?;
        let mut reader = WeightReader::open(&dir).map_err(model_error)?;
        let mut model =
            SequenceClassifier::load(&mut reader, &config, device).map_err(model_error)?;
        model.set_pad_token_id(pad_token_id);
        Ok(RewardModelReward {
            name: model_reward_name(id_or_path),
            path: dir,
            model: model.valid(),
            tokenizer,
            pad_token_id,
            batch_size: batch_size.max(1),
            render: RenderOptions {
                extra: chat_template_kwargs,
                ..RenderOptions::default()
            },
        })
    }

    /// The text the reward model reads for each input: the chat template over prompt +
    /// completion messages when the batch is conversational (judged by its first prompt, as
    /// TRL), else prompt + completion.
    pub fn texts(&self, batch: &[RewardInput]) -> Result<Vec<String>> {
        let conversational = batch.first().is_some_and(|i| i.prompt.is_conversational());
        batch
            .iter()
            .enumerate()
            .map(|(row, input)| match (&input.prompt, &input.completion) {
                (Content::Messages(prompt), Content::Messages(completion)) if conversational => {
                    let messages: Vec<Value> = prompt.iter().chain(completion).cloned().collect();
                    self.tokenizer
                        .apply_chat_template(&Value::Array(messages), &self.render)
                        .map_err(|e| RewardError::input(&self.name, row, e.to_string()))
                }
                (Content::Text(prompt), Content::Text(completion)) if !conversational => {
                    Ok(format!("{prompt}{completion}"))
                }
                _ => Err(RewardError::input(
                    &self.name,
                    row,
                    "prompt and completion must both be text or both be messages, like the \
                     batch's first prompt",
                )),
            })
            .collect()
    }

    /// The folder the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl RewardFunction for RewardModelReward {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&mut self, batch: &[RewardInput]) -> Result<Vec<Option<f64>>> {
        let texts = self.texts(batch)?;
        let mut sequences = Vec::with_capacity(texts.len());
        for (row, text) in texts.iter().enumerate() {
            let ids = self
                .tokenizer
                .encode(text, false)
                .map_err(|e| RewardError::input(&self.name, row, e.to_string()))?;
            if ids.is_empty() {
                return Err(RewardError::input(
                    &self.name,
                    row,
                    "prompt + completion is empty: nothing to score",
                ));
            }
            sequences.push(ids);
        }
        let views: Vec<&[u32]> = sequences.iter().map(Vec::as_slice).collect();
        let scores = score_sequences(&self.model, &views, self.pad_token_id, self.batch_size)
            .map_err(|source| RewardError::Model {
                path: self.path.display().to_string(),
                source,
            })?;
        Ok(scores.into_iter().map(|s| Some(f64::from(s))).collect())
    }
}
