//! `trl export gguf` end to end: every fixture model in every outtype, read back with our GGUF
//! reader (metadata, tensor names, shapes and types, values against the safetensors weights)
//! and, when the reference venv exists, checked by `reference/gguf_reference.py` (gguf-py's
//! reader, its quantizers and ggml's, and llama.cpp running the file).

mod common;
mod gguf_checks;

use common::{read_json, root, text, trl};
use gguf_checks::{check_metadata, check_tensors, run_reference_check, wide_llama};
use serde_json::Value;
use trl_gguf::GgufFile;

/// Fixture models and llama.cpp's architecture for each.
const MODELS: &[(&str, &str)] = &[
    ("tiny-llama", "llama"),
    ("tiny-mistral", "llama"),
    ("tiny-qwen2", "qwen2"),
    ("tiny-qwen3", "qwen3"),
    ("tiny-llama-tied-llama3rope", "llama"),
    ("tiny-llama-linear-rope", "llama"),
    ("tiny-llama-sharded", "llama"),
    ("tiny-llama-bf16", "llama"),
];

/// Outtypes with llama.cpp's `general.file_type` number (`LlamaFileType`).
const OUTTYPES: &[(&str, u64)] = &[
    ("f32", 0),
    ("f16", 1),
    ("bf16", 32),
    ("q8_0", 7),
    ("q4_0", 2),
    ("q4_k_m", 15),
    ("q5_k_m", 17),
    ("q6_k", 18),
];

#[test]
fn every_fixture_model_exports_in_every_outtype() {
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = Vec::new();
    for (model, arch) in MODELS {
        let model_dir = root().join("fixtures/models").join(model);
        for (outtype, file_type) in OUTTYPES {
            let outfile = dir.path().join(format!("{model}-{outtype}.gguf"));
            let out = trl(&[
                "export",
                "gguf",
                "--model_name_or_path",
                model_dir.to_str().unwrap(),
                "--outfile",
                outfile.to_str().unwrap(),
                "--outtype",
                outtype,
            ]);
            assert!(out.status.success(), "{model} {outtype}: {}", text(&out));
            assert!(text(&out).contains("wrote"), "{}", text(&out));
            let file = GgufFile::open(&outfile).unwrap();
            check_metadata(&file, &model_dir, arch, *file_type);
            check_tensors(&file, &model_dir, arch, outtype);
            pairs.push((model_dir.clone(), outfile));
        }
    }
    run_reference_check(&pairs);
}

#[test]
fn rows_of_256_values_get_the_k_quant_mixes() {
    let dir = tempfile::tempdir().unwrap();
    let model = wide_llama(&dir.path().join("wide-llama"));
    let mut pairs = Vec::new();
    for (outtype, file_type) in OUTTYPES {
        let outfile = dir.path().join(format!("wide-{outtype}.gguf"));
        let out = trl(&[
            "export",
            "gguf",
            "--model_name_or_path",
            model.to_str().unwrap(),
            "--outfile",
            outfile.to_str().unwrap(),
            "--outtype",
            outtype,
        ]);
        assert!(out.status.success(), "{outtype}: {}", text(&out));
        let file = GgufFile::open(&outfile).unwrap();
        check_metadata(&file, &model, "llama", *file_type);
        check_tensors(&file, &model, "llama", outtype);
        pairs.push((model.clone(), outfile));
    }
    run_reference_check(&pairs);
}

