//! `trl env`: what this binary is and what it will run on, for bug reports.

use anyhow::Result;
use clap::Args;

use crate::device::{compiled_backends, default_device_spec, parse_device};

/// Arguments of `trl env`.
#[derive(Args, Debug)]
pub struct EnvArgs {
    /// Device to describe (cpu, cuda, cuda:N, wgpu); defaults to the best compiled in.
    #[arg(long)]
    device: Option<String>,
}

/// Prints the environment as `key: value` lines.
pub fn run(args: &EnvArgs) -> Result<()> {
    let spec = args
        .device
        .clone()
        .unwrap_or_else(|| default_device_spec().to_string());
    let device = parse_device(&spec)?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("trl-rs version: {}", env!("CARGO_PKG_VERSION"));
    println!("burn version: {}", trl_core::BURN_VERSION);
    println!("backends compiled in: {}", compiled_backends().join(", "));
    println!("device: {spec} ({device:?})");
    println!("threads: {threads}");
    let world = trl_core::train::collective::world();
    let mpi = if cfg!(feature = "mpi") {
        "compiled in"
    } else {
        "not compiled in"
    };
    println!("mpi: {mpi}");
    println!(
        "processes: {} (local rank {})",
        trl_core::train::collective::describe(world),
        crate::launch::local_rank()
    );
    println!("os: {} {}", std::env::consts::OS, std::env::consts::ARCH);
    if let Some(cpu) = cpu_model() {
        println!("cpu: {cpu}");
    }
    Ok(())
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}
