//! End-to-end tests of option handling in the `trl` binary: values transformers/TRL/torch
//! reject, JSON dict options, options trl-rs does not apply, truncation that leaves nothing to
//! train on, the reference model and its log-prob cache, the pad token, the output folder.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{MODEL, copy_model, read_json, stderr, trl_in_cache};

/// `trl <command>` on `data` into `out`, a short run, then `extra`.
fn run_args<'a>(command: &'a str, data: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        command,
        "--model_name_or_path",
        MODEL,
        "--dataset_name",
        data,
        "--output_dir",
        out,
        "--max_steps",
        "1",
        "--per_device_train_batch_size",
        "2",
        "--save_strategy",
        "no",
    ];
    args.extend_from_slice(extra);
    args
}

fn assert_error(out: &Output, needles: &[&str]) {
    let message = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{message}");
    for needle in needles {
        assert!(message.contains(needle), "missing {needle:?} in: {message}");
    }
}

#[test]
fn truncation_that_leaves_no_completion_token_names_the_option_and_row() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    for max_length in ["0", "1"] {
        let args = run_args(
            "dpo",
            "datasets/preference.jsonl",
            out,
            &["--max_length", max_length, "--truncation_mode", "keep_end"],
        );
        assert_error(&trl_in_cache(&args, &cache), &["max_length"]);
    }
    let args = run_args(
        "dpo",
        "datasets/preference.jsonl",
        out,
        &["--max_length", "1", "--truncation_mode", "keep_end"],
    );
    assert_error(
        &trl_in_cache(&args, &cache),
        &["preference.jsonl", "keep_end", "chosen"],
    );
    let score = [
        "score",
        "--model_name_or_path",
        "fixtures/models/tiny-qwen2-rm",
        "--dataset_name",
        "datasets/preference.jsonl",
        "--max_length",
        "0",
    ];
    assert_error(&trl_in_cache(&score, &cache), &["max_length"]);
}

#[test]
fn kto_row_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let data = dir.path().join("empty_prompt.jsonl");
    std::fs::write(
        &data,
        "{\"prompt\": \"Q?\", \"completion\": \" A.\", \"label\": true}\n\
         {\"prompt\": \"\", \"completion\": \" B and more.\", \"label\": false}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let args = run_args(
        "kto",
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        &["--max_length", "1"],
    );
    assert_error(
        &trl_in_cache(&args, &cache),
        &["empty_prompt.jsonl", "line 2", "max_length 1"],
    );
}

#[test]
fn option_values_torch_and_transformers_reject_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["--per_device_train_batch_size", "0"],
            &["per_device_train_batch_size"],
        ),
        (
            &["--learning_rate", "-1"],
            &["learning_rate", "Invalid learning rate"],
        ),
        (
            &["--num_train_epochs", "-1", "--max_steps", "-1"],
            &["num_train_epochs"],
        ),
        (&["--loss_type", "sigmod"], &["loss_type", "sigmoid", "ipo"]),
        (
            &["--lr_scheduler_type", "5"],
            &["lr_scheduler_type", "constant_with_warmup"],
        ),
    ];
    for (extra, needles) in cases {
        let args = run_args("dpo", "datasets/preference.jsonl", out, extra);
        assert_error(&trl_in_cache(&args, &cache), needles);
        assert!(!Path::new(out).exists());
    }
}

#[test]
fn dict_options_as_json_strings_and_notes_for_what_trl_rs_does_instead() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    let args = run_args(
        "sft",
        "datasets/messages.jsonl",
        out.to_str().unwrap(),
        &[
            "--lr_scheduler_type",
            "cosine_with_min_lr",
            "--lr_scheduler_kwargs",
            r#"{"min_lr_rate": 0.1}"#,
            "--model_init_kwargs",
            r#"{"dtype": "bfloat16"}"#,
            "--attn_implementation",
            "flash_attention_2",
        ],
    );
    let result = trl_in_cache(&args, &cache);
    let message = stderr(&result);
    assert!(result.status.success(), "{message}");
    assert!(
        message.contains("--dtype bfloat16") && message.contains("float32"),
        "{message}"
    );
    assert!(
        message.contains("--attn_implementation flash_attention_2"),
        "{message}"
    );
}

#[test]
fn a_typo_in_pad_token_is_an_error_in_every_method() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    for (command, data) in [
        ("sft", "datasets/messages.jsonl"),
        ("dpo", "datasets/preference.jsonl"),
        ("reward", "datasets/preference.jsonl"),
    ] {
        let args = run_args(
            command,
            data,
            out.to_str().unwrap(),
            &["--pad_token", "<|padd|>"],
        );
        assert_error(&trl_in_cache(&args, &cache), &["<|padd|>", "pad_token"]);
        assert!(!out.exists());
    }
}

