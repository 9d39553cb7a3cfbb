//! A minimal TensorBoard event-file writer, so `--report_to tensorboard` logs what transformers'
//! `TensorBoardCallback` logs: one scalar per metric, tagged `train/<name>`, at each logging step.
//!
//! Hand-written on purpose: no maintained Rust crate fits (the existing ones are unmaintained, pull
//! in a full protobuf toolchain, or write only through TensorFlow's C library). The format is small:
//! a file of length-prefixed, CRC32C-checked records, each one `Event` protobuf message. We encode
//! the three messages we need (`Event`, `Summary`, `Summary.Value`) by hand below, with the field
//! numbers of tensorflow/core/util/event.proto and tensorflow/core/framework/summary.proto.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Error, Result};

/// Writes scalars to one `events.out.tfevents.*` file that TensorBoard reads.
pub struct TensorBoardWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

impl TensorBoardWriter {
    /// Creates `log_dir` (and its parents) and a new event file in it, named as TensorFlow names
    /// them: `events.out.tfevents.{unix_seconds}.{hostname}.{pid}.0`. The first record is the
    /// `file_version: "brain.Event:2"` event TensorBoard expects. If a file of that name already
    /// exists (two writers in the same second), the last number counts up instead of overwriting.
    pub fn create(log_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(log_dir).map_err(|e| Error::io(log_dir, e))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let host = hostname();
        let pid = std::process::id();
        let mut suffix = 0u32;
        let (path, file) = loop {
            let path = log_dir.join(format!(
                "events.out.tfevents.{}.{host}.{pid}.{suffix}",
                now.as_secs()
            ));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && suffix < 1000 => {
                    suffix += 1;
                }
                Err(e) => return Err(Error::io(path, e)),
            }
        };
        let mut writer = TensorBoardWriter {
            path,
            file: BufWriter::new(file),
        };
        let mut event = Vec::new();
        put_fixed64(&mut event, 1, wall_time().to_bits());
        put_bytes(&mut event, 3, b"brain.Event:2");
        writer.write_record(&event)?;
        writer.flush()?;
        Ok(writer)
    }

    /// The event file this writer appends to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one event at `step` holding every `(name, value)` as a scalar tagged
    /// `train/<name>` (the tag transformers' `TensorBoardCallback` uses), then flushes so a running
    /// TensorBoard sees it. Values are stored as float32, like `SummaryWriter.add_scalar`.
    pub fn add_scalars(&mut self, step: i64, scalars: &[(String, f64)]) -> Result<()> {
        let mut summary = Vec::new();
        for (name, value) in scalars {
            let mut v = Vec::new();
            put_bytes(&mut v, 1, format!("train/{name}").as_bytes());
            put_key(&mut v, 2, WIRE_FIXED32);
            v.extend_from_slice(&(*value as f32).to_bits().to_le_bytes());
            put_bytes(&mut summary, 1, &v);
        }
        let mut event = Vec::new();
        put_fixed64(&mut event, 1, wall_time().to_bits());
        put_key(&mut event, 2, WIRE_VARINT);
        put_varint(&mut event, step as u64);
        put_bytes(&mut event, 5, &summary);
        self.write_record(&event)?;
        self.flush()
    }

    /// Frames one record as TFRecord does: u64 LE length, masked CRC32C of those 8 bytes, the
    /// data, masked CRC32C of the data.
    fn write_record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut record = Vec::with_capacity(data.len() + 16);
        record.extend_from_slice(&len);
        record.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
        record.extend_from_slice(data);
        record.extend_from_slice(&masked_crc32c(data).to_le_bytes());
        self.file
            .write_all(&record)
            .map_err(|e| Error::io(&self.path, e))
    }

    fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }
}

/// Seconds since the Unix epoch, with fractions, as TensorFlow's `wall_time`.
fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The host name for the file name (Python uses `socket.gethostname()`); without one, "localhost".
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

// ---- protobuf wire format (only what the three messages need) ----

const WIRE_VARINT: u32 = 0;
const WIRE_FIXED64: u32 = 1;
const WIRE_LEN: u32 = 2;
const WIRE_FIXED32: u32 = 5;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(out, u64::from((field << 3) | wire));
}

