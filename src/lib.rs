//! trl-rs as a library: the facade over the workspace crates. Backend features (`flex`,
//! `wgpu`, `cuda`) are chosen here and forwarded to trl-cli, the only crate that enables them.

pub use trl_cli as cli;
pub use trl_core as core;
