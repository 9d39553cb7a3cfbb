//! GGUF's numbering: tensor types (ggml's `GGML_TYPE_*`), the file types users ask for
//! (`--outtype`, llama.cpp's `LLAMA_FTYPE_*`) and the constants of the file layout.

use std::fmt;
use std::str::FromStr;

/// `"GGUF"` read as a little-endian u32.
pub const MAGIC: u32 = 0x4655_4747;
/// The GGUF version llama.cpp writes.
pub const VERSION: u32 = 3;
/// Alignment of the tensor data section and of every tensor in it (`general.alignment`'s default).
pub const ALIGNMENT: u64 = 32;
/// `general.quantization_version`: ggml's `GGML_QNT_VERSION`.
pub const QUANTIZATION_VERSION: u32 = 2;
/// Elements in a k-quant super-block (ggml's `QK_K`).
pub const QK_K: usize = 256;

/// A tensor's storage type in a GGUF file (the subset we write or read back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
    BF16,
}

impl GgmlType {
    /// Every type, for lookups by id.
    pub const ALL: [GgmlType; 11] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::BF16,
    ];

    /// ggml's numeric id, as stored in a tensor info.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::BF16 => 30,
        }
    }

    /// The type with ggml id `id`, if we know it.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| t.id() == id)
    }

    /// Elements per block (1 for the float types).
    pub fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => {
                32
            }
            GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 2 + 16,
            GgmlType::Q4_1 => 2 + 2 + 16,
            GgmlType::Q5_0 => 2 + 4 + 16,
            GgmlType::Q5_1 => 2 + 2 + 4 + 16,
            GgmlType::Q8_0 => 2 + 32,
            GgmlType::Q4K => 2 + 2 + 12 + QK_K / 2,
            GgmlType::Q5K => 2 + 2 + 12 + QK_K / 8 + QK_K / 2,
            GgmlType::Q6K => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
        }
    }

    /// Bytes of a tensor of `n_elements` elements (a multiple of the block size).
    pub fn byte_size(self, n_elements: usize) -> usize {
        n_elements / self.block_size() * self.type_size()
    }

    /// ggml's name for the type (`q4_K`, `f16`, ...), as llama.cpp prints it.
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "f32",
            GgmlType::F16 => "f16",
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q4_1 => "q4_1",
            GgmlType::Q5_0 => "q5_0",
            GgmlType::Q5_1 => "q5_1",
            GgmlType::Q8_0 => "q8_0",
            GgmlType::Q4K => "q4_K",
            GgmlType::Q5K => "q5_K",
            GgmlType::Q6K => "q6_K",
            GgmlType::BF16 => "bf16",
        }
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The file type a user asks for (`--outtype`): one type for most 2-D weights, with llama.cpp's
/// rules for the tensors kept at another precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4KM,
    Q5KM,
    Q6K,
}

impl OutType {
    /// Every outtype with its command-line name.
    pub const ALL: [(OutType, &'static str); 8] = [
        (OutType::F32, "f32"),
        (OutType::F16, "f16"),
        (OutType::BF16, "bf16"),
        (OutType::Q8_0, "q8_0"),
        (OutType::Q4_0, "q4_0"),
        (OutType::Q4KM, "q4_k_m"),
        (OutType::Q5KM, "q5_k_m"),
        (OutType::Q6K, "q6_k"),
    ];

    /// The command-line name (`q4_k_m`).
    pub fn name(self) -> &'static str {
        OutType::ALL
            .iter()
            .find(|(t, _)| *t == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }

    /// `general.file_type`: llama.cpp's `LLAMA_FTYPE_*` number.
    pub fn file_type(self) -> u32 {
        match self {
            OutType::F32 => 0,
            OutType::F16 => 1,
            OutType::Q4_0 => 2,
            OutType::Q8_0 => 7,
            OutType::Q4KM => 15,
            OutType::Q5KM => 17,
            OutType::Q6K => 18,
            OutType::BF16 => 32,
        }
    }

    /// The type of an ordinary 2-D weight (`llama_ftype_get_default_type`).
    pub fn default_type(self) -> GgmlType {
        match self {
            OutType::F32 => GgmlType::F32,
            OutType::F16 => GgmlType::F16,
            OutType::BF16 => GgmlType::BF16,
            OutType::Q8_0 => GgmlType::Q8_0,
            OutType::Q4_0 => GgmlType::Q4_0,
            OutType::Q4KM => GgmlType::Q4K,
            OutType::Q5KM => GgmlType::Q5K,
            OutType::Q6K => GgmlType::Q6K,
        }
    }
}

impl FromStr for OutType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        OutType::ALL
            .iter()
            .find(|(_, name)| *name == lower)
            .map(|(t, _)| *t)
            .ok_or_else(|| {
                let names: Vec<&str> = OutType::ALL.iter().map(|(_, n)| *n).collect();
                format!(
                    "unknown outtype {s:?}; the outtypes are {}",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_match_ggml() {
        // GGML_QUANT_SIZES in gguf-py's constants.py.
        assert_eq!(GgmlType::Q4K.type_size(), 144);
        assert_eq!(GgmlType::Q5K.type_size(), 176);
        assert_eq!(GgmlType::Q6K.type_size(), 210);
        assert_eq!(GgmlType::Q8_0.byte_size(64), 68);
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
        }
    }

    #[test]
    fn outtypes_parse_by_name() {
        for (t, name) in OutType::ALL {
            assert_eq!(name.parse::<OutType>(), Ok(t));
        }
        assert!("q3_k".parse::<OutType>().unwrap_err().contains("q4_k_m"));
    }
}
