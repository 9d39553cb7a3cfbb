//! The model's weights, memory-mapped from its safetensors file(s) (one file or the shards of
//! `model.safetensors.index.json`); a tensor is converted to f32 only when it is written, so
//! at most one tensor is in memory at a time.

use std::collections::BTreeSet;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

/// Where one tensor lives.
#[derive(Debug, Clone)]
pub struct SourceTensor {
    /// The Hugging Face name (`model.layers.0.self_attn.q_proj.weight`).
    pub name: String,
    /// The shape in PyTorch order.
    pub shape: Vec<usize>,
    dtype: Dtype,
    shard: usize,
    range: (usize, usize),
}

/// The memory-mapped safetensors of a model folder.
pub struct Source {
    paths: Vec<PathBuf>,
    maps: Vec<Mmap>,
    /// Every tensor, shard by shard in file order (the order the converter reads them).
    pub tensors: Vec<SourceTensor>,
}

impl Source {
    /// Maps the safetensors of `dir`: `model.safetensors`, or every shard the index names.
    pub fn open(dir: &Path) -> Result<Source> {
        let paths = shard_paths(dir)?;
        let mut maps = Vec::new();
        let mut tensors = Vec::new();
        for (shard, path) in paths.iter().enumerate() {
            let file = File::open(path).map_err(Error::io(path))?;
            // Safety: the weights are only read; the folder must not change during the export.
            let map = unsafe { Mmap::map(&file) }.map_err(Error::io(path))?;
            let (header_len, meta) = SafeTensors::read_metadata(&map).map_err(|e| {
                Error::Invalid(format!("{}: invalid safetensors file: {e}", path.display()))
            })?;
            let data_start = 8 + header_len;
            let infos = meta.tensors();
            for name in meta.offset_keys() {
                let info = infos[&name];
                let (start, end) = info.data_offsets;
                tensors.push(SourceTensor {
                    name,
                    shape: info.shape.clone(),
                    dtype: info.dtype,
                    shard,
                    range: (data_start + start, data_start + end),
                });
            }
            maps.push(map);
        }
        Ok(Source {
            paths,
            maps,
            tensors,
        })
    }

    /// The tensor named `name`, if the model has it.
    pub fn get(&self, name: &str) -> Option<&SourceTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The values of `tensor` as f32 (exact for f32, f16 and bf16 weights).
    pub fn read_f32(&self, tensor: &SourceTensor) -> Result<Vec<f32>> {
        self.read_f32_rows(tensor, 0..tensor.rows())
    }

    /// Rows `rows` of `tensor` (rows of its last dimension) as f32, so a large tensor can be
    /// converted a slice at a time.
    pub fn read_f32_rows(&self, tensor: &SourceTensor, rows: Range<usize>) -> Result<Vec<f32>> {
        let width = tensor.row_len() * tensor.dtype.bitsize() / 8;
        let start = tensor.range.0 + rows.start * width;
        let bytes = &self.maps[tensor.shard][start..start + rows.len() * width];
        let values = match tensor.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::Unsupported(format!(
                    "{}: tensor {} is {other:?}; only F32, F16 and BF16 weights are exported",
                    self.paths[tensor.shard].display(),
                    tensor.name
                )));
            }
        };
        Ok(values)
    }
}

impl SourceTensor {
    /// Values per row (the last dimension; 1 for a scalar).
    pub fn row_len(&self) -> usize {
        self.shape.last().copied().unwrap_or(1).max(1)
    }

    /// Number of rows (every dimension but the last).
    pub fn rows(&self) -> usize {
        self.shape.iter().product::<usize>() / self.row_len()
    }
}

/// The safetensors files of `dir`, in the converter's order (sorted shard names).
fn shard_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index_path = dir.join("model.safetensors.index.json");
    if !index_path.is_file() {
        return Err(Error::Unsupported(format!(
            "{}: no model.safetensors or model.safetensors.index.json (only safetensors weights are exported)",
            dir.display()
        )));
    }
    let text = std::fs::read_to_string(&index_path).map_err(Error::io(&index_path))?;
    let index: serde_json::Value = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: index_path.clone(),
        source,
    })?;
    let map = index
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{}: no \"weight_map\" object",
                index_path.display()
            ))
        })?;
    let files: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}
