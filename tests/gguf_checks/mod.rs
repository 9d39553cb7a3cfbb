//! Checks of exported GGUF files shared by `tests/export.rs`: the expected tensor names, types
//! and values from the safetensors weights, the gguf-py / llama.cpp reference check, and a
//! synthetic 256-wide model for the k-quants.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use trl_gguf::{GgmlType, GgufFile};

use crate::common::{read_json, root, text};

/// llama.cpp's name for a Hugging Face tensor name.
pub fn gguf_name(hf: &str) -> String {
    match hf {
        "model.embed_tokens.weight" => return "token_embd.weight".into(),
        "model.norm.weight" => return "output_norm.weight".into(),
        "lm_head.weight" => return "output.weight".into(),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (layer, part) = rest.split_once('.').unwrap();
    let (module, suffix) = part.rsplit_once('.').unwrap();
    let short = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        other => match other.rsplit_once('.').unwrap().1 {
            "q_proj" => "attn_q",
            "k_proj" => "attn_k",
            "v_proj" => "attn_v",
            "o_proj" => "attn_output",
            "q_norm" => "attn_q_norm",
            "k_norm" => "attn_k_norm",
            "gate_proj" => "ffn_gate",
            "up_proj" => "ffn_up",
            "down_proj" => "ffn_down",
            unknown => panic!("unexpected tensor {unknown}"),
        },
    };
    format!("blk.{layer}.{short}.{suffix}")
}

/// The safetensors weights of a model folder by GGUF name, as f32 with their shapes.
pub fn weights(dir: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "safetensors") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for (name, view) in tensors.tensors() {
            let values: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => view
                    .data()
                    .chunks(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
                safetensors::Dtype::BF16 => view
                    .data()
                    .chunks(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                other => panic!("{}: unexpected dtype {other:?}", path.display()),
            };
            out.insert(gguf_name(&name), (view.shape().to_vec(), values));
        }
    }
    out
}

/// convert_hf_to_gguf.py's `LlamaModel.permute`, written out: row (h, t, j) -> (h, j, t).
pub fn permute(values: &[f32], shape: &[usize], heads: usize) -> Vec<f32> {
    let (rows, cols) = (shape[0], shape[1]);
    let half = rows / heads / 2;
    let mut out = vec![0f32; values.len()];
    for r in 0..rows {
        let (h, t, j) = (r / (2 * half), (r / half) % 2, r % half);
        let dst = h * 2 * half + 2 * j + t;
        out[dst * cols..(dst + 1) * cols].copy_from_slice(&values[r * cols..(r + 1) * cols]);
    }
    out
}

/// The type llama.cpp's tools give a tensor of these 2-layer models: rows of 256 values take
/// the k-quant mixes; shorter rows (64, 128) fall back as llama-quantize does.
pub fn expected_type(name: &str, shape: &[usize], outtype: &str, tied: bool) -> GgmlType {
    if shape.len() == 1 || name.ends_with("_norm.weight") {
        return GgmlType::F32;
    }
    let output = name == "output.weight" || (tied && name == "token_embd.weight");
    let more_bits = name == "blk.1.attn_v.weight" || name == "blk.1.ffn_down.weight";
    let k = shape.last().unwrap().is_multiple_of(256);
    let q6k = if k { GgmlType::Q6K } else { GgmlType::Q8_0 };
    match outtype {
        "f32" => GgmlType::F32,
        "f16" => GgmlType::F16,
        "bf16" => GgmlType::BF16,
        "q8_0" => GgmlType::Q8_0,
        "q6_k" => q6k,
        "q4_0" if output => q6k,
        "q4_0" => GgmlType::Q4_0,
        _ if output || more_bits => q6k,
        "q4_k_m" if k => GgmlType::Q4K,
        "q4_k_m" => GgmlType::Q5_0,
        "q5_k_m" if k => GgmlType::Q5K,
        "q5_k_m" => GgmlType::Q5_1,
        other => panic!("unexpected outtype {other}"),
    }
}

/// Largest error allowed for a dequantized value, as a share of its row's largest magnitude.
pub fn tolerance(ty: GgmlType) -> f32 {
    match ty {
        GgmlType::F32 => 0.0,
        GgmlType::F16 | GgmlType::BF16 => 0.004,
        GgmlType::Q8_0 => 0.005,
        // Half a step, or a whole one for the value clipped at the top level (q4_0: 15 of -8..7).
        GgmlType::Q5_1 => 0.04,
        GgmlType::Q5_0 => 0.07,
        _ => 0.13,
    }
}