#[test]
fn a_byte_fallback_tokenizer_exports_as_sentencepiece_style_llama() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("spm-llama");
    std::fs::create_dir_all(&model).unwrap();
    let src = root().join("fixtures/models/tiny-llama");
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(file), model.join(file)).unwrap();
    }
    let spm = root().join("fixtures/expected/gguf/spm-tokenizer");
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(spm.join(file), model.join(file)).unwrap();
    }
    let mut pairs = Vec::new();
    for outtype in ["f32", "q8_0"] {
        let outfile = dir.path().join(format!("spm-{outtype}.gguf"));
        let out = trl(&[
            "export",
            "gguf",
            "--model_name_or_path",
            model.to_str().unwrap(),
            "--outfile",
            outfile.to_str().unwrap(),
            "--outtype",
            outtype,
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let file = GgufFile::open(&outfile).unwrap();
        let s = |key: &str| file.get(key).and_then(|v| v.as_str().map(str::to_owned));
        let u = |key: &str| file.get(key).and_then(|v| v.as_u64());
        assert_eq!(s("tokenizer.ggml.model").as_deref(), Some("llama"));
        assert_eq!(s("tokenizer.ggml.pre").as_deref(), Some("default"));
        assert_eq!(
            (
                u("tokenizer.ggml.unknown_token_id"),
                u("tokenizer.ggml.bos_token_id")
            ),
            (Some(0), Some(1))
        );
        assert_eq!(u("tokenizer.ggml.eos_token_id"), Some(2));
        assert_eq!(
            file.get("tokenizer.ggml.add_bos_token"),
            Some(&trl_gguf::Value::Bool(true))
        );
        let types = file
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.as_array())
            .unwrap();
        let bytes = types
            .iter()
            .filter(|t| **t == trl_gguf::Value::I32(6))
            .count();
        assert_eq!(bytes, 256, "BYTE tokens");
        let scores = file
            .get("tokenizer.ggml.scores")
            .and_then(|v| v.as_array())
            .unwrap();
        assert_eq!(scores.len(), 384);
        pairs.push((model.clone(), outfile));
    }
    run_reference_check(&pairs);
}

/// A peft adapter folder is merged into its base first: the file equals the export of
/// `trl merge`'s output, byte for byte, and no scratch folder is left behind.
#[test]
fn a_lora_adapter_folder_exports_as_its_merged_model() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = "fixtures/adapters/llama-qv";
    let merged = dir.path().join("merged");
    let out = trl(&[
        "merge",
        "--model_name_or_path",
        adapter,
        "--output_dir",
        merged.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let export = |model: &str, file: &str| {
        let outfile = dir.path().join(file);
        let args = [
            "export",
            "gguf",
            "--model_name_or_path",
            model,
            "--outtype",
            "f32",
        ];
        let out = trl(&[
            &args[..],
            &["--model_name", "m", "--outfile", outfile.to_str().unwrap()],
        ]
        .concat());
        assert!(out.status.success(), "{}", text(&out));
        std::fs::read(outfile).unwrap()
    };
    let from_adapter = export(adapter, "adapter.gguf");
    let from_merged = export(merged.to_str().unwrap(), "merged.gguf");
    assert!(
        from_adapter == from_merged,
        "the adapter's export differs from the merged model's"
    );
}

#[test]
fn an_unknown_pre_tokenizer_regex_is_an_error_quoting_it_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::copy_model(&dir.path().join("model"));
    let path = model.join("tokenizer.json");
    let mut tokenizer: Value = read_json(&path);
    tokenizer["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] =
        Value::from(r"\p{N}{1,7}|\s+");
    std::fs::write(&path, serde_json::to_string(&tokenizer).unwrap()).unwrap();
    let outfile = dir.path().join("out.gguf");
    let out = trl(&[
        "export",
        "gguf",
        "--model_name_or_path",
        model.to_str().unwrap(),
        "--outfile",
        outfile.to_str().unwrap(),
        "--outtype",
        "q8_0",
    ]);
    assert!(!out.status.success());
    let message = text(&out);
    assert!(
        message.contains(r"\\p{N}{1,7}|\\s+") && message.contains("tokenizer.json"),
        "{message}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("model")],
        "files left behind"
    );
}

#[test]
fn an_unknown_outtype_lists_the_outtypes() {
    let out = trl(&[
        "export",
        "gguf",
        "--model_name_or_path",
        common::MODEL,
        "--outtype",
        "q3_k_s",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("q4_k_m") && text(&out).contains("q3_k_s"),
        "{}",
        text(&out)
    );
}
