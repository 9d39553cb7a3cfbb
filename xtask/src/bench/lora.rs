//! The LoRA benchmark: SFT steps with fresh LoRA adapters (TRL's `--use_peft` defaults) of
//! trl-rs (`benches/e2e.rs --lora`) and, with `--compare trl`, of TRL's `SFTTrainer` with a
//! peft `LoraConfig` (`reference/bench_trl.py run --peft`), on the benchmark model and SFT
//! batch, each side in its own process: in fp32, and on a CPU with AMX-BF16 in bf16 too
//! (`--bf16`: trl-rs's AMX products; TRL's autocast, its configs' default).

use std::process::Command;

use anyhow::Result;
use serde_json::Value;

use super::grpo::provenance_line;
use super::machine::Machine;
use super::measure::{BenchInputs, measure, number};
use super::report::NO_CHECKPOINTING;

/// trl-rs's LoRA SFT step is to be at least this many times faster than TRL + peft's...
const TARGET_SPEEDUP: f64 = 2.0;
/// ...with at most this share of its peak RSS.
const TARGET_RSS_SHARE: f64 = 1.0 / 3.0;
/// The heading `--only lora` replaces (up to the next `## `).
pub(super) const HEADING: &str = "## LoRA SFT";

/// The precisions measured: fp32, and bf16 where trl-rs runs it on AMX tiles.
fn precisions() -> Result<Vec<bool>> {
    Ok(if Machine::read()?.has_amx_bf16() {
        vec![false, true]
    } else {
        vec![false]
    })
}

/// Per precision, trl-rs's steps, then TRL + peft's when `compare`.
pub(super) fn run(bench: &BenchInputs, compare: bool, quick: bool) -> Result<Vec<Value>> {
    let (warmup, steps) = if quick { (1, 3) } else { (3, 10) };
    let steps_args = [
        "--warmup".to_string(),
        warmup.to_string(),
        "--steps".to_string(),
        steps.to_string(),
    ];
    let mut results = Vec::new();
    for bf16 in precisions()? {
        let suffix = if bf16 { "-bf16" } else { "" };
        let file = bench.out.join(format!("e2e-sft-lora{suffix}-trl-rs.json"));
        results.push(measure(&file, || {
            let mut cmd = Command::new(&bench.executables["e2e"]);
            cmd.args(["--method", "sft", "--lora", "--model"])
                .arg(bench.model)
                .arg("--out")
                .arg(&file)
                .args(&steps_args)
                .current_dir(bench.root);
            if bf16 {
                cmd.arg("--bf16");
            }
            cmd
        })?);
        if compare {
            let file = bench.out.join(format!("e2e-sft-lora{suffix}-trl.json"));
            results.push(measure(&file, || {
                let mut cmd = Command::new(bench.python);
                cmd.arg(bench.script)
                    .args(["run", "--method", "sft", "--impl", "trl", "--peft"])
                    .args(["--bf16", if bf16 { "true" } else { "false" }, "--model"])
                    .arg(bench.model)
                    .arg("--out")
                    .arg(&file)
                    .args(&steps_args)
                    .args(["--threads", &bench.threads.to_string()])
                    .current_dir(bench.root);
                cmd
            })?);
        }
    }
    Ok(results)
}

/// Whether a result row is a bf16 run (its method ends in `-bf16`).
fn is_bf16(row: &Value) -> bool {
    row["method"].as_str().is_some_and(|m| m.ends_with("-bf16"))
}

/// `(TRL's step time / ours, our peak RSS / TRL's)` at one precision, when both ran.
fn ratios(rows: &[Value], bf16: bool) -> Option<(f64, f64)> {
    let find = |side: &str| {
        rows.iter()
            .find(|r| r["side"] == side && is_bf16(r) == bf16)
    };
    let (ours, theirs) = (find("trl-rs")?, find("trl")?);
    Some((
        number(theirs, "median_step_s") / number(ours, "median_step_s"),
        number(ours, "peak_rss_bytes") / number(theirs, "peak_rss_bytes"),
    ))
}

/// The LoRA table: one row per implementation.
pub(super) fn lora_table(results: &Value) -> String {
    let rows = results["lora"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return "Not run.\n".into();
    }
    let mut table = String::from(
        "| implementation | precision | s/step (median) | tokens/s | peak RSS | TRL s/step ÷ this | RSS ÷ TRL's | others' CPU |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for row in &rows {
        let measured = ratios(&rows, is_bf16(row));
        let (speed, rss) = match measured {
            Some((speed, rss)) if row["side"] == "trl-rs" => {
                (format!("{speed:.2}x"), format!("{rss:.2}"))
            }
            _ => ("-".into(), "-".into()),
        };
        table += &format!(
            "| {} | {} | {:.3} | {:.0} | {:.2} GB | {speed} | {rss} | {:.0}% |\n",
            row["implementation"].as_str().unwrap_or("?"),
            if is_bf16(row) { "bf16" } else { "fp32" },
            number(row, "median_step_s"),
            number(row, "tokens_per_s"),
            number(row, "peak_rss_bytes") / 1e9,
            100.0 * number(row, "others_cpu_share"),
        );
    }
    table
}

