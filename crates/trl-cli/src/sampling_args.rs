//! The generation flags `trl generate` and `trl chat` share (transformers' names), and loading
//! a causal LM with its tokenizer and generation defaults.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{ArgAction, Args};
use trl_core::generate::{GenerationOptions, merge_ids};
use trl_core::model::{CausalLm, HeadKind, load_causal_lm, read_config};
use trl_core::tokenizer::Tokenizer;

use crate::device::{default_device_spec, parse_device};
use crate::tokenizer_setup::load_tokenizer;

/// Sampling flags; unset ones take the model's `generation_config.json`, then transformers'
/// defaults (`do_sample` on, temperature 1, top-k 50, top-p 1).
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Most new tokens per sequence.
    #[arg(long = "max_new_tokens")]
    pub max_new_tokens: Option<usize>,
    /// End-of-sequence is masked until this many tokens were generated.
    #[arg(long = "min_new_tokens")]
    pub min_new_tokens: Option<usize>,
    /// `false` decodes greedily (the most likely token every step).
    #[arg(long = "do_sample", action = ArgAction::Set, value_name = "BOOL")]
    pub do_sample: Option<bool>,
    /// Divides the logits before sampling.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass.
    #[arg(long = "top_p")]
    pub top_p: Option<f32>,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long = "top_k")]
    pub top_k: Option<usize>,
    /// Keep tokens at least this fraction as likely as the most likely one.
    #[arg(long = "min_p")]
    pub min_p: Option<f32>,
    /// Penalty (> 1) on tokens already in the sequence.
    #[arg(long = "repetition_penalty")]
    pub repetition_penalty: Option<f32>,
    /// Seeds sampling: the same seed, inputs and flags give the same output.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Also stop after this token id (repeatable).
    #[arg(long = "stop_token_ids", num_args = 1..)]
    pub stop_token_ids: Vec<u32>,
    /// Also stop once the completion contains this text (repeatable).
    #[arg(long = "stop_strings", num_args = 1..)]
    pub stop_strings: Vec<String>,
    /// `cpu`, `cuda`, `cuda:N` or `wgpu` (default: CUDA if compiled in, else the CPU).
    #[arg(long)]
    pub device: Option<String>,
}

/// A causal LM ready to generate: weights, tokenizer, resolved options.
pub struct Generator {
    pub model: CausalLm,
    pub tokenizer: Tokenizer,
    pub options: GenerationOptions,
    pub model_dir: PathBuf,
    pub device_spec: String,
}

impl SamplingArgs {
    /// Loads `model_name_or_path` and resolves every option (flags over the model's
    /// `generation_config.json` over transformers' defaults); invalid values name their flag.
    pub fn load(&self, model_name_or_path: &str) -> Result<Generator> {
        let model_dir = trl_core::hub::resolve_model(model_name_or_path, None)?;
        let config = read_config(&model_dir)?;
        anyhow::ensure!(
            config.head == HeadKind::CausalLm,
            "{} is a {}; generation needs a causal language model (*ForCausalLM)",
            model_dir.display(),
            config.architecture_name()
        );
        let tokenizer = load_tokenizer(&model_dir)?;
        let mut options = GenerationOptions::from_generation_config(&model_dir)?;
        self.apply(&mut options);
        // The tokenizer's EOS first, then generation_config.json's, then the user's.
        let mut eos: Vec<u32> = tokenizer.eos_token_id().into_iter().collect();
        merge_ids(&mut eos, options.eos_token_ids.iter().copied());
        merge_ids(&mut eos, self.stop_token_ids.iter().copied());
        options.eos_token_ids = eos;
        options.pad_token_id = tokenizer
            .pad_token_id()
            .or(config.pad_token_id)
            .or(options.eos_token_ids.first().copied())
            .unwrap_or(0);
        options.validate()?;
        let device_spec = self
            .device
            .clone()
            .unwrap_or_else(|| default_device_spec().to_string());
        let device = parse_device(&device_spec)?;
        let model = load_causal_lm(&model_dir, &device)
            .with_context(|| format!("loading {}", model_dir.display()))?;
        Ok(Generator {
            model,
            tokenizer,
            options,
            model_dir,
            device_spec,
        })
    }

    fn apply(&self, options: &mut GenerationOptions) {
        set(&mut options.max_new_tokens, self.max_new_tokens);
        set(&mut options.min_new_tokens, self.min_new_tokens);
        set(&mut options.do_sample, self.do_sample);
        set(&mut options.temperature, self.temperature);
        set(&mut options.top_p, self.top_p);
        set(&mut options.top_k, self.top_k);
        set(&mut options.repetition_penalty, self.repetition_penalty);
        options.min_p = self.min_p.or(options.min_p);
        options.seed = self.seed;
        options.stop_strings = self.stop_strings.clone();
    }
}

/// `*target = value` when the flag was given.
fn set<T>(target: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *target = value;
    }
}
