//! `export`: a Hugging Face model folder to one GGUF file, tensor by tensor.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::arch::{ArchConfig, gguf_name, permute_rows};
use crate::error::{Error, Result};
use crate::format::{OutType, QUANTIZATION_VERSION};
use crate::metadata::Value;
use crate::plan::{ModelShape, tensor_type};
use crate::quant;
use crate::source::Source;
use crate::vocab::TokenizerFiles;
use crate::writer::{PlannedTensor, write_header, write_padding};

/// What to export, and how.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The model folder (config.json, safetensors, tokenizer.json).
    pub model_dir: PathBuf,
    /// The GGUF file to write (replaced if it exists; written whole or not at all).
    pub outfile: PathBuf,
    /// The file type.
    pub outtype: OutType,
    /// `general.name`; the folder's name when `None` (as the converter does).
    pub name: Option<String>,
}

/// What was written, for the command's report.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    /// llama.cpp's architecture name.
    pub arch: &'static str,
    /// Number of tensors written.
    pub tensors: usize,
    /// File size in bytes.
    pub bytes: u64,
    /// Tensor count per storage type (`q6_K: 2`).
    pub types: BTreeMap<String, usize>,
}

/// Where a tensor's values come from.
enum Data {
    /// A safetensors tensor, its rows permuted per `n_head` heads when `Some`.
    Source {
        hf_name: String,
        permute_heads: Option<usize>,
    },
    /// Values the converter computes (Llama 3's `rope_freqs.weight`).
    Computed(Vec<f32>),
}

/// Exports `options.model_dir` to `options.outfile`.
pub fn export(options: &ExportOptions) -> Result<ExportSummary> {
    export_in_chunks(options, CHUNK_VALUES)
}

/// [`export`], converting at most about `chunk_values` values of a tensor at a time.
fn export_in_chunks(options: &ExportOptions, chunk_values: usize) -> Result<ExportSummary> {
    let dir = &options.model_dir;
    if dir.join("adapter_config.json").is_file() {
        return Err(Error::Unsupported(format!(
            "{}: this is a LoRA adapter; merge it into its base first (`trl merge`; `trl export \
             gguf` merges an adapter folder itself) and export the merged folder",
            dir.display()
        )));
    }
    let config_path = dir.join("config.json");
    let config_text = std::fs::read_to_string(&config_path).map_err(Error::io(&config_path))?;
    let config: Json = serde_json::from_str(&config_text).map_err(|source| Error::Json {
        path: config_path.clone(),
        source,
    })?;
    let arch = ArchConfig::from_json(&config, &config_path.display().to_string())?;
    let source = Source::open(dir)?;
    let (planned, data) = plan_tensors(&arch, &source, options.outtype)?;
    let metadata = metadata(options, &arch, &config)?;

    let tmp = temp_path(&options.outfile);
    let result = write_file(&tmp, &metadata, &planned, &data, &source, chunk_values);
    if let Err(err) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(err);
    }
    std::fs::rename(&tmp, &options.outfile).map_err(Error::io(&options.outfile))?;
    let bytes = std::fs::metadata(&options.outfile)
        .map_err(Error::io(&options.outfile))?
        .len();
    let mut types = BTreeMap::new();
    for t in &planned {
        *types.entry(t.ty.name().to_string()).or_insert(0) += 1;
    }
    Ok(ExportSummary {
        arch: arch.arch,
        tensors: planned.len(),
        bytes,
        types,
    })
}

/// The GGUF tensors in the converter's order (computed tensors first, then the safetensors
/// order), with their types.
fn plan_tensors(
    arch: &ArchConfig,
    source: &Source,
    outtype: OutType,
) -> Result<(Vec<PlannedTensor>, Vec<Data>)> {
    let mut entries: Vec<(String, Vec<usize>, Data)> = Vec::new();
    if let Some(freqs) = arch.rope_freqs() {
        entries.push((
            "rope_freqs.weight".into(),
            vec![freqs.len()],
            Data::Computed(freqs),
        ));
    }
    for tensor in &source.tensors {
        let Some(name) = gguf_name(&tensor.name)? else {
            continue;
        };
        let permute_heads = if !arch.permutes_qk() {
            None
        } else if name.contains(".attn_q.") {
            Some(arch.n_heads)
        } else if name.contains(".attn_k.") {
            Some(arch.n_kv_heads)
        } else {
            None
        };
        let data = Data::Source {
            hf_name: tensor.name.clone(),
            permute_heads,
        };
        entries.push((name, tensor.shape.clone(), data));
    }
    let model = ModelShape {
        n_layers: arch.n_layers,
        tied_embeddings: !entries.iter().any(|(n, _, _)| n == "output.weight"),
    };
    let mut planned = Vec::with_capacity(entries.len());
    let mut data = Vec::with_capacity(entries.len());
    for (name, shape, d) in entries {
        let ty = tensor_type(&name, &shape, outtype, model)?;
        planned.push(PlannedTensor { name, shape, ty });
        data.push(d);
    }
    Ok((planned, data))
}

