//! The GRPO benchmark: one GRPO step (generation + scoring + update) of trl-rs
//! (benches/grpo.rs) and, with `--compare trl`, of TRL's `GRPOTrainer`
//! (reference/bench_trl.py grpo) on the same model, prompts, lengths and threads, each side in
//! its own process; the generation share of the step is reported for both.

use std::process::Command;

use anyhow::Result;
use serde_json::Value;

use super::measure::{BenchInputs, measure, number};
use super::report::NO_CHECKPOINTING;

/// 16 prompts x 4 completions = one generation batch of 64 per optimizer step, trained in 4
/// micro-batches of 16 (TRL: `per_device_train_batch_size` 16, `gradient_accumulation_steps`
/// 4, so `steps_per_generation` 4 and `generation_batch_size` 64).
const PROMPTS: usize = 16;
const NUM_GENERATIONS: usize = 4;
const PROMPT_LEN: usize = 64;
const MAX_COMPLETION_LENGTH: usize = 128;
const GRADIENT_ACCUMULATION_STEPS: usize = 4;
/// trl-rs's GRPO step is to be at least this many times faster than TRL's.
const TARGET_SPEEDUP: f64 = 3.0;
/// The heading `--only grpo` replaces (up to the next `## `).
pub(super) const HEADING: &str = "## GRPO";

/// trl-rs's steps, then TRL's when `compare`.
pub(super) fn run(bench: &BenchInputs, compare: bool, quick: bool) -> Result<Vec<Value>> {
    let (warmup, steps) = if quick { (1, 2) } else { (2, 5) };
    let args: Vec<String> = [
        ("--prompts", PROMPTS),
        ("--num_generations", NUM_GENERATIONS),
        ("--prompt_len", PROMPT_LEN),
        ("--max_completion_length", MAX_COMPLETION_LENGTH),
        ("--gradient_accumulation_steps", GRADIENT_ACCUMULATION_STEPS),
        ("--warmup", warmup),
        ("--steps", steps),
    ]
    .iter()
    .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
    .collect();
    let mut results = Vec::new();
    let file = bench.out.join("grpo-trl-rs.json");
    results.push(measure(&file, || {
        let mut cmd = Command::new(&bench.executables["grpo"]);
        cmd.arg("--model").arg(bench.model).arg("--out").arg(&file);
        cmd.args(&args).current_dir(bench.root);
        cmd
    })?);
    if compare {
        let file = bench.out.join("grpo-trl.json");
        results.push(measure(&file, || {
            let mut cmd = Command::new(bench.python);
            cmd.arg(bench.script)
                .arg("grpo")
                .arg("--model")
                .arg(bench.model);
            cmd.arg("--out").arg(&file).args(&args);
            cmd.args(["--threads", &bench.threads.to_string()])
                .current_dir(bench.root);
            cmd
        })?);
    }
    Ok(results)
}

/// TRL's median step time over trl-rs's, when both ran.
fn speedup(rows: &[Value]) -> Option<f64> {
    let ours = rows.iter().find(|r| r["side"] == "trl-rs")?;
    let theirs = rows.iter().find(|r| r["side"] == "trl")?;
    Some(number(theirs, "median_step_s") / number(ours, "median_step_s"))
}

