//! Rendering BENCHMARKS.md and its tables from the results, and where its hand-written notes start.

use serde_json::Value;

use super::machine::Machine;
use super::measure::{MAX_OTHERS_SHARE, MAX_TRIES};

/// Where the hand-written part of BENCHMARKS.md starts; everything from it on is kept.
pub(super) const NOTES_HEADING: &str = "## Notes (hand-written, kept across runs)";

fn gb(bytes: &Value) -> String {
    format!("{:.2} GB", bytes.as_f64().unwrap_or(0.0) / 1e9)
}

/// The end-to-end table: one row per (method, implementation), ratios against TRL's trainer.
pub(super) fn end_to_end_table(results: &Value) -> String {
    let mut table = String::from(
        "| method | implementation | s/step (median) | tokens/s | peak RSS | MFU | TRL s/step ÷ this | this RSS ÷ TRL RSS | others' CPU |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let rows = results["end_to_end"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for row in &rows {
        let trl = rows
            .iter()
            .find(|r| r["method"] == row["method"] && r["side"] == "trl");
        let ratio = |key: &str, inverse: bool| match trl {
            Some(trl) if row["side"] != "trl" => {
                let (ours, theirs) = (
                    row[key].as_f64().unwrap_or(f64::NAN),
                    trl[key].as_f64().unwrap_or(f64::NAN),
                );
                format!(
                    "{:.2}x",
                    if inverse {
                        theirs / ours
                    } else {
                        ours / theirs
                    }
                )
            }
            _ => "-".into(),
        };
        table += &format!(
            "| {} | {} | {:.3} | {:.0} | {} | {:.1}% | {} | {} | {:.0}% |\n",
            row["method"].as_str().unwrap_or("?").to_uppercase(),
            row["implementation"].as_str().unwrap_or("?"),
            row["median_step_s"].as_f64().unwrap_or(f64::NAN),
            row["tokens_per_s"].as_f64().unwrap_or(f64::NAN),
            gb(&row["peak_rss_bytes"]),
            100.0 * row["mfu"].as_f64().unwrap_or(f64::NAN),
            ratio("median_step_s", true),
            ratio("peak_rss_bytes", false),
            100.0 * row["others_cpu_share"].as_f64().unwrap_or(f64::NAN),
        );
    }
    table
}

