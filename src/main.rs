//! The `trl` binary; all of its code lives in the trl-cli crate.

fn main() -> std::process::ExitCode {
    trl_cli::main()
}
