//! Reading and writing weights in Hugging Face's safetensors layout, by HF tensor name.
//!
//! Loading accepts one `model.safetensors` or a sharded checkpoint
//! (`model.safetensors.index.json` + shards) stored in f32, bf16 or f16; every tensor is
//! converted to f32 on the host. Saving writes f32 `model.safetensors` with HF names, so
//! `transformers` loads our output unchanged.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::{Device, Tensor, TensorData};
use memmap2::Mmap;
pub use safetensors::Dtype;
use safetensors::{SafeTensors, View, tensor::TensorView};

use crate::{Error, Result};

/// File name of a single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// File name of the index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Every tensor of a checkpoint, readable by name; tracks which names were used so that
/// leftovers can be reported.
pub struct WeightReader {
    files: Vec<(PathBuf, Mmap)>,
    /// tensor name -> index into `files`
    location: HashMap<String, usize>,
    used: HashSet<String>,
}

impl WeightReader {
    /// Opens the checkpoint in `dir` (single file or sharded).
    pub fn open(dir: &Path) -> Result<Self> {
        let index_path = dir.join(INDEX_FILE);
        let single_path = dir.join(SINGLE_FILE);
        let shard_names: Vec<String> = if single_path.is_file() {
            vec![SINGLE_FILE.to_string()]
        } else if index_path.is_file() {
            shards_from_index(&index_path)?
        } else {
            return Err(Error::Weights {
                message: format!(
                    "{}: no {SINGLE_FILE} or {INDEX_FILE} (only safetensors checkpoints are supported)",
                    dir.display()
                ),
            });
        };
        let paths: Vec<PathBuf> = shard_names.iter().map(|name| dir.join(name)).collect();
        Self::open_files(paths)
    }

    /// Opens one safetensors file on its own (optimizer states and other non-model files).
    pub fn open_file(path: &Path) -> Result<Self> {
        Self::open_files(vec![path.to_path_buf()])
    }

    fn open_files(paths: Vec<PathBuf>) -> Result<Self> {
        let mut files = Vec::new();
        let mut location = HashMap::new();
        for (index, path) in paths.into_iter().enumerate() {
            let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            // SAFETY: the map is read-only and the file is not modified while we hold it.
            let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
            let tensors = SafeTensors::deserialize(&mmap).map_err(|e| Error::Weights {
                message: format!(
                    "{}: not a valid safetensors file ({e}); is it truncated?",
                    path.display()
                ),
            })?;
            for tensor_name in tensors.names() {
                location.insert(tensor_name.to_string(), index);
            }
            files.push((path, mmap));
        }
        Ok(WeightReader {
            files,
            location,
            used: HashSet::new(),
        })
    }

    /// Number of elements of tensor `name` (0 when absent).
    pub fn numel(&self, name: &str) -> usize {
        let Some(&index) = self.location.get(name) else {
            return 0;
        };
        let (_, mmap) = &self.files[index];
        SafeTensors::deserialize(mmap)
            .ok()
            .and_then(|t| t.tensor(name).ok().map(|v| v.shape().iter().product()))
            .unwrap_or(0)
    }