/// Plain statements of where trl-rs stands against the targets.
fn verdicts(results: &Value) -> String {
    let rows = results["end_to_end"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut text = String::new();
    for method in ["sft", "dpo"] {
        let find = |side: &str| {
            rows.iter()
                .find(|r| r["method"] == method && r["side"] == side)
        };
        let (Some(ours), Some(trl)) = (find("trl-rs"), find("trl")) else {
            continue;
        };
        let speedup = trl["median_step_s"].as_f64().unwrap_or(f64::NAN)
            / ours["median_step_s"].as_f64().unwrap_or(f64::NAN);
        let rss = ours["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN)
            / trl["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN);
        let speed = format!("{} than TRL", faster_or_slower(speedup));
        text += &format!(
            "- {}: trl-rs is {speed} (target: at least 1.5x faster, {}) and uses {:.2}x TRL's peak RSS \
             (target: at most 0.33x, {}).\n",
            method.to_uppercase(),
            met(speedup >= 1.5),
            rss,
            met(rss <= 1.0 / 3.0),
        );
    }
    for method in ["sft", "dpo"] {
        let find = |side: &str| {
            rows.iter()
                .find(|r| r["method"] == method && r["side"] == side)
        };
        if let (Some(ours), Some(loop_)) = (find("trl-rs"), find("torch")) {
            let ratio = loop_["median_step_s"].as_f64().unwrap_or(f64::NAN)
                / ours["median_step_s"].as_f64().unwrap_or(f64::NAN);
            text += &format!(
                "- {}: against the hand-written PyTorch loop trl-rs is {}.\n",
                method.to_uppercase(),
                faster_or_slower(ratio)
            );
        }
    }
    if text.is_empty() {
        text = "- Run with `--compare trl` for the ratios to TRL.\n".into();
    }
    let disturbed = rows
        .iter()
        .filter_map(|r| r["others_cpu_share"].as_f64())
        .fold(0.0, f64::max);
    if disturbed > MAX_OTHERS_SHARE {
        text += &format!(
            "\n**Other work disturbed at least one run** (up to {:.0}% of the CPUs after {MAX_TRIES} tries). \
             torch's OpenMP threads lose far more to a shared core than trl-rs does, so such rows \
             flatter trl-rs; rerun on an idle machine before quoting them.\n",
            100.0 * disturbed
        );
    }
    text
}

fn kernels_table(results: &Value) -> String {
    let mut table =
        String::from("| kernel (forward + backward) | median | throughput |\n|---|---|---|\n");
    for k in results["kernels"].as_array().cloned().unwrap_or_default() {
        let id = k["id"].as_str().unwrap_or("?");
        let median = k["median_s"].as_f64().unwrap_or(f64::NAN);
        let rate = k["elements_per_s"].as_f64().unwrap_or(f64::NAN);
        let throughput = if id.starts_with("matmul")
            || id.starts_with("attention/causal")
            || id.starts_with("mlp/")
        {
            format!("{:.1} GFLOP/s", rate / 1e9)
        } else if rate.is_finite() {
            format!("{:.0} M elements/s", rate / 1e6)
        } else {
            "-".into()
        };
        table += &format!("| `{id}` | {:.3} ms | {throughput} |\n", median * 1e3);
    }
    table
}

pub(super) fn render_markdown(results: &Value, machine: &Machine) -> String {
    let g = &results["generated"];
    let m = &results["machine"];
    let python = results["end_to_end"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["side"] == "trl"))
        .map(|r| {
            let v = &r["versions"];
            format!(
                "torch {}, transformers {}, TRL {} ({} threads)",
                v["torch"].as_str().unwrap_or("?"),
                v["transformers"].as_str().unwrap_or("?"),
                v["trl"].as_str().unwrap_or("?"),
                r["threads"]
            )
        })
        .unwrap_or_else(|| "not run (no `--compare trl`)".into());
    let simd = m["simd_flags"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    format!(
        "# Benchmarks\n\n\
Written by `cargo xtask bench{compare}{quick}` on {date} UTC at commit {commit}{dirty}; rerun it to \
refresh this file (the JSON is in `target/bench/results.json`). Never edit the numbers by hand.\n\n\
## Machine\n\n\
- CPU: {cpu}, {cpus} logical CPUs, {mhz:.0} MHz as `/proc/cpuinfo` reports it (under a hypervisor this \
is the nominal clock; boost is not visible)\n\
- SIMD flags: {simd}\n\
- fp32 peak: {peak:.0} GFLOP/s = {cpus} CPUs x {mhz:.0} MHz x {fpc} FLOP/cycle ({lanes} fp32 lanes x 2 for \
FMA x 2 FMA pipes per core); the AVX2-only peak is {avx2:.0} GFLOP/s\n\
- load average when the run started: {load}; other processes took {kernels_others:.0}% of the CPUs while the kernels ran\n\
- trl-rs: {rustc}, burn 0.22 flex backend (simd + rayon), fp32; Python side: {python}\n\n\
## End to end: one training step\n\n\
Random Qwen2-shaped model written once by `reference/bench_trl.py make-model` and loaded by both sides \
(hidden 256, 4 layers, 8 query / 4 key-value heads, intermediate 1024, vocab 512, untied lm_head, \
{params} parameters), fp32, AdamW, grad-norm clipping at 1.0, {NO_CHECKPOINTING}. SFT: 8 rows of 256 tokens. DPO: 8 pairs of \
128 prompt + 128 completion tokens = 16 sequences of 256, sigmoid loss, the reference model a frozen copy. \
{warmup} warm-up step(s), then the median of {steps}; every run in its own process, started once the CPUs were idle. The column \"others' CPU\" is the share of the CPUs that other processes took during the run; a run above {max_others:.0}% is measured again (at most {MAX_TRIES} times) and the least disturbed kept.\n\n\
{table}\n\
{verdicts}\n\
{generation}\
## Kernels (criterion, trl-rs only)\n\n\
At the model's shapes: 8 x 256 tokens, hidden 256, heads 8 / 4 of 32, intermediate 1024, vocab 512.\n\n\
{kernels}\n\
## How the numbers are computed\n\n\
- **Step time**: wall time between the ends of consecutive optimizer steps (trl-rs: \
`Method::after_step`; TRL: the `on_step_end` callback; the hand-written loop: around its body), so \
collation, forward, loss, backward, clipping and the AdamW update are all in it.\n\
- **tokens/s**: tokens in the step's batch (SFT 8 x 256 = 2048, DPO 16 x 256 = 4096) / median step time.\n\
- **Peak RSS**: `VmHWM` from `/proc/self/status` at the end of the run, for the whole process (the Python \
interpreter, torch and TRL included on that side).\n\
- **Training FLOPs per step** = 3 x (2N + 4·L·S·A) x T, where N = parameters that take part in \
matmuls (all but the input embedding table: {n}), L = layers, S = sequence length, A = attention width \
(heads x head_dim), T = tokens in the batch; forward is 2N + 4·L·S·A per token (projections, then scores \
and weighted values over the full S x S matrix), backward twice the forward. DPO adds the reference model's \
forward, (2N + 4·L·S·A) x T.\n\
- **MFU** = training FLOPs per step / median step time / fp32 peak, the peak as stated under Machine.\n",
        compare = if results["end_to_end"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["side"] == "trl"))
        {
            " --compare trl"
        } else {
            ""
        },
        quick = if results["quick"] == true {
            " --quick"
        } else {
            ""
        },
        date = g["date_utc"].as_str().unwrap_or("?"),
        commit = g["commit"].as_str().unwrap_or("?"),
        dirty = if g["work_tree_modified"] == true {
            " (with uncommitted changes)"
        } else {
            ""
        },
        cpu = machine.model_name,
        cpus = machine.logical_cpus,
        mhz = machine.mhz,
        fpc = machine.flops_per_cycle(machine.lanes()),
        lanes = machine.lanes(),
        peak = machine.peak_fp32_flops() / 1e9,
        avx2 = machine.avx2_peak_fp32_flops() / 1e9,
        load = m["load_average_at_start"].as_str().unwrap_or("?"),
        kernels_others = 100.0
            * results["kernels_others_cpu_share"]
                .as_f64()
                .unwrap_or(f64::NAN),
        max_others = 100.0 * MAX_OTHERS_SHARE,
        rustc = g["rustc"].as_str().unwrap_or("rustc"),
        params = results["end_to_end"][0]["params"],
        n = results["end_to_end"][0]["params"].as_f64().unwrap_or(0.0)
            - results["end_to_end"][0]["embedding_params"]
                .as_f64()
                .unwrap_or(0.0),
        warmup = results["end_to_end"][0]["warmup_steps"],
        steps = results["end_to_end"][0]["step_times_s"]
            .as_array()
            .map_or(0, Vec::len) as i64
            - results["end_to_end"][0]["warmup_steps"]
                .as_i64()
                .unwrap_or(0),
        table = end_to_end_table(results),
        verdicts = verdicts(results),
        kernels = kernels_table(results),
        generation = super::generation::generation_section(results),
    )
}

/// How every side-by-side training benchmark runs TRL, said in each section: TRL's configs
/// default `gradient_checkpointing` to true, trl-rs's benchmark steps keep their activations.
pub(super) const NO_CHECKPOINTING: &str =
    "no gradient checkpointing on either side (TRL's configs default it to on; it is passed off)";

/// A target's verdict in the report's words.
pub(super) fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "not met" }
}

/// `"1.50x faster"` for a speed ratio (their time / ours) of 1.5, `"1.25x slower"` for 0.8:
/// a ratio under one read as "0.80x faster" hides that trl-rs is behind.
pub(super) fn faster_or_slower(ratio: f64) -> String {
    if ratio >= 1.0 {
        format!("{ratio:.2}x faster")
    } else {
        format!("{:.2}x slower", 1.0 / ratio)
    }
}
