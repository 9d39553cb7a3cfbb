//! The GGUF file layout (gguf-py's `GGUFWriter`): header, metadata, tensor infos, padding to
//! [`ALIGNMENT`], then each tensor's bytes padded to [`ALIGNMENT`]. The infos hold every
//! tensor's offset, so the plan (names, shapes, types) is written first and the data streams
//! after it, one tensor at a time.

use std::io::{self, Write};

use crate::format::{ALIGNMENT, GgmlType, MAGIC, VERSION};
use crate::metadata::{Value, write_string};

/// What the header says about one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTensor {
    /// llama.cpp's name (`blk.0.attn_q.weight`).
    pub name: String,
    /// The shape in PyTorch order (outermost first); GGUF stores it reversed.
    pub shape: Vec<usize>,
    /// The storage type.
    pub ty: GgmlType,
}

impl PlannedTensor {
    /// Bytes of the tensor's data (without padding).
    pub fn byte_size(&self) -> usize {
        self.ty.byte_size(self.shape.iter().product())
    }
}

/// Bytes to add after `len` to reach the next multiple of [`ALIGNMENT`].
pub fn padding(len: u64) -> u64 {
    (ALIGNMENT - len % ALIGNMENT) % ALIGNMENT
}

/// Writes the header, metadata and tensor infos, padded so the data section starts aligned.
/// Returns the bytes written.
pub fn write_header(
    out: &mut impl Write,
    metadata: &[(String, Value)],
    tensors: &[PlannedTensor],
) -> io::Result<u64> {
    let mut head = Vec::new();
    head.extend_from_slice(&MAGIC.to_le_bytes());
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        write_string(&mut head, key)?;
        head.extend_from_slice(&value.type_id().to_le_bytes());
        value.write_payload(&mut head)?;
    }
    let mut offset = 0u64;
    for tensor in tensors {
        write_string(&mut head, &tensor.name)?;
        head.extend_from_slice(&(tensor.shape.len() as u32).to_le_bytes());
        for dim in tensor.shape.iter().rev() {
            head.extend_from_slice(&(*dim as u64).to_le_bytes());
        }
        head.extend_from_slice(&tensor.ty.id().to_le_bytes());
        head.extend_from_slice(&offset.to_le_bytes());
        let size = tensor.byte_size() as u64;
        offset += size + padding(size);
    }
    let pad = padding(head.len() as u64);
    head.extend(std::iter::repeat_n(0u8, pad as usize));
    out.write_all(&head)?;
    Ok(head.len() as u64)
}

/// Writes one tensor's bytes and the zeros that align the next one.
#[cfg(test)]
pub fn write_tensor_data(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    out.write_all(bytes)?;
    write_padding(out, bytes.len() as u64)
}

/// Writes the zeros that follow a tensor of `written` bytes so the next one starts aligned.
pub fn write_padding(out: &mut impl Write, written: u64) -> io::Result<()> {
    out.write_all(&vec![0u8; padding(written) as usize])
}