pub fn check_values(name: &str, ty: GgmlType, got: &[f32], want: &[f32], cols: usize) {
    for (row, (g, w)) in got.chunks(cols).zip(want.chunks(cols)).enumerate() {
        let amax = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            let exact = match ty {
                GgmlType::F16 => half::f16::from_f32(*b).to_f32() == *a,
                GgmlType::BF16 => half::bf16::from_f32(*b).to_f32() == *a,
                _ => (a - b).abs() <= tolerance(ty) * amax,
            };
            assert!(exact, "{name} ({ty}) row {row} col {i}: {a} vs weight {b}");
        }
    }
}

pub fn check_metadata(file: &GgufFile, model: &Path, arch: &str, file_type: u64) {
    let config = read_json(&model.join("config.json"));
    let tokenizer = read_json(&model.join("tokenizer.json"));
    let u = |key: &str| {
        file.get(key)
            .and_then(|v| v.as_u64())
            .unwrap_or_else(|| panic!("no {key}"))
    };
    let s = |key: &str| {
        file.get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("no {key}"))
    };
    assert_eq!(s("general.architecture"), arch);
    assert_eq!(u("general.file_type"), file_type);
    assert_eq!(u("general.quantization_version"), 2);
    assert_eq!(
        u(&format!("{arch}.block_count")),
        config["num_hidden_layers"].as_u64().unwrap()
    );
    assert_eq!(
        u(&format!("{arch}.embedding_length")),
        config["hidden_size"].as_u64().unwrap()
    );
    assert_eq!(
        u(&format!("{arch}.feed_forward_length")),
        config["intermediate_size"].as_u64().unwrap()
    );
    assert_eq!(
        u(&format!("{arch}.attention.head_count")),
        config["num_attention_heads"].as_u64().unwrap()
    );
    assert_eq!(
        u(&format!("{arch}.attention.head_count_kv")),
        config["num_key_value_heads"].as_u64().unwrap()
    );
    assert_eq!(
        u(&format!("{arch}.context_length")),
        config["max_position_embeddings"].as_u64().unwrap()
    );
    let theta = file
        .get(&format!("{arch}.rope.freq_base"))
        .and_then(|v| v.as_f64())
        .unwrap();
    assert_eq!(
        theta,
        config["rope_parameters"]["rope_theta"].as_f64().unwrap() as f32 as f64
    );
    assert_eq!(s("tokenizer.ggml.model"), "gpt2");
    assert_eq!(s("tokenizer.ggml.pre"), "qwen2");
    let tokens = file
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.as_array())
        .unwrap();
    assert_eq!(tokens.len() as u64, config["vocab_size"].as_u64().unwrap());
    for (text, id) in tokenizer["model"]["vocab"].as_object().unwrap() {
        assert_eq!(
            tokens[id.as_u64().unwrap() as usize].as_str(),
            Some(text.as_str())
        );
    }
    let merges = file
        .get("tokenizer.ggml.merges")
        .and_then(|v| v.as_array())
        .unwrap();
    assert_eq!(
        merges.len(),
        tokenizer["model"]["merges"].as_array().unwrap().len()
    );
    assert_eq!(
        u("tokenizer.ggml.eos_token_id"),
        config["eos_token_id"].as_u64().unwrap()
    );
    assert_eq!(
        u("tokenizer.ggml.padding_token_id"),
        config["pad_token_id"].as_u64().unwrap()
    );
    let template = std::fs::read_to_string(model.join("chat_template.jinja")).unwrap();
    assert_eq!(s("tokenizer.chat_template"), template);
}

