//! trl-core: everything the trl-rs methods share.
//!
//! - [`model`]: the decoder-only transformer family (Llama, Mistral, Qwen2, Qwen3) built from a
//!   Hugging Face `config.json`, its reward head, and safetensors loading/saving in HF layout.
//! - [`tokenizer`]: `tokenizer.json` + `tokenizer_config.json` semantics and chat templates.
//! - [`hub`]: resolving a model id to a local folder through the Hugging Face cache.
//!
//! Architecture invariants: trl-core knows no method; it never enables a burn backend.

pub mod completions;
pub mod data;
pub mod error;
pub mod generate;
pub mod host;
pub mod hub;
pub mod kernels;
pub mod logprobs;
pub mod lora;
pub mod model;
pub mod parity;
pub mod precision;
pub mod random_stream;
pub mod tokenizer;
pub mod train;

pub use error::{Error, Result};

/// The burn release trl-core is built against, reported by `trl env`.
pub const BURN_VERSION: &str = "0.22.1";
