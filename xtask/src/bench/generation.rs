//! The generation benchmark: tokens/s of trl-rs's `generate` (benches/generate.rs) and, with
//! `--compare trl`, of transformers' `generate` (reference/bench_trl.py generate) on the same
//! model, prompts, lengths and sampling, each configuration in its own process.

use std::process::Command;

use anyhow::Result;
use serde_json::Value;

use super::measure::{BenchInputs, measure};

/// (prompts, sequences per prompt): one sequence at a time, and GRPO's shape of 16 prompts
/// with 4 completions each.
const CONFIGURATIONS: [(usize, usize); 2] = [(1, 1), (16, 4)];
const PROMPT_LEN: usize = 64;
const MAX_NEW_TOKENS: usize = 128;

/// Every configuration, trl-rs first, then transformers when `compare`.
pub(super) fn run(bench: &BenchInputs, compare: bool, quick: bool) -> Result<Vec<Value>> {
    let mut results = Vec::new();
    for (batch, sequences) in CONFIGURATIONS {
        let args: Vec<String> = [
            ("--batch", batch),
            ("--num_return_sequences", sequences),
            ("--prompt_len", PROMPT_LEN),
            ("--max_new_tokens", MAX_NEW_TOKENS),
            ("--warmup", 1),
            ("--runs", if quick { 1 } else { 3 }),
        ]
        .iter()
        .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
        .collect();
        let file = bench
            .out
            .join(format!("generate-{batch}x{sequences}-trl-rs.json"));
        results.push(measure(&file, || {
            let mut cmd = Command::new(&bench.executables["generate"]);
            cmd.arg("--model").arg(bench.model).arg("--out").arg(&file);
            cmd.args(&args).current_dir(bench.root);
            cmd
        })?);
        if compare {
            let file = bench
                .out
                .join(format!("generate-{batch}x{sequences}-transformers.json"));
            results.push(measure(&file, || {
                let mut cmd = Command::new(bench.python);
                cmd.arg(bench.script)
                    .arg("generate")
                    .arg("--model")
                    .arg(bench.model);
                cmd.arg("--out").arg(&file).args(&args);
                cmd.args(["--threads", &bench.threads.to_string()])
                    .current_dir(bench.root);
                cmd
            })?);
        }
    }
    Ok(results)
}

/// The generation table: one row per (configuration, implementation), the ratio of trl-rs's
/// tokens/s to transformers'.
pub(super) fn generation_table(results: &Value) -> String {
    let rows = results["generation"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if rows.is_empty() {
        return "Not run.\n".into();
    }
    let mut table = String::from(
        "| prompts x sequences | implementation | s per call (median) | generated tokens/s | peak RSS | this ÷ transformers tokens/s | others' CPU |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for row in &rows {
        let same = |r: &&Value| {
            r["batch"] == row["batch"] && r["num_return_sequences"] == row["num_return_sequences"]
        };
        let theirs = rows
            .iter()
            .filter(same)
            .find(|r| r["side"] == "transformers");
        let ratio = match theirs {
            Some(t) if row["side"] == "trl-rs" => format!(
                "{:.2}x",
                row["tokens_per_s"].as_f64().unwrap_or(f64::NAN)
                    / t["tokens_per_s"].as_f64().unwrap_or(f64::NAN)
            ),
            _ => "-".into(),
        };
        table += &format!(
            "| {} x {} | {} | {:.3} | {:.0} | {:.2} GB | {} | {:.0}% |\n",
            row["batch"],
            row["num_return_sequences"],
            row["implementation"].as_str().unwrap_or("?"),
            row["median_s"].as_f64().unwrap_or(f64::NAN),
            row["tokens_per_s"].as_f64().unwrap_or(f64::NAN),
            row["peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1e9,
            ratio,
            100.0 * row["others_cpu_share"].as_f64().unwrap_or(f64::NAN),
        );
    }
    table
}

/// The section of BENCHMARKS.md: setup, table, targets.
pub(super) fn generation_section(results: &Value) -> String {
    format!(
        "## Generation: tokens/s with a KV cache\n\n\
The benchmark model above; prompts of {PROMPT_LEN} tokens (slices of the SFT rows, the same on both \
sides), {MAX_NEW_TOKENS} new tokens forced (`min_new_tokens = max_new_tokens`), sampling with \
transformers' defaults (temperature 1, top-k 50), fp32, the machine's threads. trl-rs: \
`trl_core::generate` (benches/generate.rs); transformers: `model.generate` with its KV cache and sdpa \
(`reference/bench_trl.py generate`). Time: the whole call (prefill + decoding), one warm-up call, then \
the median; each configuration in its own process. Targets: at 16 x 4 at least 5x transformers' \
tokens/s; at 1 x 1 not slower.\n\n{}\n",
        generation_table(results)
    )
}