/// A copy of the tiny model whose config.json says another vocabulary size.
fn model_with_vocab(dir: &Path, vocab_size: usize) -> PathBuf {
    let target = copy_model(&dir.join(format!("vocab-{vocab_size}")));
    let path = target.join("config.json");
    let mut config = read_json(&path);
    config["vocab_size"] = vocab_size.into();
    std::fs::write(&path, config.to_string()).unwrap();
    target
}

#[test]
fn a_ref_model_that_does_not_fit_the_policy_is_an_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    let other_vocab = model_with_vocab(dir.path(), 500);
    let other_vocab = other_vocab.to_str().unwrap();
    for (command, data) in [
        ("dpo", "datasets/preference.jsonl"),
        ("kto", "datasets/unpaired_preference.jsonl"),
    ] {
        let args = run_args(
            command,
            data,
            out.to_str().unwrap(),
            &["--ref_model", other_vocab],
        );
        assert_error(
            &trl_in_cache(&args, &cache),
            &["vocab-500", "tiny-qwen2", "vocab_size"],
        );
    }
    // Same vocabulary, other architecture: fine as a frozen reference, not to mix into.
    let llama = "fixtures/models/tiny-llama";
    let sync = [
        "--ref_model",
        llama,
        "--sync_ref_model",
        "true",
        "--ref_model_sync_steps",
        "1",
    ];
    let args = run_args(
        "dpo",
        "datasets/preference.jsonl",
        out.to_str().unwrap(),
        &sync,
    );
    assert_error(
        &trl_in_cache(&args, &cache),
        &["tiny-llama", "tiny-qwen2", "sync_ref_model"],
    );
}

#[test]
fn the_reference_cache_misses_when_an_option_that_changes_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let mut run = 0;
    // Whether a run with precomputed reference log-probs read them from the cache.
    let mut cached = |command: &str, data: &str, extra: &[&str]| {
        run += 1;
        let out = dir.path().join(format!("out-{run}"));
        let mut options = vec!["--precompute_ref_log_probs", "true"];
        options.extend_from_slice(extra);
        let args = run_args(command, data, out.to_str().unwrap(), &options);
        let result = trl_in_cache(&args, &cache);
        let message = stderr(&result);
        assert!(result.status.success(), "{message}");
        message.contains("reference log-probs: read from cache")
    };
    let mut dpo = |extra: &[&str]| cached("dpo", "datasets/preference.jsonl", extra);
    assert!(!dpo(&["--max_length", "128"]));
    assert!(
        dpo(&["--max_length", "128"]),
        "the same run reads the cache"
    );
    assert!(!dpo(&["--max_length", "24"]), "max_length");
    assert!(
        !dpo(&["--max_length", "24", "--truncation_mode", "keep_end"]),
        "truncation_mode"
    );
    assert!(
        !dpo(&["--max_length", "24", "--ld_alpha", "0.5"]),
        "ld_alpha"
    );
    let mut kto = |extra: &[&str]| cached("kto", "datasets/unpaired_preference.jsonl", extra);
    assert!(!kto(&["--max_length", "128"]));
    assert!(
        kto(&["--max_length", "128"]),
        "the same run reads the cache"
    );
    assert!(!kto(&["--max_length", "24"]), "max_length");
}

