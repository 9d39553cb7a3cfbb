//! GGUF metadata values and their encoding (`GGUFValueType` in gguf-py).

use std::io::{self, Write};

/// One metadata value. Arrays hold values of one type (GGUF's rule), which the constructors
/// used by the exporter guarantee.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// GGUF's type id of the value (`GGUFValueType`).
    pub fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => 8,
            Value::Array(_) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a u64, if it is an unsigned or non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as an f64, if it is a float.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The elements, if the value is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// An array of strings.
    pub fn strings<I: IntoIterator<Item = String>>(items: I) -> Value {
        Value::Array(items.into_iter().map(Value::String).collect())
    }

    /// Writes the value's payload (without its type id): what follows the type in a KV pair.
    pub(crate) fn write_payload(&self, out: &mut impl Write) -> io::Result<()> {
        match self {
            Value::U8(v) => out.write_all(&v.to_le_bytes()),
            Value::I8(v) => out.write_all(&v.to_le_bytes()),
            Value::U16(v) => out.write_all(&v.to_le_bytes()),
            Value::I16(v) => out.write_all(&v.to_le_bytes()),
            Value::U32(v) => out.write_all(&v.to_le_bytes()),
            Value::I32(v) => out.write_all(&v.to_le_bytes()),
            Value::F32(v) => out.write_all(&v.to_le_bytes()),
            Value::Bool(v) => out.write_all(&[u8::from(*v)]),
            Value::String(s) => write_string(out, s),
            Value::U64(v) => out.write_all(&v.to_le_bytes()),
            Value::I64(v) => out.write_all(&v.to_le_bytes()),
            Value::F64(v) => out.write_all(&v.to_le_bytes()),
            Value::Array(items) => {
                // An empty array is written as an array of u8 (any type would do).
                let elem_type = items.first().map_or(0, Value::type_id);
                out.write_all(&elem_type.to_le_bytes())?;
                out.write_all(&(items.len() as u64).to_le_bytes())?;
                items.iter().try_for_each(|item| item.write_payload(out))
            }
        }
    }
}

/// A GGUF string: u64 byte length, then UTF-8 bytes.
pub(crate) fn write_string(out: &mut impl Write, s: &str) -> io::Result<()> {
    out.write_all(&(s.len() as u64).to_le_bytes())?;
    out.write_all(s.as_bytes())
}