/// `general.*`, the architecture's hyperparameters and the tokenizer, in the converter's order.
fn metadata(
    options: &ExportOptions,
    arch: &ArchConfig,
    config: &Json,
) -> Result<Vec<(String, Value)>> {
    let name = options.name.clone().unwrap_or_else(|| {
        let dir = options
            .model_dir
            .canonicalize()
            .unwrap_or_else(|_| options.model_dir.clone());
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let mut kv = vec![
        (
            "general.architecture".to_string(),
            Value::String(arch.arch.into()),
        ),
        ("general.type".to_string(), Value::String("model".into())),
        ("general.name".to_string(), Value::String(name)),
    ];
    kv.extend(arch.metadata());
    kv.push((
        "general.file_type".into(),
        Value::U32(options.outtype.file_type()),
    ));
    kv.extend(TokenizerFiles::load(&options.model_dir, config)?.metadata(arch.vocab_size)?);
    kv.push((
        "general.quantization_version".into(),
        Value::U32(QUANTIZATION_VERSION),
    ));
    Ok(kv)
}

/// `out.gguf` -> `out.gguf.partial`, beside it so the final rename stays on one file system.
fn temp_path(outfile: &Path) -> PathBuf {
    let mut name = outfile.as_os_str().to_os_string();
    name.push(".partial");
    PathBuf::from(name)
}

/// Values converted and quantized at a time when a tensor is streamed (16 MB of f32).
const CHUNK_VALUES: usize = 1 << 22;

/// Writes the header, then each tensor: read (memory-mapped), permuted, quantized, written.
fn write_file(
    path: &Path,
    metadata: &[(String, Value)],
    planned: &[PlannedTensor],
    data: &[Data],
    source: &Source,
    chunk_values: usize,
) -> Result<()> {
    let file = File::create(path).map_err(Error::io(path))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    write_header(&mut out, metadata, planned).map_err(Error::io(path))?;
    for (tensor, d) in planned.iter().zip(data) {
        let written = match d {
            Data::Computed(values) => write_values(&mut out, tensor, values, path)?,
            Data::Source {
                hf_name,
                permute_heads,
            } => {
                let src = source.get(hf_name).ok_or_else(|| {
                    Error::Invalid(format!("tensor {hf_name} disappeared from the model"))
                })?;
                match permute_heads {
                    // q/k projections move rows across the whole tensor: converted in one piece.
                    Some(heads) => {
                        let values = permute_rows(&source.read_f32(src)?, tensor.shape[0], *heads);
                        write_values(&mut out, tensor, &values, path)?
                    }
                    // Blocks never span rows, so slices of rows quantize as the whole would.
                    None => {
                        let step = (chunk_values / src.row_len()).max(1);
                        let mut written = 0;
                        for start in (0..src.rows()).step_by(step) {
                            let rows = start..(start + step).min(src.rows());
                            let values = source.read_f32_rows(src, rows)?;
                            written += write_values(&mut out, tensor, &values, path)?;
                        }
                        written
                    }
                }
            }
        };
        write_padding(&mut out, written).map_err(Error::io(path))?;
    }
    out.flush().map_err(Error::io(path))?;
    out.into_inner()
        .map_err(|e| Error::io(path)(e.into_error()))?
        .sync_all()
        .map_err(Error::io(path))
}

/// Quantizes `values` (whole rows of `tensor`) to its type and writes them; returns the bytes.
fn write_values(
    out: &mut impl Write,
    tensor: &PlannedTensor,
    values: &[f32],
    path: &Path,
) -> Result<u64> {
    let bytes = quant::quantize(tensor.ty, values).ok_or_else(|| {
        Error::Unsupported(format!(
            "tensor {}: type {} is not written",
            tensor.name, tensor.ty
        ))
    })?;
    out.write_all(&bytes).map_err(Error::io(path))?;
    Ok(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_row_slices_writes_the_same_file_as_whole_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let model =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/tiny-llama");
        let write = |name: &str, chunk: usize| {
            let outfile = dir.path().join(name);
            let options = ExportOptions {
                model_dir: model.clone(),
                outfile: outfile.clone(),
                outtype: OutType::Q8_0,
                name: None,
            };
            export_in_chunks(&options, chunk).unwrap();
            std::fs::read(outfile).unwrap()
        };
        // 64 values: one row of a 64-wide matrix per slice.
        assert_eq!(write("rows.gguf", 64), write("whole.gguf", CHUNK_VALUES));
    }
}