#[test]
fn an_output_folder_holding_another_run_is_refused_unless_overwritten_or_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("run");
    let out_str = out.to_str().unwrap();
    let sft = |extra: &[&str]| {
        let mut args = vec![
            "sft",
            "--model_name_or_path",
            MODEL,
            "--dataset_name",
            "datasets/messages.jsonl",
            "--output_dir",
            out_str,
            "--per_device_train_batch_size",
            "2",
            "--save_steps",
            "1",
        ];
        args.extend_from_slice(extra);
        trl_in_cache(&args, &cache)
    };
    let first = sft(&["--max_steps", "3"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(out.join("checkpoint-3").is_dir());

    let again = sft(&["--max_steps", "1"]);
    assert_error(
        &again,
        &["already holds another run", "overwrite_output_dir"],
    );
    assert!(
        out.join("checkpoint-3").is_dir(),
        "the refused run deleted nothing"
    );

    let resumed = sft(&["--max_steps", "4", "--resume_from_checkpoint", "true"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(out.join("checkpoint-4").is_dir());

    let overwritten = sft(&["--max_steps", "1", "--overwrite_output_dir", "true"]);
    assert!(overwritten.status.success(), "{}", stderr(&overwritten));
    let checkpoints: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("checkpoint-"))
        .collect();
    assert_eq!(checkpoints, vec!["checkpoint-1".to_string()]);
    let state = read_json(&out.join("trainer_state.json"));
    assert_eq!(state["global_step"], 1);
}

#[test]
fn a_tokenizer_without_eos_is_refused_where_trl_appends_eos() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let model = copy_model(&dir.path().join("no-eos"));
    let path = model.join("tokenizer_config.json");
    let mut config = read_json(&path);
    config["eos_token"] = serde_json::Value::Null;
    config["pad_token"] = "<|endoftext|>".into();
    std::fs::write(&path, config.to_string()).unwrap();
    let out = dir.path().join("out");
    let with_model = |command: &'static str, data: &'static str| {
        let mut args = run_args(command, data, out.to_str().unwrap(), &[]);
        args[2] = model.to_str().unwrap();
        trl_in_cache(&args, &cache)
    };
    for (command, data) in [
        ("dpo", "datasets/preference.jsonl"),
        ("kto", "datasets/unpaired_preference.jsonl"),
        ("reward", "datasets/preference.jsonl"),
        ("sft", "datasets/text.jsonl"),
    ] {
        assert_error(&with_model(command, data), &["no EOS token", "no-eos"]);
    }
    // Conversational data: the chat template ends turns, TRL appends nothing.
    let conversational = with_model("sft", "datasets/messages.jsonl");
    assert!(
        conversational.status.success(),
        "{}",
        stderr(&conversational)
    );
}

/// `--fp16 true` on the CPU backend is an error naming the flag (transformers raises too);
/// `--bf16 true` trains (see the next test); both at once are refused before anything loads.
#[test]
fn half_precision_flags_on_the_cpu_say_what_happens() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let data = "datasets/text.jsonl";
    let fp16 = trl_in_cache(&run_args("sft", data, out, &["--fp16", "true"]), &cache);
    assert_error(&fp16, &["--fp16 true", "GPU backend"]);
    let both = run_args("sft", data, out, &["--fp16", "true", "--bf16", "true"]);
    assert_error(
        &trl_in_cache(&both, &cache),
        &["--fp16", "at most one of fp16 and bf16"],
    );
    let bf16 = trl_in_cache(&run_args("sft", data, out, &["--bf16", "true"]), &cache);
    assert!(bf16.status.success(), "{}", stderr(&bf16));
}

/// `--bf16 true` on the CPU backend: where the CPU has AMX-BF16 the projections multiply
/// bf16-rounded operands (the losses move by bf16's rounding, about 1e-3, not more), full
/// fine-tuning and LoRA alike; elsewhere it trains in fp32, says so, and the losses are the
/// fp32 run's exactly.
#[test]
fn bf16_on_the_cpu_multiplies_on_amx_tiles_or_says_it_keeps_fp32() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec![
            "sft",
            "--model_name_or_path",
            MODEL,
            "--dataset_name",
            "datasets/text.jsonl",
            "--output_dir",
            out.to_str().unwrap(),
            "--max_steps",
            "3",
            "--per_device_train_batch_size",
            "8",
            "--save_strategy",
            "no",
            "--logging_steps",
            "1",
        ];
        args.extend_from_slice(extra);
        let output = trl_in_cache(&args, &cache);
        assert!(output.status.success(), "{}", stderr(&output));
        let losses: Vec<f64> = common::logged_losses(&out)
            .iter()
            .map(|loss| loss.as_f64().unwrap())
            .collect();
        assert_eq!(losses.len(), 3);
        (stderr(&output), losses)
    };
    let lora = ["--use_peft", "true", "--lora_target_modules", "all-linear"];
    for (name, extra) in [("full", &[][..]), ("lora", &lora[..])] {
        let (_, fp32) = run(&format!("{name}-fp32"), extra);
        let (message, bf16) = run(
            &format!("{name}-bf16"),
            &[extra, &["--bf16", "true"]].concat(),
        );
        if !trl::core::kernels::cpu_bf16_matmuls_supported() {
            assert!(message.contains("this CPU has no AMX-BF16"), "{message}");
            assert_eq!(bf16, fp32, "{name}");
            continue;
        }
        assert!(
            message.contains("bf16 matmuls on the CPU's AMX tiles"),
            "{message}"
        );
        assert_ne!(bf16, fp32, "{name}: no product ran in bf16");
        for (half, full) in bf16.iter().zip(&fp32) {
            assert!(
                (half - full).abs() <= 5e-3 * full.abs(),
                "{name}: {half} vs {full}"
            );
        }
    }
}
