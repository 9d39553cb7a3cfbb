//! The `trl` binary; all of its code lives in the trl-cli crate.

/// See the `mimalloc` entry of Cargo.toml: freed activation buffers go back to the system.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    trl_cli::main()
}
