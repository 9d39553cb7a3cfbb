//! The code of the `trl` binary: TRL's methods and tools behind one command. The binary
//! itself is the root package's one-line `main`, so `cargo run --release -- sft ...` works
//! from the repository root and end-to-end tests get `CARGO_BIN_EXE_trl`.
//!
//! Each subcommand parses its arguments (TRL's names), picks the device among the backends
//! compiled in, and calls into a method crate. A method crate never parses CLI flags.

mod device;
mod env;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// LLM post-training in Rust: TRL's methods, dataset formats and config keys in one binary.
#[derive(Parser, Debug)]
#[command(name = "trl", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print versions, compiled-in backends, the default device and thread count.
    Env(env::EnvArgs),
}

/// Parses the command line, runs the subcommand, and turns errors into a message and a
/// non-zero exit code (never a panic for a user mistake).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
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
