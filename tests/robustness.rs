//! Fuzz-style end-to-end tests: every command of the `trl` binary on a corpus of bad inputs
//! (malformed, empty, mistyped data; model folders without config.json or with corrupted
//! weights) and on invalid and random option values must exit with 1 or 2 and a message,
//! never with a panic (exit code 101).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{MODEL, copy_model, trl_in_cache};

const REWARD_MODEL: &str = "fixtures/models/tiny-qwen2-rm";

/// Fails unless the run ended in a handled error: exit 1 or 2, a message on stderr, no panic.
fn assert_clean_failure(args: &[String], out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    assert!(
        matches!(code, Some(1) | Some(2)),
        "trl {} exited with {code:?} (expected 1 or 2):\n{stderr}",
        args.join(" ")
    );
    assert!(
        !stderr.trim().is_empty() && !stderr.contains("panicked"),
        "trl {}: {stderr}",
        args.join(" ")
    );
}

/// Fails on a panic; a random value may be valid, so success is allowed, but a failure must
/// say why.
fn assert_no_panic(args: &[String], out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(1) | Some(2)) && !stderr.contains("panicked"),
        "trl {} exited with {code:?}:\n{stderr}",
        args.join(" ")
    );
    if code != Some(0) {
        assert!(
            !stderr.trim().is_empty(),
            "trl {}: no message",
            args.join(" ")
        );
    }
}

