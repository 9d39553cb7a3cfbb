//! `trl chat`: talk with a model through its chat template, the reply streamed token by token.
//! Reads standard input line by line (a terminal or a pipe); `/clear` forgets the
//! conversation, `/exit` (or the end of input) quits.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{Value, json};
use trl_core::generate::generate;
use trl_core::tokenizer::{RenderOptions, Tokenizer};

use crate::sampling_args::{Generator, SamplingArgs};

/// Arguments of `trl chat`.
#[derive(Args, Debug)]
pub struct ChatArgs {
    /// A causal LM with a chat template: a folder or hub id.
    #[arg(long = "model_name_or_path")]
    model_name_or_path: String,
    /// A system message starting every conversation.
    #[arg(long = "system_prompt")]
    system_prompt: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// Decodes a growing list of tokens and hands out only the text that is new, holding back
/// an incomplete UTF-8 character (decoded as U+FFFD) until its next token arrives.
struct IncrementalDecoder<'a> {
    tokenizer: &'a Tokenizer,
    tokens: Vec<u32>,
    printed: usize,
}

impl<'a> IncrementalDecoder<'a> {
    fn new(tokenizer: &'a Tokenizer) -> Self {
        IncrementalDecoder {
            tokenizer,
            tokens: Vec::new(),
            printed: 0,
        }
    }

    /// The text `token` adds (possibly empty).
    fn push(&mut self, token: u32) -> Result<String> {
        self.tokens.push(token);
        let text = self.tokenizer.decode(&self.tokens, true)?;
        if text.ends_with('\u{FFFD}')
            || text.len() < self.printed
            || !text.is_char_boundary(self.printed)
        {
            return Ok(String::new());
        }
        let new = text[self.printed..].to_string();
        self.printed = text.len();
        Ok(new)
    }

    /// The text held back so far (an incomplete character at the very end), and the whole
    /// reply.
    fn finish(self) -> Result<(String, String)> {
        let text = self.tokenizer.decode(&self.tokens, true)?;
        let rest = text.get(self.printed..).unwrap_or_default().to_string();
        Ok((rest, text))
    }
}

/// Runs the conversation until `/exit` or the end of standard input.
pub fn run(args: &ChatArgs) -> Result<()> {
    let generator = args.sampling.load(&args.model_name_or_path)?;
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "trl chat: {} on {} (/clear starts over, /exit quits)",
            generator.model_dir.display(),
            generator.device_spec
        );
    }
    let mut messages = initial_messages(args);
    let mut lines = std::io::stdin().lock().lines();
    let mut turn = 0u64;
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("reading standard input")?;
        match line.trim() {
            "" => continue,
            "/exit" => break,
            "/clear" => {
                messages = initial_messages(args);
                println!("(conversation cleared)");
                continue;
            }
            text => messages.push(json!({"role": "user", "content": text})),
        }
        let reply = respond(&generator, &messages, turn)?;
        messages.push(json!({"role": "assistant", "content": reply}));
        turn += 1;
    }
    Ok(())
}

fn initial_messages(args: &ChatArgs) -> Vec<Value> {
    args.system_prompt
        .iter()
        .map(|s| json!({"role": "system", "content": s}))
        .collect()
}

/// Generates the assistant's reply to `messages`, printing it as it comes.
fn respond(generator: &Generator, messages: &[Value], turn: u64) -> Result<String> {
    let options = RenderOptions {
        add_generation_prompt: true,
        ..RenderOptions::default()
    };
    let prompt = generator
        .tokenizer
        .apply_chat_template_ids(&Value::Array(messages.to_vec()), &options)?;
    let mut run_options = generator.options.clone();
    run_options.num_return_sequences = 1;
    run_options.seed = generator.options.seed.wrapping_add(turn);
    let mut decoder = IncrementalDecoder::new(&generator.tokenizer);
    let mut stdout = std::io::stdout().lock();
    let mut failure = None;
    generate(
        &generator.model,
        &[prompt],
        &run_options,
        Some(&generator.tokenizer),
        &mut |_, token| match decoder.push(token) {
            Ok(piece) => {
                let _ = stdout.write_all(piece.as_bytes());
                let _ = stdout.flush();
            }
            Err(e) => failure = Some(e),
        },
    )?;
    if let Some(e) = failure {
        return Err(e);
    }
    let (rest, reply) = decoder.finish()?;
    writeln!(stdout, "{rest}")?;
    stdout.flush()?;
    Ok(reply)
}
