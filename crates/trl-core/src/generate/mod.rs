//! Text generation with a KV cache: what `trl generate`, `trl chat` and the online methods
//! (GRPO, RLOO, PPO) use to produce completions.
//!
//! Prompts of different lengths are left-padded into one batch; the prefill runs them through
//! [`CausalLm::forward_cached`] once (each distinct row once: see [`prefill`]), then every step feeds one token per unfinished sequence.
//! A sequence that ends (an end-of-sequence id, a stop string, or `max_new_tokens`) leaves the
//! batch and its cache rows, so it stops costing compute. The next token is chosen on the host
//! from a row of logits: transformers' logits processors ([`processors`]), then the argmax or
//! a seeded draw ([`sampling`]). Greedy decoding equals transformers' `generate` token for
//! token (tests against `reference/generate_reference.py`).

pub mod options;
mod prefill;
pub mod processors;
pub mod sampling;
#[cfg(test)]
mod tests;

use burn::tensor::Tensor;
use rayon::prelude::*;

pub use options::{GenerationOptions, generation_config_eos_ids, merge_ids};
use prefill::prefill;
use sampling::Rng;

use crate::model::CausalLm;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// It generated an end-of-sequence id (kept as its last token).
    Eos,
    /// Its decoded completion contains a stop string.
    StopString,
    /// It reached `max_new_tokens`.
    Length,
}

/// One generated sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The prompt it continues (sequences of one prompt are adjacent in the output).
    pub prompt_index: usize,
    /// The new tokens, the end-of-sequence id included when that ended it.
    pub token_ids: Vec<u32>,
    /// Why it stopped.
    pub finish_reason: FinishReason,
}

/// A sequence while it is generated.
struct Sequence {
    index: usize,
    prompt_index: usize,
    /// Padded prompt + generated tokens: what repetition penalty looks at (transformers'
    /// `input_ids`).
    history: Vec<u32>,
    generated: Vec<u32>,
    rng: Rng,
    finish: Option<FinishReason>,
}

impl Sequence {
    /// Processes `row` (its logits) and appends the chosen token.
    fn choose(&mut self, row: &mut [f32], options: &GenerationOptions) {
        processors::process_row(row, &self.history, self.generated.len(), options);
        let token = if options.do_sample {
            sampling::sample(row, &mut self.rng)
        } else {
            sampling::argmax(row)
        } as u32;
        self.history.push(token);
        self.generated.push(token);
    }

    /// Sets `finish` when the last token ends the sequence.
    fn check_stop(
        &mut self,
        options: &GenerationOptions,
        tokenizer: Option<&Tokenizer>,
    ) -> Result<()> {
        let last = *self.generated.last().expect("a token was just chosen");
        if options.eos_token_ids.contains(&last) {
            self.finish = Some(FinishReason::Eos);
        } else if stop_string_reached(&self.generated, options, tokenizer)? {
            self.finish = Some(FinishReason::StopString);
        } else if self.generated.len() >= options.max_new_tokens {
            self.finish = Some(FinishReason::Length);
        }
        Ok(())
    }
}

/// Whether the decoded completion contains a stop string (only its tail is decoded: a stop
/// string cannot span more tokens than it has bytes).
fn stop_string_reached(
    generated: &[u32],
    options: &GenerationOptions,
    tokenizer: Option<&Tokenizer>,
) -> Result<bool> {
    let Some(tokenizer) = tokenizer.filter(|_| !options.stop_strings.is_empty()) else {
        return Ok(false);
    };
    let longest = options
        .stop_strings
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0);
    let tail = &generated[generated.len().saturating_sub(longest + 2)..];
    let text = tokenizer.decode(tail, false)?;
    Ok(options
        .stop_strings
        .iter()
        .any(|s| text.contains(s.as_str())))
}