/// The GRPO table: one row per implementation.
pub(super) fn grpo_table(results: &Value) -> String {
    let rows = results["grpo"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return "Not run.\n".into();
    }
    let mut table = String::from(
        "| implementation | s/step (median) | generation s | generation share | rest of the rollout s | update s | peak RSS | TRL s/step ÷ this | others' CPU |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let ratio = speedup(&rows);
    for row in &rows {
        let step = number(row, "median_step_s");
        let (rollout, generation) = (
            number(row, "median_rollout_s"),
            number(row, "median_generation_s"),
        );
        table += &format!(
            "| {} | {step:.2} | {generation:.2} | {:.0}% | {:.2} | {:.2} | {:.2} GB | {} | {:.0}% |\n",
            row["implementation"].as_str().unwrap_or("?"),
            100.0 * number(row, "generation_share"),
            rollout - generation,
            step - rollout,
            number(row, "peak_rss_bytes") / 1e9,
            match ratio {
                Some(r) if row["side"] == "trl-rs" => format!("{r:.2}x"),
                _ => "-".into(),
            },
            100.0 * number(row, "others_cpu_share"),
        );
    }
    table
}

/// The verdict against the target, when both sides ran.
fn verdict(results: &Value) -> String {
    let rows = results["grpo"].as_array().cloned().unwrap_or_default();
    match speedup(&rows) {
        Some(r) => format!(
            "- trl-rs's GRPO step is {} than TRL's (target: at least {TARGET_SPEEDUP}x \
             faster, {}).\n",
            super::report::faster_or_slower(r),
            if r >= TARGET_SPEEDUP {
                "met"
            } else {
                "not met"
            }
        ),
        None => "- TRL's side not run (no `--compare trl`).\n".into(),
    }
}

/// When and where it was measured: date, commit, `--quick`, the CPU (an `--only` section may
/// come from another host than the rest of the file), the load average at the start.
pub(super) fn provenance_line(results: &Value) -> String {
    let g = &results["generated"];
    let machine = &results["machine"];
    format!(
        "Measured on {} UTC at commit {}{}{} on `{}` ({} logical CPUs); load average when the run \
         started: {}.",
        g["date_utc"].as_str().unwrap_or("?"),
        g["commit"].as_str().unwrap_or("?"),
        if g["work_tree_modified"] == true {
            " (with uncommitted changes)"
        } else {
            ""
        },
        if results["quick"] == true {
            " with `--quick`"
        } else {
            ""
        },
        machine["cpu"].as_str().unwrap_or("?"),
        machine["logical_cpus"].as_u64().unwrap_or(0),
        machine["load_average_at_start"].as_str().unwrap_or("?"),
    )
}

/// The section of BENCHMARKS.md: setup, table, verdict.
pub(super) fn grpo_section(results: &Value) -> String {
    let first = &results["grpo"][0];
    format!(
        "{HEADING}: one step (generation + scoring + update)\n\n{}\n\n\
The benchmark model above; {PROMPTS} prompts of {PROMPT_LEN} tokens (the generation benchmark's, \
handed to both sides as token ids), `num_generations` {NUM_GENERATIONS}: one generation batch of {} \
completions of {MAX_COMPLETION_LENGTH} tokens per optimizer step (`min_new_tokens = \
max_completion_length` on both sides, so no completion stops early), scored by an in-process reward \
(the share of even token ids), then trained in {GRADIENT_ACCUMULATION_STEPS} micro-batches of {} \
(`per_device_train_batch_size` {}, `gradient_accumulation_steps` {GRADIENT_ACCUMULATION_STEPS}: \
TRL's `steps_per_generation` defaults to the accumulation steps, so every step generates once). \
GRPOConfig's defaults otherwise: temperature 1, top-k 0, top-p 1, loss `dapo`, beta 0 (no reference \
model), learning rate 1e-6, grad-norm clipping at 1.0; fp32, {} threads, {NO_CHECKPOINTING}. trl-rs: `GrpoMethod` through \
`trl_core::train::train` (benches/grpo.rs); TRL: `GRPOTrainer` (`reference/bench_trl.py grpo`). \
Step time: between consecutive optimizer-step ends (`Method::after_step` / `on_step_end`); \
generation time: trl-rs's `CompletionSource::complete` around `PolicySampler`, TRL's \
`_generate_single_turn` (transformers' `generate` with its KV cache); the rest of the rollout \
(decoding, scoring, advantages): `Method::prepare` / `_generate_and_score_completions` less the \
generation; the update: the step less the rollout ({GRADIENT_ACCUMULATION_STEPS} forward/backward \
passes, clipping, AdamW). Times are medians over the measured steps, the generation share is the \
measured steps' generation time over their step time. {} warm-up step(s), then the median of {}; each side in its own process. Target: at \
least {TARGET_SPEEDUP}x faster than TRL.\n\n{}\n{}",
        provenance_line(results),
        PROMPTS * NUM_GENERATIONS,
        PROMPTS * NUM_GENERATIONS / GRADIENT_ACCUMULATION_STEPS,
        PROMPTS * NUM_GENERATIONS / GRADIENT_ACCUMULATION_STEPS,
        first["threads"],
        first["warmup_steps"],
        first["step_times_s"].as_array().map_or(0, Vec::len) as i64
            - first["warmup_steps"].as_i64().unwrap_or(0),
        grpo_table(results),
        verdict(results),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{grpo_section, grpo_table};

    fn row(side: &str, step: f64, generation: f64) -> serde_json::Value {
        json!({
            "side": side, "implementation": side, "median_step_s": step,
            "median_generation_s": generation, "generation_share": generation / step,
            "median_rollout_s": generation + 0.25,
            "peak_rss_bytes": 1e9, "others_cpu_share": 0.01, "threads": 2, "warmup_steps": 2,
            "step_times_s": [1, 1, 1, 1, 1, 1, 1],
        })
    }

    #[test]
    fn the_table_shows_the_ratio_and_generation_shares() {
        let results = json!({
            "grpo": [row("trl-rs", 2.0, 0.5), row("trl", 8.0, 4.0)],
            "generated": { "date_utc": "2026-01-02 03:04", "commit": "abc1234" },
            "quick": true,
            "machine": {
                "cpu": "AMD EPYC",
                "logical_cpus": 2,
                "load_average_at_start": "0.10 0.20 0.30"
            },
        });
        let table = grpo_table(&results);
        assert!(
            table.contains("| trl-rs | 2.00 | 0.50 | 25% | 0.25 | 1.25 | 1.00 GB | 4.00x | 1% |"),
            "{table}"
        );
        assert!(
            table.contains("| trl | 8.00 | 4.00 | 50% | 0.25 | 3.75 | 1.00 GB | - | 1% |"),
            "{table}"
        );
        let section = grpo_section(&results);
        assert!(section.starts_with("## GRPO"), "{section}");
        assert!(section.contains("4.00x faster than TRL's (target: at least 3x faster, met)"));
        assert!(section.contains("then the median of 5"), "{section}");
        assert!(section.contains(
            "Measured on 2026-01-02 03:04 UTC at commit abc1234 with `--quick` on `AMD EPYC` (2 \
             logical CPUs); load average when the run started: 0.10 0.20 0.30."
        ));
    }

    #[test]
    fn without_trl_there_is_no_ratio() {
        let results = json!({ "grpo": [row("trl-rs", 2.0, 0.5)] });
        assert!(grpo_table(&results).contains("| - |"));
        assert!(grpo_section(&results).contains("TRL's side not run"));
    }
}
