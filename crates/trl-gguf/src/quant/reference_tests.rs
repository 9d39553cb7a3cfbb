//! Our quantizers against llama.cpp's on the same inputs: gguf-py's numpy quantizers (bf16,
//! q8_0, q4_0, q5_0, q5_1) and ggml's C reference (q4_K, q5_K, q6_K), byte for byte, from
//! `fixtures/expected/gguf/quantizers.json` (written by `reference/gguf_reference.py`).

use std::path::PathBuf;

use serde_json::Value;

use super::quantize;
use crate::format::GgmlType;

fn fixture() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/expected/gguf/quantizers.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn inputs(fixture: &Value) -> Vec<f32> {
    fixture["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first differing block, for a readable failure.
fn first_difference(ours: &str, theirs: &str, block_bytes: usize) -> String {
    let width = 2 * block_bytes;
    let at = ours
        .chars()
        .zip(theirs.chars())
        .position(|(a, b)| a != b)
        .unwrap_or(0)
        / width;
    let slice = |s: &str| {
        s.get(at * width..(at + 1) * width)
            .unwrap_or("")
            .to_string()
    };
    format!(
        "block {at}:\n ours   {}\n theirs {}",
        slice(ours),
        slice(theirs)
    )
}

#[test]
fn quantized_bytes_equal_llama_cpps() {
    let fixture = fixture();
    let x = inputs(&fixture);
    let cases = [
        ("bf16", GgmlType::BF16),
        ("q8_0", GgmlType::Q8_0),
        ("q4_0", GgmlType::Q4_0),
        ("q5_0", GgmlType::Q5_0),
        ("q5_1", GgmlType::Q5_1),
        ("q4_K", GgmlType::Q4K),
        ("q5_K", GgmlType::Q5K),
        ("q6_K", GgmlType::Q6K),
    ];
    let mut failures = Vec::new();
    for (key, ty) in cases {
        let ours = hex(&quantize(ty, &x).unwrap());
        let theirs = fixture[key].as_str().unwrap();
        if ours != theirs {
            failures.push(format!(
                "{key}: {}",
                first_difference(&ours, theirs, ty.type_size())
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