/// Generates `options.num_return_sequences` completions for every prompt (token ids, no
/// padding), calling `on_token(sequence, token)` as each token is chosen (sequence `i`
/// continues prompt `i / num_return_sequences`). `tokenizer` is needed for stop strings only.
pub fn generate(
    model: &CausalLm,
    prompts: &[Vec<u32>],
    options: &GenerationOptions,
    tokenizer: Option<&Tokenizer>,
    on_token: &mut dyn FnMut(usize, u32),
) -> Result<Vec<Completion>> {
    options.validate()?;
    check_prompts(prompts, model.config().vocab_size)?;
    if !options.stop_strings.is_empty() && tokenizer.is_none() {
        return Err(Error::Generation {
            message: "stop strings need the tokenizer to decode completions".into(),
        });
    }
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut active = expand(prompts, width, options);
    let (input_ids, attention_mask) = left_padded(prompts, width, options);
    let mut finished = Vec::with_capacity(active.len());
    let (mut logits, mut cache) = prefill(
        model,
        &input_ids,
        &attention_mask,
        width + options.max_new_tokens,
    );
    loop {
        // [rows * vocab] on the host: one transfer per step
        let mut rows = host_rows(logits)?;
        let vocab = rows.len() / active.len();
        active
            .par_iter_mut()
            .zip(rows.par_chunks_mut(vocab))
            .for_each(|(sequence, row)| sequence.choose(row, options));
        for sequence in &mut active {
            on_token(
                sequence.index,
                *sequence.generated.last().expect("just chosen"),
            );
            sequence.check_stop(options, tokenizer)?;
        }
        let keep: Vec<usize> = (0..active.len())
            .filter(|&i| active[i].finish.is_none())
            .collect();
        let (still, done): (Vec<_>, Vec<_>) = active.into_iter().partition(|s| s.finish.is_none());
        finished.extend(done);
        active = still;
        if active.is_empty() {
            break;
        }
        cache.keep_rows(&keep);
        let next: Vec<Vec<u32>> = active
            .iter()
            .map(|s| vec![*s.generated.last().expect("just chosen")])
            .collect();
        logits = model.last_logits_cached(&next, &vec![vec![1]; next.len()], &mut cache);
    }
    finished.sort_by_key(|s| s.index);
    Ok(finished
        .into_iter()
        .map(|s| Completion {
            prompt_index: s.prompt_index,
            token_ids: s.generated,
            finish_reason: s.finish.unwrap_or(FinishReason::Length),
        })
        .collect())
}

/// Every prompt is non-empty and inside the model's vocabulary.
fn check_prompts(prompts: &[Vec<u32>], vocab_size: usize) -> Result<()> {
    if prompts.is_empty() {
        return Err(Error::Generation {
            message: "no prompts to generate from".into(),
        });
    }
    for (i, prompt) in prompts.iter().enumerate() {
        if prompt.is_empty() {
            return Err(Error::Generation {
                message: format!("prompt {i} has no tokens"),
            });
        }
        if let Some(&id) = prompt.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(Error::Generation {
                message: format!(
                    "prompt {i} has token id {id}, outside the model's vocab_size {vocab_size}"
                ),
            });
        }
    }
    Ok(())
}

/// The sequences, each prompt repeated `num_return_sequences` times in a row.
fn expand(prompts: &[Vec<u32>], width: usize, options: &GenerationOptions) -> Vec<Sequence> {
    let n = options.num_return_sequences;
    (0..prompts.len() * n)
        .map(|index| {
            let prompt = &prompts[index / n];
            let mut history = vec![options.pad_token_id; width - prompt.len()];
            history.extend(prompt);
            Sequence {
                index,
                prompt_index: index / n,
                history,
                generated: Vec::with_capacity(options.max_new_tokens),
                rng: Rng::for_sequence(options.seed, options.first_sequence + index as u64),
                finish: None,
            }
        })
        .collect()
}

/// Left-padded ids and mask `[sequences][width]`, in the order of [`expand`].
fn left_padded(
    prompts: &[Vec<u32>],
    width: usize,
    options: &GenerationOptions,
) -> (Vec<Vec<u32>>, Vec<Vec<i64>>) {
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for prompt in prompts {
        let pad = width - prompt.len();
        let mut row = vec![options.pad_token_id; pad];
        row.extend(prompt);
        let mut row_mask = vec![0i64; pad];
        row_mask.extend(std::iter::repeat_n(1, prompt.len()));
        for _ in 0..options.num_return_sequences {
            ids.push(row.clone());
            mask.push(row_mask.clone());
        }
    }
    (ids, mask)
}

/// Logits `[rows, vocab]` as f32 on the host.
fn host_rows(logits: Tensor<2>) -> Result<Vec<f32>> {
    crate::host::f32_values(logits, "the logits")
}