pub fn check_tensors(file: &GgufFile, model: &Path, arch: &str, outtype: &str) {
    let config = read_json(&model.join("config.json"));
    let weights = weights(model);
    let tied = !weights.contains_key("output.weight");
    let names: Vec<&str> = file
        .tensors
        .iter()
        .map(|t| t.name.as_str())
        .filter(|n| *n != "rope_freqs.weight")
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        weights.keys().map(String::as_str).collect::<Vec<_>>(),
        "tensor names"
    );
    let llama3 = config["rope_parameters"]["rope_type"] == "llama3";
    assert_eq!(
        file.tensor("rope_freqs.weight").is_some(),
        llama3,
        "rope_freqs.weight"
    );
    for info in file
        .tensors
        .iter()
        .filter(|t| t.name != "rope_freqs.weight")
    {
        let (shape, values) = &weights[&info.name];
        assert_eq!(&info.shape, shape, "{}", info.name);
        assert_eq!(
            info.ty,
            expected_type(&info.name, shape, outtype, tied),
            "{} in {outtype}",
            info.name
        );
        let heads = |key: &str| config[key].as_u64().unwrap() as usize;
        let want = match info.name.rsplit('.').nth(1) {
            Some("attn_q") if arch == "llama" && shape.len() == 2 => {
                permute(values, shape, heads("num_attention_heads"))
            }
            Some("attn_k") if arch == "llama" && shape.len() == 2 => {
                permute(values, shape, heads("num_key_value_heads"))
            }
            _ => values.clone(),
        };
        let got = file.tensor_f32(info).unwrap();
        check_values(&info.name, info.ty, &got, &want, *shape.last().unwrap());
    }
}

/// The reference venv's python, when this checkout has one.
pub fn reference_python() -> Option<PathBuf> {
    let python = root().join(".venv-reference/bin/python");
    python.is_file().then_some(python)
}

/// `reference/gguf_reference.py --check` on (model folder, GGUF file) pairs; skipped with a
/// note when this checkout has no reference venv.
pub fn run_reference_check(pairs: &[(PathBuf, PathBuf)]) {
    let Some(python) = reference_python() else {
        eprintln!(
            "skipped the gguf-py / llama.cpp checks: no .venv-reference (see reference/requirements.txt)"
        );
        return;
    };
    let mut command = Command::new(python);
    command
        .arg(root().join("reference/gguf_reference.py"))
        .arg("--check");
    for (model, file) in pairs {
        command.arg(model).arg(file);
    }
    let out = command.current_dir(root()).output().unwrap();
    eprintln!("{}", text(&out));
    assert!(
        out.status.success(),
        "reference/gguf_reference.py --check:\n{}",
        text(&out)
    );
}

/// Deterministic normal noise (xorshift + Box-Muller), `n` values of standard deviation `std`.
pub fn noise(n: usize, seed: u64, std: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32 * std
        })
        .collect()
}

/// A 2-layer Llama with 256-wide rows (so the k-quants apply), tiny-llama's tokenizer and
/// seeded random weights, written into `dir`.
pub fn wide_llama(dir: &Path) -> PathBuf {
    let src = root().join("fixtures/models/tiny-llama");
    std::fs::create_dir_all(dir).unwrap();
    for file in [
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ] {
        std::fs::copy(src.join(file), dir.join(file)).unwrap();
    }
    let mut config = read_json(&src.join("config.json"));
    for (key, value) in [
        ("hidden_size", 256),
        ("intermediate_size", 512),
        ("head_dim", 64),
    ] {
        config[key] = Value::from(value);
    }
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let (h, f, q, kv, vocab) = (256, 512, 256, 128, 384);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![vocab, h]),
        ("model.norm.weight".into(), vec![h]),
        ("lm_head.weight".into(), vec![vocab, h]),
    ];
    for l in 0..2 {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("input_layernorm.weight", vec![h]),
            ("post_attention_layernorm.weight", vec![h]),
            ("self_attn.q_proj.weight", vec![q, h]),
            ("self_attn.k_proj.weight", vec![kv, h]),
            ("self_attn.v_proj.weight", vec![kv, h]),
            ("self_attn.o_proj.weight", vec![h, q]),
            ("mlp.gate_proj.weight", vec![f, h]),
            ("mlp.up_proj.weight", vec![f, h]),
            ("mlp.down_proj.weight", vec![h, f]),
        ] {
            shapes.push((format!("{p}.{name}"), shape));
        }
    }
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let n = shape.iter().product();
            let values = match shape.len() {
                1 => noise(n, i as u64, 0.1).iter().map(|v| v + 1.0).collect(),
                _ if name.contains("embed") || name.contains("lm_head") => noise(n, i as u64, 1.0),
                _ => noise(n, i as u64, 0.08),
            };
            (
                name,
                shape,
                values.iter().flat_map(|v: &f32| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = data
        .iter()
        .map(|(name, shape, bytes)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    dir.to_path_buf()
}