/// The bad data files, each in `dir`.
fn bad_data(dir: &Path) -> Vec<PathBuf> {
    let files = [
        ("malformed.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"\n"),
        (
            "missing_column.jsonl",
            "{\"foo\": \"bar\"}\n{\"foo\": \"baz\"}\n",
        ),
        ("empty.jsonl", ""),
        ("blank_lines.jsonl", "\n\n\n"),
        (
            "wrong_types.jsonl",
            "{\"prompt\": 1, \"chosen\": [\"x\"], \"rejected\": null, \"completion\": 5, \
             \"label\": \"yes\", \"text\": 7, \"messages\": \"hi\"}\n",
        ),
        ("not_an_object.jsonl", "[1, 2, 3]\n\"text\"\n"),
        ("bad.json", "{\"text\": [\"a\", "),
        ("bad.parquet", "PAR1 this is not parquet PAR1"),
    ];
    files
        .iter()
        .map(|(name, text)| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

/// Model folders that must not load: without config.json, with corrupted weights.
fn bad_models(dir: &Path) -> Vec<PathBuf> {
    let copy = |name: &str| copy_model(&dir.join(name));
    let no_config = copy("no_config");
    std::fs::remove_file(no_config.join("config.json")).unwrap();
    let garbage_header = copy("garbage_header");
    let mut bytes = std::fs::read(garbage_header.join("model.safetensors")).unwrap();
    for byte in bytes.iter_mut().skip(8).take(64) {
        *byte = b'#';
    }
    std::fs::write(garbage_header.join("model.safetensors"), bytes).unwrap();
    let huge_header = copy("huge_header");
    let mut bytes = std::fs::read(huge_header.join("model.safetensors")).unwrap();
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(huge_header.join("model.safetensors"), bytes).unwrap();
    let zeros = copy("zeros");
    let len = std::fs::metadata(zeros.join("model.safetensors"))
        .unwrap()
        .len();
    std::fs::write(zeros.join("model.safetensors"), vec![0u8; len as usize]).unwrap();
    let bad_config = copy("bad_config");
    std::fs::write(
        bad_config.join("config.json"),
        "{\"model_type\": \"qwen2\", \"vocab_size\": -3}",
    )
    .unwrap();
    vec![no_config, garbage_header, huge_header, zeros, bad_config]
}

/// The arguments of `command` on `model` and `data` (a short run where it trains).
fn command_args(command: &str, model: &str, data: &str, out: &Path) -> Vec<String> {
    let mut args: Vec<String> = vec![command.into()];
    let good_data = |default: &str| {
        if data.is_empty() {
            default.to_string()
        } else {
            data.to_string()
        }
    };
    match command {
        "validate" => {
            args.extend([
                "--dataset_name".into(),
                good_data("datasets/preference.jsonl"),
            ]);
            args.extend(["--method".into(), "dpo".into()]);
            args.extend(["--model_name_or_path".into(), model.into()]);
        }
        "score" => {
            args.extend(["--model_name_or_path".into(), model.into()]);
            args.extend([
                "--dataset_name".into(),
                good_data("datasets/preference.jsonl"),
            ]);
        }
        _ => {
            let default = match command {
                "sft" => "datasets/messages.jsonl",
                "kto" => "datasets/unpaired_preference.jsonl",
                _ => "datasets/preference.jsonl",
            };
            args.extend(["--model_name_or_path".into(), model.into()]);
            args.extend(["--dataset_name".into(), good_data(default)]);
            args.extend(["--output_dir".into(), out.display().to_string()]);
            for pair in [
                ["--max_steps", "1"],
                ["--per_device_train_batch_size", "2"],
                ["--save_strategy", "no"],
            ] {
                args.extend(pair.map(String::from));
            }
        }
    }
    args
}

const COMMANDS: [&str; 6] = ["sft", "dpo", "kto", "reward", "score", "validate"];

fn model_for(command: &str) -> &'static str {
    if command == "score" {
        REWARD_MODEL
    } else {
        MODEL
    }
}

#[test]
fn every_command_fails_cleanly_on_bad_data() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    for data in bad_data(dir.path()) {
        for command in COMMANDS {
            let out_dir = dir.path().join(format!("out-{command}"));
            let args = command_args(
                command,
                model_for(command),
                data.to_str().unwrap(),
                &out_dir,
            );
            let out = trl_in_cache(&args, &cache);
            assert_clean_failure(&args, &out);
            assert!(
                !out_dir.exists(),
                "trl {}: wrote output for bad data",
                args.join(" ")
            );
        }
    }
}

#[test]
fn every_command_fails_cleanly_on_bad_model_folders() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    for model in bad_models(dir.path()) {
        for command in COMMANDS {
            let out_dir = dir.path().join(format!("out-{command}"));
            let args = command_args(command, model.to_str().unwrap(), "", &out_dir);
            let out = trl_in_cache(&args, &cache);
            if command == "validate" {
                // validate reads only the tokenizer, which these folders keep intact
                assert_no_panic(&args, &out);
            } else {
                assert_clean_failure(&args, &out);
                assert!(!out_dir.exists(), "trl {}: wrote output", args.join(" "));
            }
        }
    }
}

/// Values no option accepts, or that the option's range excludes.
const INVALID: [(&str, &str, &[&str]); 26] = [
    ("--max_length", "-1", &["validate"]),
    ("--batch_size", "-2", &["score"]),
    (
        "--per_device_train_batch_size",
        "0",
        &["sft", "dpo", "kto", "reward"],
    ),
    (
        "--per_device_train_batch_size",
        "-1",
        &["sft", "dpo", "kto", "reward"],
    ),
    ("--learning_rate", "-1", &["sft", "dpo", "kto", "reward"]),
    ("--learning_rate", "nan", &["sft", "dpo", "kto", "reward"]),
    ("--num_train_epochs", "-1", &["sft", "dpo", "kto", "reward"]),
    (
        "--gradient_accumulation_steps",
        "0",
        &["sft", "dpo", "kto", "reward"],
    ),
    ("--max_steps", "many", &["sft", "dpo", "kto", "reward"]),
    ("--warmup_ratio", "2", &["sft", "dpo", "kto", "reward"]),
    ("--logging_steps", "0", &["sft", "dpo", "kto", "reward"]),
    ("--adam_beta1", "1", &["sft", "dpo", "kto", "reward"]),
    ("--weight_decay", "-0.1", &["sft", "dpo", "kto", "reward"]),
    (
        "--lr_scheduler_type",
        "cosine_annealing",
        &["sft", "dpo", "kto", "reward"],
    ),
    (
        "--lr_scheduler_kwargs",
        "{min_lr_rate: ",
        &["sft", "dpo", "kto", "reward"],
    ),
    (
        "--max_length",
        "0",
        &["sft", "dpo", "kto", "reward", "score"],
    ),
    (
        "--max_length",
        "-5",
        &["sft", "dpo", "kto", "reward", "score"],
    ),
    (
        "--pad_to_multiple_of",
        "0",
        &["sft", "dpo", "kto", "reward"],
    ),
    ("--beta", "-1", &["dpo", "kto"]),
    ("--loss_type", "sigmod", &["sft", "dpo", "kto"]),
    ("--truncation_mode", "middle", &["sft", "dpo"]),
    (
        "--pad_token",
        "<|no-such-token|>",
        &["sft", "dpo", "reward"],
    ),
    ("--device", "tpu", &["sft", "dpo", "kto", "reward", "score"]),
    ("--dtype", "bf17", &["sft", "dpo", "kto", "reward"]),
    ("--batch_size", "0", &["score"]),
    ("--method", "grpo2", &["validate"]),
];