    /// Every tensor name in the checkpoint.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.location.keys().map(String::as_str)
    }

    /// Whether the checkpoint holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.location.contains_key(name)
    }

    /// Reads `name` as f32 values, checking that its shape is `shape`.
    pub fn read(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let &file_index = self.location.get(name).ok_or_else(|| Error::Weights {
            message: format!(
                "tensor {name:?} is missing from the checkpoint (expected shape {shape:?})"
            ),
        })?;
        let (path, mmap) = &self.files[file_index];
        let tensors = SafeTensors::deserialize(mmap).map_err(|e| Error::Weights {
            message: format!("{}: {e}", path.display()),
        })?;
        let view = tensors.tensor(name).map_err(|e| Error::Weights {
            message: format!("{}: tensor {name:?}: {e}", path.display()),
        })?;
        if view.shape() != shape {
            return Err(Error::Weights {
                message: format!(
                    "tensor {name:?} in {} has shape {:?}, but config.json implies {shape:?}",
                    path.display(),
                    view.shape()
                ),
            });
        }
        self.used.insert(name.to_string());
        to_f32(&view).map_err(|dtype| Error::Weights {
            message: format!(
                "tensor {name:?} in {} has dtype {dtype:?}; supported: F32, BF16, F16",
                path.display()
            ),
        })
    }

    /// Names present in the checkpoint that no module read, sorted; `rotary_emb.inv_freq`
    /// buffers that old checkpoints carry are not reported.
    pub fn unused(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .location
            .keys()
            .filter(|n| !self.used.contains(*n) && !n.ends_with("rotary_emb.inv_freq"))
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// A `[rows, cols]` tensor as stored.
    pub fn tensor2(&mut self, name: &str, shape: [usize; 2], device: &Device) -> Result<Tensor<2>> {
        let data = self.read(name, &shape)?;
        Ok(Tensor::from_data(TensorData::new(data, shape), device))
    }

    /// A `[len]` tensor.
    pub fn tensor1(&mut self, name: &str, len: usize, device: &Device) -> Result<Tensor<1>> {
        let data = self.read(name, &[len])?;
        Ok(Tensor::from_data(TensorData::new(data, [len]), device))
    }

    /// An HF `nn.Linear` (`{prefix}.weight` `[out, in]`, optional `{prefix}.bias`) as burn's
    /// [`Linear`], whose weight is `[in, out]`.
    pub fn linear(
        &mut self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
        device: &Device,
    ) -> Result<Linear> {
        let hf = self.read(&format!("{prefix}.weight"), &[d_out, d_in])?;
        let weight = Tensor::from_data(
            TensorData::new(transpose(&hf, d_out, d_in), [d_in, d_out]),
            device,
        );
        let bias = if bias {
            Some(Param::from_tensor(self.tensor1(
                &format!("{prefix}.bias"),
                d_out,
                device,
            )?))
        } else {
            None
        };
        Ok(Linear {
            weight: Param::from_tensor(weight),
            bias,
        })
    }

    /// An HF `nn.Embedding` (`{prefix}.weight` `[vocab, hidden]`, same layout as burn's).
    pub fn embedding(
        &mut self,
        prefix: &str,
        vocab: usize,
        hidden: usize,
        device: &Device,
    ) -> Result<Embedding> {
        let weight = self.tensor2(&format!("{prefix}.weight"), [vocab, hidden], device)?;
        Ok(Embedding {
            weight: Param::from_tensor(weight),
        })
    }

    /// An HF RMSNorm (`{prefix}.weight` `[dim]`).
    pub fn rms_norm(
        &mut self,
        prefix: &str,
        dim: usize,
        epsilon: f64,
        device: &Device,
    ) -> Result<RmsNorm> {
        let gamma = self.tensor1(&format!("{prefix}.weight"), dim, device)?;
        Ok(RmsNorm {
            gamma: Param::from_tensor(gamma),
            epsilon,
        })
    }
}

fn shards_from_index(index_path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index_path).map_err(|e| Error::io(index_path, e))?;
    let index: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::json(index_path, e))?;
    let map = index
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::Weights {
            message: format!("{}: expected a \"weight_map\" object", index_path.display()),
        })?;
    let mut shards: Vec<String> = Vec::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| Error::Weights {
            message: format!(
                "{}: weight_map[{tensor:?}] is not a file name",
                index_path.display()
            ),
        })?;
        if !shards.iter().any(|s| s == file) {
            shards.push(file.to_string());
        }
    }
    Ok(shards)
}

fn to_f32(view: &TensorView<'_>) -> Result<Vec<f32>, Dtype> {
    let bytes = view.data();
    let halves = |convert: fn(u16) -> f32| {
        bytes
            .chunks_exact(2)
            .map(|c| convert(u16::from_le_bytes([c[0], c[1]])))
            .collect()
    };
    match view.dtype() {
        Dtype::F32 => Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()),
        Dtype::BF16 => Ok(halves(|b| half::bf16::from_bits(b).to_f32())),
        Dtype::F16 => Ok(halves(|b| half::f16::from_bits(b).to_f32())),
        other => Err(other),
    }
}

/// Row-major `[rows, cols]` -> `[cols, rows]`, on the host: loading and saving only.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// Collects named tensors and writes them as one `model.safetensors` in HF layout.
#[derive(Default)]
pub struct WeightWriter {
    /// name -> (shape, f32 values); sorted like safetensors stores them.
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl WeightWriter {
    /// Adds a tensor read back from the device.
    pub fn add<const D: usize>(&mut self, name: &str, tensor: Tensor<D>) -> Result<()> {
        let shape = tensor.dims().to_vec();
        // Converted from whatever dtype the backend computed in (bf16/f16), not refused.
        let data = tensor
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::Weights {
                message: format!("tensor {name:?} could not be read back as f32: {e:?}"),
            })?;
        self.tensors.insert(name.to_string(), (shape, data));
        Ok(())
    }

    /// Adds host values directly (small bookkeeping tensors such as an optimizer step count).
    pub fn add_values(&mut self, name: &str, shape: Vec<usize>, data: Vec<f32>) {
        self.tensors.insert(name.to_string(), (shape, data));
    }

