//! The code of the `trl` binary: TRL's methods and tools behind one command. The binary
//! itself is the root package's one-line `main`, so `cargo run --release -- sft ...` works
//! from the repository root and end-to-end tests get `CARGO_BIN_EXE_trl`.
//!
//! Each subcommand parses its arguments (TRL's names), picks the device among the backends
//! compiled in, and calls into a method crate. A method crate never parses CLI flags.

mod chat;
mod common;
mod config;
pub mod device;
mod dpo;
mod env;
mod eval;
mod eval_setup;
mod export;
mod generate;
mod grpo;
mod hub_training;
mod kto;
mod launch;
mod lora;
mod merge;
mod mixed_precision;
mod model_args;
#[cfg(feature = "mpi")]
mod mpi_world;
mod plot;
mod ppo;
mod push;
mod reference;
mod reward;
mod rloo;
mod sampling_args;
mod score;
mod sft;
mod tokenizer_setup;
mod validate;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser, Subcommand};

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
    /// Group Relative Policy Optimization (TRL's GRPOTrainer): `trl grpo --help` lists the keys.
    #[command(disable_help_flag = true)]
    Grpo {
        /// `--config file.yaml` and `--key value` pairs with TRL's names.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// REINFORCE Leave-One-Out (TRL's RLOOTrainer): `trl rloo --help` lists the keys.
    #[command(disable_help_flag = true)]
    Rloo {
        /// `--config file.yaml` and `--key value` pairs with TRL's names.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Proximal Policy Optimization with a reward and a value model (TRL 1.12's PPOTrainer):
    /// `trl ppo --help` lists the keys.
    #[command(disable_help_flag = true)]
    Ppo {
        /// `--config file.yaml` and `--key value` pairs with TRL's names.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Evaluate a model with a method's eval metrics (`trl eval --method sft|dpo|kto|reward`).
    #[command(disable_help_flag = true)]
    Eval {
        /// `--method M` and the method's `--key value` pairs.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Complete every prompt of a dataset (or stdin) with a causal LM; writes JSON lines.
    Generate(generate::GenerateArgs),
    /// Chat with a model through its chat template, the reply streamed as it is generated.
    Chat(chat::ChatArgs),
    /// Score every row of a dataset with a reward model; writes JSON lines with the rewards.
    Score(score::ScoreArgs),
    /// Check every row of a dataset for a method before training; exits non-zero on problems.
    Validate(validate::ValidateArgs),
    /// Draw a run's logged curves (trainer_state.json's log_history) into a PNG.
    Plot(plot::PlotArgs),
    /// Push a folder (model, adapter, GGUF files) to the Hugging Face Hub, with a model card.
    Push(push::PushArgs),
    /// Write a model in another format: `trl export gguf` for llama.cpp.
    #[command(subcommand)]
    Export(export::ExportCommand),
    /// Fold a peft LoRA adapter into its base model and write a plain checkpoint.
    Merge(merge::MergeArgs),
    /// Print versions, compiled-in backends, the default device and thread count.
    Env(env::EnvArgs),
}

/// Parses the command line, joins the MPI job when a launcher started this process (see
/// `launch.rs`), runs the subcommand, and turns errors into a message and a non-zero exit
/// code (never a panic for a user mistake); a failing rank of a job ends the whole job.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if err.kind() == ErrorKind::InvalidSubcommand => {
            eprintln!("error: {}", unknown_command(&err));
            return ExitCode::from(2);
        }
        Err(err) => err.exit(),
    };
    // Kept to the end of `main`: with MPI, dropping it finalizes MPI after every rank is done
    // (without the feature it is `()`).
    #[allow(clippy::let_unit_value)]
    let _membership = match launch::join() {
        Ok(membership) => membership,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    match launch::check_command(cli.command.name()).and_then(|()| run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = exit_code(&err);
            if code == 130 {
                // Every rank stopped after the same step; rank 0 saved the checkpoint.
                eprintln!("error: {err:#}");
            } else {
                launch::fail(&err, code);
            }
            ExitCode::from(code)
        }
    }
}

impl Command {
    /// The subcommand's name, as typed.
    fn name(&self) -> &'static str {
        match self {
            Command::Sft { .. } => "sft",
            Command::Dpo { .. } => "dpo",
            Command::Kto { .. } => "kto",
            Command::Reward { .. } => "reward",
            Command::Grpo { .. } => "grpo",
            Command::Rloo { .. } => "rloo",
            Command::Ppo { .. } => "ppo",
            Command::Eval { .. } => "eval",
            Command::Generate(_) => "generate",
            Command::Chat(_) => "chat",
            Command::Score(_) => "score",
            Command::Validate(_) => "validate",
            Command::Plot(_) => "plot",
            Command::Push(_) => "push",
            Command::Export(_) => "export",
            Command::Merge(_) => "merge",
            Command::Env(_) => "env",
        }
    }
}

/// Runs one subcommand.
fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Sft { args } => sft::run(&args, interrupt_flag()),
        Command::Dpo { args } => dpo::run(&args, interrupt_flag()),
        Command::Kto { args } => kto::run(&args, interrupt_flag()),
        Command::Reward { args } => reward::run(&args, interrupt_flag()),
        Command::Grpo { args } => grpo::run(&args, interrupt_flag()),
        Command::Rloo { args } => rloo::run(&args, interrupt_flag()),
        Command::Ppo { args } => ppo::run(&args, interrupt_flag()),
        Command::Eval { args } => eval::run(&args, interrupt_flag()),
        Command::Generate(args) => generate::run(&args),
        Command::Chat(args) => chat::run(&args),
        Command::Score(args) => score::run(&args),
        Command::Validate(args) => validate::run(&args),
        Command::Plot(args) => plot::run(&args),
        Command::Push(args) => push::run(&args),
        Command::Export(command) => export::run(&command),
        Command::Merge(args) => merge::run(&args),
        Command::Env(args) => env::run(&args),
    }
}

/// 130 (the shell's code for SIGINT) when a run stopped on Ctrl-C or SIGTERM after saving a
/// checkpoint, so scripts can tell "interrupted, resumable" from a failure (1).
fn exit_code(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<trl_core::Error>() {
        Some(trl_core::Error::Interrupted { .. }) => 130,
        _ => 1,
    }
}

/// The message for a subcommand that does not exist: the commands that do, and no "similar
/// subcommand" tip (clap's guesses name other methods altogether, e.g. `trl ppo` -> `dpo`).
fn unknown_command(err: &clap::Error) -> String {
    let name = match err.get(ContextKind::InvalidSubcommand) {
        Some(ContextValue::String(name)) => name.clone(),
        _ => String::from("?"),
    };
    let commands: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|command| command.get_name().to_owned())
        .collect();
    let message = format!(
        "`trl {name}` is not a command; the commands are {} (see `trl --help`)",
        commands.join(", ")
    );
    message
}

/// A flag set by Ctrl-C, SIGTERM or SIGHUP: the training loop saves a checkpoint after the
/// current step and stops.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    // A second signal while the checkpoint is written exits at once.
    let _ = ctrlc::set_handler(move || {
        if handler_flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupted: saving a checkpoint after this step (send the signal again to quit now)"
        );
    });
    flag
}
