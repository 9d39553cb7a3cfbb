//! Writing values in the cache's binary encoding (see [`super`]).

use std::fmt;
use std::io::Write;

use serde::ser::{self, Serialize};

/// Why a value cannot be encoded or decoded.
#[derive(Debug)]
pub(crate) struct CodecError(pub String);

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

impl ser::Error for CodecError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        CodecError(message.to_string())
    }
}

impl serde::de::Error for CodecError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        CodecError(message.to_string())
    }
}

pub(crate) type Result<T> = std::result::Result<T, CodecError>;

/// Writes values to `W` (a `BufWriter` over the cache file).
pub(crate) struct Encoder<W: Write> {
    out: W,
}

impl<W: Write> Encoder<W> {
    pub(crate) fn new(out: W) -> Self {
        Encoder { out }
    }

    pub(crate) fn into_inner(self) -> W {
        self.out
    }

    pub(crate) fn encode<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(self)
    }

    fn bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| CodecError(e.to_string()))
    }

    fn count(&mut self, count: Option<usize>) -> Result<()> {
        let count = count.ok_or_else(|| CodecError("a sequence of unknown length".into()))?;
        let count = u32::try_from(count)
            .map_err(|_| CodecError(format!("a sequence of {count} items (at most 2^32 - 1)")))?;
        self.bytes(&count.to_le_bytes())
    }
}

macro_rules! encode_numbers {
    ($($method:ident: $type:ty),*) => {
        $(fn $method(self, value: $type) -> Result<()> {
            self.bytes(&value.to_le_bytes())
        })*
    };
}

impl<W: Write> ser::Serializer for &mut Encoder<W> {
    type Ok = ();
    type Error = CodecError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    encode_numbers!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128, serialize_f32: f32, serialize_f64: f64
    );

    fn serialize_bool(self, value: bool) -> Result<()> {
        self.bytes(&[value as u8])
    }

    fn serialize_char(self, value: char) -> Result<()> {
        self.bytes(&(value as u32).to_le_bytes())
    }

    fn serialize_str(self, value: &str) -> Result<()> {
        self.serialize_bytes(value.as_bytes())
    }

    fn serialize_bytes(self, value: &[u8]) -> Result<()> {
        self.count(Some(value.len()))?;
        self.bytes(value)
    }

    fn serialize_none(self) -> Result<()> {
        self.bytes(&[0])
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        self.bytes(&[1])?;
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<()> {
        Ok(())
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<()> {
        Ok(())
    }

    fn serialize_unit_variant(self, _: &'static str, index: u32, _: &'static str) -> Result<()> {
        self.serialize_u32(index)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<()> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        value: &T,
    ) -> Result<()> {
        self.serialize_u32(index)?;
        value.serialize(self)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self> {
        self.count(len)?;
        Ok(self)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self> {
        self.serialize_u32(index)?;
        Ok(self)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self> {
        self.count(len)?;
        Ok(self)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self> {
        self.serialize_u32(index)?;
        Ok(self)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The compound parts of a value are written one after the other.
macro_rules! encode_elements {
    ($($trait:ident :: $method:ident),*) => {
        $(impl<W: Write> ser::$trait for &mut Encoder<W> {
            type Ok = ();
            type Error = CodecError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<()> {
                Ok(())
            }
        })*
    };
}

encode_elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl<W: Write> ser::SerializeMap for &mut Encoder<W> {
    type Ok = ();
    type Error = CodecError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}

macro_rules! encode_fields {
    ($($trait:ident),*) => {
        $(impl<W: Write> ser::$trait for &mut Encoder<W> {
            type Ok = ();
            type Error = CodecError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                _: &'static str,
                value: &T,
            ) -> Result<()> {
                value.serialize(&mut **self)
            }
            fn skip_field(&mut self, key: &'static str) -> Result<()> {
                Err(CodecError(format!("the field `{key}` is skipped when serializing")))
            }
            fn end(self) -> Result<()> {
                Ok(())
            }
        })*
    };
}

encode_fields!(SerializeStruct, SerializeStructVariant);