    /// Adds burn's [`Linear`] under HF names, weight transposed back to `[out, in]`.
    pub fn linear(&mut self, prefix: &str, linear: &Linear) -> Result<()> {
        let [d_in, d_out] = linear.weight.val().dims();
        let data = linear
            .weight
            .val()
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::Weights {
                message: format!("tensor {prefix}.weight could not be read back: {e:?}"),
            })?;
        self.tensors.insert(
            format!("{prefix}.weight"),
            (vec![d_out, d_in], transpose(&data, d_in, d_out)),
        );
        if let Some(bias) = &linear.bias {
            self.add(&format!("{prefix}.bias"), bias.val())?;
        }
        Ok(())
    }

    /// Adds an embedding table as `{prefix}.weight`.
    pub fn embedding(&mut self, prefix: &str, embedding: &Embedding) -> Result<()> {
        self.add(&format!("{prefix}.weight"), embedding.weight.val())
    }

    /// Adds an RMSNorm as `{prefix}.weight`.
    pub fn rms_norm(&mut self, prefix: &str, norm: &RmsNorm) -> Result<()> {
        self.add(&format!("{prefix}.weight"), norm.gamma.val())
    }

    /// Writes `path` (f32, `{"format": "pt"}` metadata as transformers expects).
    pub fn write(&self, path: &Path) -> Result<()> {
        self.write_as(path, Dtype::F32)
    }

    /// Writes `path` with every tensor stored as `dtype` (F32, BF16 or F16, rounded to
    /// nearest even as torch's `.to()` does): a merged checkpoint keeps its base's dtype.
    /// Each tensor is encoded as safetensors writes it (f32 straight from its values), so a
    /// save needs no second copy of the whole model in file bytes.
    pub fn write_as(&self, path: &Path, dtype: Dtype) -> Result<()> {
        let dtype = if matches!(dtype, Dtype::BF16 | Dtype::F16) {
            dtype
        } else {
            Dtype::F32
        };
        for (name, (shape, data)) in &self.tensors {
            if shape.iter().product::<usize>() != data.len() {
                return Err(Error::Weights {
                    message: format!("tensor {name:?}: shape {shape:?} but {} values", data.len()),
                });
            }
        }
        let views = self.tensors.iter().map(|(name, (shape, data))| {
            let view = EncodedView { dtype, shape, data };
            (name.clone(), view)
        });
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize_to_file(views, Some(metadata), path).map_err(|e| Error::Weights {
            message: format!("{}: could not write safetensors: {e}", path.display()),
        })
    }
}

/// One tensor's f32 values as safetensors reads them while writing: in `dtype` (F32, BF16 or
/// F16), encoded only when its turn comes.
struct EncodedView<'a> {
    dtype: Dtype,
    shape: &'a [usize],
    data: &'a [f32],
}

impl View for EncodedView<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        match self.dtype {
            Dtype::BF16 => Cow::Owned(
                self.data
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
            Dtype::F16 => Cow::Owned(
                self.data
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
            _ => Cow::Borrowed(bytemuck::cast_slice::<f32, u8>(self.data)),
        }
    }

    fn data_len(&self) -> usize {
        self.data.len() * self.dtype.bitsize() / 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_round_trips() {
        let data: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let t = transpose(&data, 2, 3);
        assert_eq!(t, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(transpose(&t, 3, 2), data);
    }

    #[test]
    fn truncated_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = WeightWriter::default();
        writer
            .tensors
            .insert("a.weight".into(), (vec![4], vec![1.0; 4]));
        let path = dir.path().join(SINGLE_FILE);
        writer.write(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = WeightReader::open(dir.path()).err().unwrap().to_string();
        assert!(
            err.contains("model.safetensors") && err.contains("truncated"),
            "{err}"
        );
    }

    #[test]
    fn wrong_shape_names_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = WeightWriter::default();
        writer
            .tensors
            .insert("a.weight".into(), (vec![4], vec![1.0; 4]));
        writer.write(&dir.path().join(SINGLE_FILE)).unwrap();
        let mut reader = WeightReader::open(dir.path()).unwrap();
        let err = reader.read("a.weight", &[5]).unwrap_err().to_string();
        assert!(err.contains("a.weight") && err.contains("[5]"), "{err}");
        let err = reader.read("b.weight", &[5]).unwrap_err().to_string();
        assert!(err.contains("b.weight") && err.contains("missing"), "{err}");
    }

    #[test]
    fn bf16_writing_rounds_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = WeightWriter::default();
        writer.add_values("w", vec![3], vec![1.0, 1.0 + 1.0 / 256.0 + 1e-4, -2.5]);
        writer
            .write_as(&dir.path().join(SINGLE_FILE), Dtype::BF16)
            .unwrap();
        let mut reader = WeightReader::open(dir.path()).unwrap();
        // 1.0039... + 1e-4 rounds to the bf16 neighbour 1.0078125.
        assert_eq!(reader.read("w", &[3]).unwrap(), vec![1.0, 1.0078125, -2.5]);
    }
}