/// The verdict against both targets, per precision, when both sides ran.
fn verdict(results: &Value) -> String {
    let rows = results["lora"].as_array().cloned().unwrap_or_default();
    let mut lines = String::new();
    for bf16 in [false, true] {
        let Some((speed, rss)) = ratios(&rows, bf16) else {
            continue;
        };
        lines += &format!(
            "- {}: trl-rs's LoRA SFT step is {} than TRL + peft's (target: at least \
             {TARGET_SPEEDUP}x faster, {}), with {rss:.2}x its peak RSS (target: at most {:.2}x, \
             {}).\n",
            if bf16 { "bf16 (TRL's default)" } else { "fp32" },
            super::report::faster_or_slower(speed),
            super::report::met(speed >= TARGET_SPEEDUP),
            TARGET_RSS_SHARE,
            super::report::met(rss <= TARGET_RSS_SHARE),
        );
    }
    if lines.is_empty() {
        lines = "- TRL's side not run (no `--compare trl`).\n".into();
    }
    lines
}

/// The section of BENCHMARKS.md: setup, table, verdict.
pub(super) fn lora_section(results: &Value) -> String {
    let first = &results["lora"][0];
    format!(
        "{HEADING}: training steps with fresh LoRA adapters\n\n{}\n\n\
The benchmark model and SFT batch above (8 rows of 256 tokens, every token a label), its weights \
frozen, with fresh adapters from TRL's `--use_peft` defaults: r 16, alpha 32, dropout 0.05, \
peft's default targets for Qwen2 (`q_proj`, `v_proj`). trl-rs: `benches/e2e.rs --method sft \
--lora` (`trl_core::lora::attach_new`, as `trl sft --use_peft` attaches them); TRL: \
`SFTTrainer` with `peft_config` (`reference/bench_trl.py run --method sft --impl trl --peft`). \
fp32, and where the CPU has AMX-BF16 bf16 too: trl-rs `--bf16` (the products on AMX tiles, \
bf16 operands, f32 accumulation, as `trl sft --bf16 true` trains), TRL `bf16=True` (autocast, \
the default of TRL's configs, on the CPU too). {} threads, AdamW lr 1e-5, grad-norm clipping at 1.0, {NO_CHECKPOINTING}; each side in its own process, {} \
warm-up step(s), then the median of the measured steps. Targets: at least {TARGET_SPEEDUP}x \
faster than TRL + peft, at most a third of its peak RSS.\n\n{}\n{}",
        provenance_line(results),
        first["threads"],
        first["warmup_steps"],
        lora_table(results),
        verdict(results),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{lora_section, lora_table};

    fn row(side: &str, step: f64, rss: f64) -> serde_json::Value {
        json!({
            "side": side, "implementation": side, "method": "sft-lora", "median_step_s": step,
            "tokens_per_s": 2048.0 / step, "peak_rss_bytes": rss, "others_cpu_share": 0.02,
            "threads": 2, "warmup_steps": 3,
        })
    }

    #[test]
    fn the_table_shows_both_ratios_and_the_verdict() {
        let results = json!({
            "lora": [row("trl-rs", 0.5, 2e8), row("trl", 2.0, 1e9)],
            "generated": { "date_utc": "2026-01-02 03:04", "commit": "abc1234" },
            "quick": false,
            "machine": { "load_average_at_start": "0.10 0.20 0.30" },
        });
        let table = lora_table(&results);
        assert!(
            table.contains("| trl-rs | fp32 | 0.500 | 4096 | 0.20 GB | 4.00x | 0.20 | 2% |"),
            "{table}"
        );
        assert!(
            table.contains("| trl | fp32 | 2.000 | 1024 | 1.00 GB | - | - | 2% |"),
            "{table}"
        );
        let section = lora_section(&results);
        assert!(section.starts_with("## LoRA SFT"), "{section}");
        assert!(
            section.contains("- fp32: trl-rs's LoRA SFT step is 4.00x faster than TRL + peft's (target: at least 2x faster, met), with 0.20x its peak RSS (target: at most 0.33x, met)"),
            "{section}"
        );
    }

    #[test]
    fn a_missed_target_says_so() {
        let results = json!({ "lora": [row("trl-rs", 1.5, 5e8), row("trl", 2.0, 1e9)] });
        let section = lora_section(&results);
        assert!(
            section.contains("1.33x faster") && section.contains("not met"),
            "{section}"
        );
        let behind = json!({ "lora": [row("trl-rs", 2.0, 5e8), row("trl", 1.5, 1e9)] });
        let section = lora_section(&behind);
        assert!(
            section.contains("1.33x slower than TRL + peft's"),
            "{section}"
        );
    }

    #[test]
    fn each_precision_is_compared_with_its_own_kind() {
        let bf16 = |side: &str, step: f64, rss: f64| {
            let mut r = row(side, step, rss);
            r["method"] = json!("sft-lora-bf16");
            r
        };
        let results = json!({ "lora": [
            row("trl-rs", 1.0, 2e8), row("trl", 1.0, 1e9),
            bf16("trl-rs", 0.25, 2e8), bf16("trl", 0.75, 1e9),
        ] });
        let table = lora_table(&results);
        assert!(
            table.contains("| trl-rs | fp32 | 1.000 | 2048 | 0.20 GB | 1.00x |"),
            "{table}"
        );
        assert!(
            table.contains("| trl-rs | bf16 | 0.250 | 8192 | 0.20 GB | 3.00x |"),
            "{table}"
        );
        let section = lora_section(&results);
        assert!(
            section.contains("- fp32: trl-rs's LoRA SFT step is 1.00x"),
            "{section}"
        );
        assert!(
            section.contains("- bf16 (TRL's default): trl-rs's LoRA SFT step is 3.00x faster"),
            "{section}"
        );
    }
}
