//! The code of the `trl` binary: TRL's methods and tools behind one command. The binary
//! itself is the root package's one-line `main`, so `cargo run --release -- sft ...` works
//! from the repository root and end-to-end tests get `CARGO_BIN_EXE_trl`.
//!
//! Each subcommand parses its arguments (TRL's names), picks the device among the backends
//! compiled in, and calls into a method crate. A method crate never parses CLI flags.

mod common;
mod config;
mod device;
mod dpo;
mod env;
mod kto;
mod model_args;
mod reference;
mod reward;
mod score;
mod sft;
mod tokenizer_setup;
mod validate;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};

/// LLM post-training in Rust: TRL's methods, dataset formats and config keys in one binary.
#[derive(Parser, Debug)]
#[command(
    name = "trl",
    version,
    about = "LLM post-training in Rust: TRL's methods, dataset formats and config keys in one binary.",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Supervised fine-tuning (TRL's SFTTrainer): `trl sft --help` lists the keys.
    #[command(disable_help_flag = true)]
    Sft {
        /// `--config file.yaml` and `--key value` pairs with TRL's names.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Direct Preference Optimization and its loss variants: `trl dpo --help` lists the keys.
    #[command(disable_help_flag = true)]
    Dpo {
        /// `--config file.yaml` and `--key value` pairs with TRL's names.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Kahneman-Tversky Optimization on unpaired preference data: `trl kto --help` lists the keys.
    #[command(disable_help_flag = true)]
    Kto {
        /// `--config file.yaml` and `--key value` pairs with TRL's names.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Reward-model training on preference pairs (TRL's RewardTrainer): `trl reward --help`.
    #[command(disable_help_flag = true)]
    Reward {
        /// `--config file.yaml` and `--key value` pairs with TRL's names.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Score every row of a dataset with a reward model; writes JSON lines with the rewards.
    Score(score::ScoreArgs),
    /// Check every row of a dataset for a method before training; exits non-zero on problems.
    Validate(validate::ValidateArgs),
    /// Print versions, compiled-in backends, the default device and thread count.
    Env(env::EnvArgs),
}

/// Parses the command line, runs the subcommand, and turns errors into a message and a
/// non-zero exit code (never a panic for a user mistake).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sft { args } => sft::run(&args, interrupt_flag()),
        Command::Dpo { args } => dpo::run(&args, interrupt_flag()),
        Command::Kto { args } => kto::run(&args, interrupt_flag()),
        Command::Reward { args } => reward::run(&args, interrupt_flag()),
        Command::Score(args) => score::run(&args),
        Command::Validate(args) => validate::run(&args),
        Command::Env(args) => env::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A flag set by Ctrl-C: the training loop saves a checkpoint and stops at the next step.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    // A second Ctrl-C while the checkpoint is written falls through to the default (exit).
    let _ = ctrlc::set_handler(move || {
        if handler_flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: saving a checkpoint after this step (Ctrl-C again to quit now)");
    });
    flag
}