#[test]
fn invalid_option_values_fail_cleanly_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    for (option, value, commands) in INVALID {
        for command in commands.iter().copied() {
            let out_dir = dir.path().join(format!("out-{command}"));
            let mut args = command_args(command, model_for(command), "", &out_dir);
            args.extend([option.to_string(), value.to_string()]);
            if option == "--num_train_epochs" {
                // epochs count only without max_steps
                args.extend(["--max_steps".into(), "-1".into()]);
            }
            let out = trl_in_cache(&args, &cache);
            assert_clean_failure(&args, &out);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let name = option.trim_start_matches("--");
            assert!(stderr.contains(name), "trl {}: {stderr}", args.join(" "));
            assert!(!out_dir.exists(), "trl {}: wrote output", args.join(" "));
        }
    }
}

/// A small deterministic generator (64-bit LCG), so a failure reproduces.
struct Lcg(u64);

impl Lcg {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        &items[(self.0 >> 33) as usize % items.len()]
    }
}

#[test]
fn random_option_values_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let options = [
        "--per_device_train_batch_size",
        "--gradient_accumulation_steps",
        "--learning_rate",
        "--num_train_epochs",
        "--max_length",
        "--pad_to_multiple_of",
        "--beta",
        "--label_smoothing",
        "--ld_alpha",
        "--warmup_steps",
        "--save_total_limit",
        "--seed",
        "--max_grad_norm",
        "--truncation_mode",
        "--lr_scheduler_type",
        "--desirable_weight",
        "--center_rewards_coefficient",
        "--precompute_ref_batch_size",
        "--ref_model_mixup_alpha",
        "--batch_size",
    ];
    let values = [
        "-1",
        "0",
        "1e309",
        "nan",
        "inf",
        "-inf",
        "",
        "[]",
        "{}",
        "abc",
        "true",
        "-0.5",
        "99999999999999999999",
        "0.5",
        "keep_end",
        "null",
        "[1, 2]",
    ];
    let mut random = Lcg(0x7472_6c2d_7273);
    let mut run = 0;
    for command in COMMANDS {
        let known = String::from_utf8_lossy(
            &trl_in_cache(&[command.to_string(), "--help".into()], &cache).stdout,
        )
        .into_owned();
        for _ in 0..6 {
            let option = *random.pick(&options);
            let value = *random.pick(&values);
            let key = option.trim_start_matches("--");
            if command != "score" && command != "validate" && !known.contains(key) {
                continue;
            }
            run += 1;
            let out_dir = dir.path().join(format!("random-{run}"));
            let mut args = command_args(command, model_for(command), "", &out_dir);
            args.extend([option.to_string(), value.to_string()]);
            assert_no_panic(&args, &trl_in_cache(&args, &cache));
        }
    }
}