fn put_fixed64(out: &mut Vec<u8>, field: u32, bits: u64) {
    put_key(out, field, WIRE_FIXED64);
    out.extend_from_slice(&bits.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, WIRE_LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

// ---- CRC32C (Castagnoli), masked as TFRecord masks it ----
// Sixteen lines of table-driven CRC instead of a dependency; the test pins the standard check value.

const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = CRC32C_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    // TFRecord's mask: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One decoded event: (wall_time, step, file_version, [(tag, simple_value)]).
    type Decoded = (f64, i64, String, Vec<(String, f32)>);

    fn read_varint(buf: &[u8], pos: &mut usize) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = buf[*pos];
            *pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    /// Walks a message, calling `f(field, wire, payload)`; varints come as their 8 LE bytes.
    fn fields(buf: &[u8], mut f: impl FnMut(u32, u32, &[u8])) {
        let mut pos = 0;
        while pos < buf.len() {
            let key = read_varint(buf, &mut pos);
            let (field, wire) = ((key >> 3) as u32, (key & 7) as u32);
            match wire {
                WIRE_VARINT => {
                    let v = read_varint(buf, &mut pos);
                    f(field, wire, &v.to_le_bytes());
                }
                WIRE_FIXED64 => {
                    f(field, wire, &buf[pos..pos + 8]);
                    pos += 8;
                }
                WIRE_LEN => {
                    let n = read_varint(buf, &mut pos) as usize;
                    f(field, wire, &buf[pos..pos + n]);
                    pos += n;
                }
                WIRE_FIXED32 => {
                    f(field, wire, &buf[pos..pos + 4]);
                    pos += 4;
                }
                other => panic!("unexpected wire type {other}"),
            }
        }
    }

    fn decode_file(path: &Path) -> Vec<Decoded> {
        let bytes = std::fs::read(path).unwrap();
        let mut pos = 0;
        let mut events = Vec::new();
        while pos < bytes.len() {
            let len_bytes = &bytes[pos..pos + 8];
            let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
            let len_crc = u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().unwrap());
            assert_eq!(len_crc, masked_crc32c(len_bytes), "length CRC");
            let data = &bytes[pos + 12..pos + 12 + len];
            let data_crc =
                u32::from_le_bytes(bytes[pos + 12 + len..pos + 16 + len].try_into().unwrap());
            assert_eq!(data_crc, masked_crc32c(data), "data CRC");
            pos += 16 + len;

            let mut event: Decoded = (0.0, 0, String::new(), Vec::new());
            fields(data, |field, _, p| match field {
                1 => event.0 = f64::from_le_bytes(p.try_into().unwrap()),
                2 => event.1 = u64::from_le_bytes(p.try_into().unwrap()) as i64,
                3 => event.2 = String::from_utf8(p.to_vec()).unwrap(),
                5 => fields(p, |_, _, value| {
                    let (mut tag, mut simple) = (String::new(), f32::NAN);
                    fields(value, |field, _, q| match field {
                        1 => tag = String::from_utf8(q.to_vec()).unwrap(),
                        2 => simple = f32::from_le_bytes(q.try_into().unwrap()),
                        _ => {}
                    });
                    event.3.push((tag, simple));
                }),
                _ => {}
            });
            events.push(event);
        }
        events
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn writes_framed_events_that_decode_back() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("runs").join("exp");
        let mut writer = TensorBoardWriter::create(&log_dir).unwrap();
        let name = writer
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        assert!(
            name.ends_with(&format!(".{}.0", std::process::id())),
            "{name}"
        );

        writer
            .add_scalars(
                10,
                &[
                    ("loss".to_string(), 2.5),
                    ("learning_rate".to_string(), 1e-5),
                ],
            )
            .unwrap();
        writer
            .add_scalars(20, &[("loss".to_string(), 1.25)])
            .unwrap();
        // Flushed after each call: the file is complete without dropping the writer.
        let events = decode_file(writer.path());

        assert_eq!(events.len(), 3);
        assert_eq!(events[0].2, "brain.Event:2");
        assert!(events[0].0 > 1.5e9, "wall_time {}", events[0].0);
        assert!(events[0].3.is_empty());
        assert_eq!(events[1].1, 10);
        assert_eq!(
            events[1].3,
            vec![
                ("train/loss".to_string(), 2.5),
                ("train/learning_rate".to_string(), 1e-5f32)
            ]
        );
        assert_eq!(events[2].1, 20);
        assert_eq!(events[2].3, vec![("train/loss".to_string(), 1.25)]);
        assert!(events[2].0 >= events[0].0);
    }

    #[test]
    fn a_second_writer_in_the_same_second_gets_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = TensorBoardWriter::create(dir.path()).unwrap();
        let b = TensorBoardWriter::create(dir.path()).unwrap();
        assert_ne!(a.path(), b.path());
    }

    #[test]
    fn negative_steps_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = TensorBoardWriter::create(dir.path()).unwrap();
        writer.add_scalars(-1, &[("x".to_string(), 0.5)]).unwrap();
        assert_eq!(decode_file(writer.path())[1].1, -1);
    }
}
