//! Reads a GGUF file back: metadata, tensor infos and tensor bytes (memory-mapped). For the
//! export's own checks and for tests; it reads what llama.cpp reads, version 2 and 3 files.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::format::{ALIGNMENT, GgmlType, MAGIC};
use crate::metadata::Value;
use crate::quant;

/// A tensor as the file describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name.
    pub name: String,
    /// The shape in PyTorch order (outermost first), i.e. GGUF's dims reversed.
    pub shape: Vec<usize>,
    /// The storage type.
    pub ty: GgmlType,
    /// Offset of its bytes from the start of the data section.
    pub offset: u64,
}

/// An open GGUF file.
pub struct GgufFile {
    path: PathBuf,
    map: Mmap,
    /// The metadata in file order.
    pub metadata: Vec<(String, Value)>,
    /// The tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    data_start: usize,
}

/// A cursor over the file's bytes whose errors name the file and the offset.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(Error::Invalid(format!(
                "{}: truncated GGUF file (needed {n} bytes at offset {})",
                self.path.display(),
                self.pos
            )));
        };
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String> {
        let len = self.u64()? as usize;
        let pos = self.pos;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            Error::Invalid(format!(
                "{}: string at offset {pos} is not UTF-8",
                self.path.display()
            ))
        })
    }

    fn value(&mut self, type_id: u32) -> Result<Value> {
        Ok(match type_id {
            0 => Value::U8(self.array::<1>()?[0]),
            1 => Value::I8(self.array::<1>()?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array()?)),
            3 => Value::I16(i16::from_le_bytes(self.array()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.array()?)),
            6 => Value::F32(f32::from_le_bytes(self.array()?)),
            7 => Value::Bool(self.array::<1>()?[0] != 0),
            8 => Value::String(self.string()?),
            9 => {
                let elem = self.u32()?;
                let n = self.u64()?;
                let items = (0..n).map(|_| self.value(elem)).collect::<Result<_>>()?;
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            other => {
                return Err(Error::Invalid(format!(
                    "{}: unknown metadata value type {other} at offset {}",
                    self.path.display(),
                    self.pos
                )));
            }
        })
    }
}

impl GgufFile {
    /// Opens and parses `path` (memory-mapped; tensor bytes are read on demand).
    pub fn open(path: &Path) -> Result<GgufFile> {
        let file = File::open(path).map_err(Error::io(path))?;
        // Safety: the file is only read; a concurrent writer would be the caller's mistake.
        let map = unsafe { Mmap::map(&file) }.map_err(Error::io(path))?;
        let mut c = Cursor {
            bytes: &map,
            pos: 0,
            path,
        };
        if c.u32()? != MAGIC {
            return Err(Error::Invalid(format!(
                "{}: not a GGUF file",
                path.display()
            )));
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(Error::Unsupported(format!(
                "{}: GGUF version {version} (only 2 and 3 are read)",
                path.display()
            )));
        }
        let (n_tensors, n_kv) = (c.u64()?, c.u64()?);
        let mut metadata = Vec::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let type_id = c.u32()?;
            metadata.push((key, c.value(type_id)?));
        }
        let mut tensors = Vec::new();
        for _ in 0..n_tensors {
            tensors.push(read_tensor_info(&mut c)?);
        }
        let alignment = metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .unwrap_or(ALIGNMENT);
        let data_start = c.pos.div_ceil(alignment as usize) * alignment as usize;
        Ok(GgufFile {
            path: path.to_path_buf(),
            map,
            metadata,
            tensors,
            data_start,
        })
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The tensor info named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The stored bytes of `tensor`.
    pub fn tensor_bytes(&self, tensor: &TensorInfo) -> Result<&[u8]> {
        let start = self.data_start + tensor.offset as usize;
        let len = tensor.ty.byte_size(tensor.shape.iter().product());
        self.map.get(start..start + len).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: tensor {} runs past the end of the file",
                self.path.display(),
                tensor.name
            ))
        })
    }

    /// The values of `tensor`, dequantized to f32 (row-major, PyTorch order).
    pub fn tensor_f32(&self, tensor: &TensorInfo) -> Result<Vec<f32>> {
        quant::dequantize(tensor.ty, self.tensor_bytes(tensor)?).ok_or_else(|| {
            Error::Unsupported(format!(
                "tensor {}: type {} is not read",
                tensor.name, tensor.ty
            ))
        })
    }
}

fn read_tensor_info(c: &mut Cursor<'_>) -> Result<TensorInfo> {
    let name = c.string()?;
    let n_dims = c.u32()?;
    let mut shape = (0..n_dims)
        .map(|_| c.u64().map(|d| d as usize))
        .collect::<Result<Vec<_>>>()?;
    shape.reverse();
    let type_id = c.u32()?;
    let ty = GgmlType::from_id(type_id).ok_or_else(|| {
        Error::Unsupported(format!(
            "{}: tensor {name} has ggml type {type_id}, which is not read",
            c.path.display()
        ))
    })?;
    let offset = c.u64()?;
    Ok(TensorInfo {
        name,
        shape,
        ty,
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::{PlannedTensor, write_header, write_tensor_data};

    #[test]
    fn reads_back_what_the_writer_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gguf");
        let metadata = vec![
            (
                "general.architecture".to_string(),
                Value::String("llama".into()),
            ),
            ("llama.block_count".to_string(), Value::U32(2)),
            (
                "tokenizer.ggml.tokens".to_string(),
                Value::strings(["a".to_string(), "b".to_string()]),
            ),
        ];
        let values: Vec<f32> = (0..6).map(|i| i as f32 * 0.5).collect();
        let tensors = vec![
            PlannedTensor {
                name: "a".into(),
                shape: vec![3],
                ty: GgmlType::F32,
            },
            PlannedTensor {
                name: "b".into(),
                shape: vec![2, 3],
                ty: GgmlType::F32,
            },
        ];
        let mut out = Vec::new();
        write_header(&mut out, &metadata, &tensors).unwrap();
        write_tensor_data(
            &mut out,
            &quant::quantize(GgmlType::F32, &values[..3]).unwrap(),
        )
        .unwrap();
        write_tensor_data(&mut out, &quant::quantize(GgmlType::F32, &values).unwrap()).unwrap();
        std::fs::write(&path, out).unwrap();

        let file = GgufFile::open(&path).unwrap();
        assert_eq!(file.metadata, metadata);
        assert_eq!(file.tensors[1].shape, vec![2, 3]);
        assert_eq!(file.tensors[1].offset, 32);
        assert_eq!(file.tensor_f32(&file.tensors[1]).unwrap(), values);
    }

    #[test]
    fn a_truncated_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short.gguf");
        std::fs::write(&path, b"GGUF\x03\x00").unwrap();
        let err = GgufFile::open(&path).err().unwrap().to_string();
        assert!(
            err.contains("short.gguf") && err.contains("truncated"),
            "{err}"
        );
    }
}
