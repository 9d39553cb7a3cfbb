//! GGUF export: a Hugging Face model folder (config.json, safetensors, tokenizer.json) written
//! as the GGUF file llama.cpp's own tools produce (`convert_hf_to_gguf.py`, then `llama-quantize`
//! for the quantized types), so a model trained with trl-rs runs in llama.cpp, Ollama or LM
//! Studio without Python.
//!
//! The crate works on bytes only (no burn): tensors are memory-mapped from the safetensors files
//! and written one at a time, so a model larger than RAM exports. [`export`] is the entry point;
//! [`GgufFile`] reads a GGUF file back (metadata, tensor infos and data) for checks.

mod arch;
mod error;
mod export;
mod format;
mod metadata;
mod plan;
mod pretokenizer;
pub mod quant;
mod reader;
mod source;
mod vocab;
mod writer;

pub use error::{Error, Result};
pub use export::{ExportOptions, ExportSummary, export};
pub use format::{GgmlType, OutType};
pub use metadata::Value;
pub use reader::{GgufFile, TensorInfo};
