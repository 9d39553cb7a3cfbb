//! `--only real-shape` and `--only seq-sweep`: SFT/DPO steps at other shapes than the
//! benchmark model's 8 x 256, trl-rs and (with `--compare trl`) TRL's trainer side by side,
//! each in its own process.
//!
//! - real shape: a random model with Qwen2.5-0.5B's exact config (`bench_trl.py make-model
//!   --preset qwen2.5-0.5b`, written at bench time, never committed; `--layers N` keeps fewer
//!   layers when 24 are too slow for the machine), SFT and DPO at 4 x 512 and SFT at 1 x 4096;
//! - sequence sweep: the benchmark model at 2048 tokens per step as 8 x 256, 4 x 512, 2 x 1024
//!   and 1 x 2048 (SFT).

use std::path::Path;
use std::process::Command;

use anyhow::Result;
use serde_json::{Value, json};

use super::flops::{add_derived, flop_model};
use super::gpu::measure_on;
use super::machine::Machine;
use super::measure::number;
use crate::run;

/// One measured shape: method, rows (SFT) or pairs (DPO), tokens per sequence.
#[derive(Clone, Copy)]
pub(super) struct Case {
    pub method: &'static str,
    pub rows: usize,
    pub seq: usize,
}

/// The real-shape cases.
pub(super) const REAL_SHAPE: [Case; 3] = [
    Case {
        method: "sft",
        rows: 4,
        seq: 512,
    },
    Case {
        method: "dpo",
        rows: 4,
        seq: 512,
    },
    Case {
        method: "sft",
        rows: 1,
        seq: 4096,
    },
];

/// The sequence-length sweep: 2048 tokens per step.
pub(super) const SEQ_SWEEP: [Case; 4] = [
    Case {
        method: "sft",
        rows: 8,
        seq: 256,
    },
    Case {
        method: "sft",
        rows: 4,
        seq: 512,
    },
    Case {
        method: "sft",
        rows: 2,
        seq: 1024,
    },
    Case {
        method: "sft",
        rows: 1,
        seq: 2048,
    },
];

/// Where things are and how long to run.
pub(super) struct ShapeBench<'a> {
    pub root: &'a Path,
    pub out: &'a Path,
    pub e2e: &'a Path,
    pub python: &'a Path,
    pub script: &'a Path,
    pub threads: usize,
    pub warmup: usize,
    pub steps: usize,
    /// `cpu`, or the GPU (`cuda`, `wgpu`) of `cargo xtask bench --device` (see `gpu.rs`).
    pub device: &'a str,
}

impl ShapeBench<'_> {
    /// Writes the real-shape model with `layers` decoder layers (once per depth).
    pub fn real_model(&self, layers: usize) -> Result<std::path::PathBuf> {
        let model = self.out.join(format!("qwen2.5-0.5b-{layers}-layers"));
        if !model.join("config.json").is_file() {
            run(Command::new(self.python)
                .arg(self.script)
                .args(["make-model", "--preset", "qwen2.5-0.5b", "--layers"])
                .arg(layers.to_string())
                .arg("--out")
                .arg(&model))?;
        }
        Ok(model)
    }

    /// Every case on `model`: trl-rs, then TRL when `compare`; MFU from trl-rs's FLOP model.
    pub fn run(&self, model: &Path, cases: &[Case], compare: bool) -> Result<Vec<Value>> {
        let machine = Machine::read()?;
        let mut rows = Vec::new();
        for case in cases {
            let data = model.join(format!("bench_data_{}x{}.json", case.rows, case.seq));
            if !data.is_file() {
                run(Command::new(self.python)
                    .arg(self.script)
                    .args(["make-data", "--model"])
                    .arg(model)
                    .args([
                        "--rows",
                        &case.rows.to_string(),
                        "--seq",
                        &case.seq.to_string(),
                    ]))?;
            }
            let mut pair = self.measure_case(model, &data, case, compare)?;
            let shape = flop_model(&pair)?;
            // On a GPU, MFU is against the fp32 matmul rate trl-rs measured on it.
            let peak = match self.device {
                "cpu" => machine.peak_fp32_flops(),
                _ => number(&pair[0], "device_matmul_flops"),
            };
            for result in &mut pair {
                add_derived(result, &shape, peak);
                result["case"] = json!(format!("{} {} x {}", case.method, case.rows, case.seq));
            }
            rows.extend(pair);
        }
        Ok(rows)
    }

    fn measure_case(
        &self,
        model: &Path,
        data: &Path,
        case: &Case,
        compare: bool,
    ) -> Result<Vec<Value>> {
        let tag = format!("{}-{}x{}", case.method, case.rows, case.seq);
        let steps = [
            "--warmup".to_string(),
            self.warmup.to_string(),
            "--steps".to_string(),
            self.steps.to_string(),
        ];
        let mut out = Vec::new();
        let gpu = self.device != "cpu";
        let file = self.out.join(format!("shape-{tag}-trl-rs.json"));
        out.push(measure_on(self.device, &file, || {
            let mut cmd = Command::new(self.e2e);
            cmd.args(["--method", case.method, "--model"]).arg(model);
            cmd.arg("--data").arg(data).arg("--out").arg(&file);
            if gpu {
                cmd.args(["--device", self.device]);
            }
            if self.device == "cuda" {
                cmd.arg("--matmul_peak");
            }
            cmd.args(&steps).current_dir(self.root);
            cmd
        })?);
        if compare {
            let file = self.out.join(format!("shape-{tag}-trl.json"));
            out.push(measure_on(self.device, &file, || {
                let mut cmd = Command::new(self.python);
                cmd.arg(self.script)
                    .args(["run", "--method", case.method, "--impl", "trl", "--model"])
                    .arg(model);
                cmd.arg("--data").arg(data).arg("--out").arg(&file);
                cmd.args(&steps)
                    .args(["--threads", &self.threads.to_string()])
                    .current_dir(self.root);
                if gpu {
                    cmd.args(["--device", self.device]);
                }
                cmd
            })?);
        }
        Ok(out)
    }
}

/// Which memory a table shows: the JSON key of the runs and the column's name.
pub(super) struct MemoryColumn {
    pub key: &'static str,
    pub name: &'static str,
}

/// Peak resident set size, the CPU benchmarks' memory.
pub(super) const PEAK_RSS: MemoryColumn = MemoryColumn {
    key: "peak_rss_bytes",
    name: "peak RSS",
};

/// One row per case and implementation, with TRL's time and peak RSS over trl-rs's.
pub(super) fn shapes_table(rows: &[Value]) -> String {
    case_table(rows, &PEAK_RSS)
}

/// One row per case and implementation, with TRL's time and `memory` over trl-rs's.
pub(super) fn case_table(rows: &[Value], memory: &MemoryColumn) -> String {
    if rows.is_empty() {
        return "Not run.\n".into();
    }
    let mut table = format!(
        "| case | implementation | s/step (median) | tokens/s | MFU | {} | TRL s/step ÷ this | this {} ÷ TRL's | others' CPU |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        memory.name, memory.name
    );
    for row in rows {
        let theirs = rows
            .iter()
            .find(|r| r["case"] == row["case"] && r["side"] == "trl");
        let ratio = |f: &dyn Fn(&Value) -> f64| match theirs {
            Some(t) if row["side"] == "trl-rs" => format!("{:.2}x", f(t)),
            _ => "-".into(),
        };
        table += &format!(
            "| {} | {} | {:.2} | {:.0} | {:.1}% | {:.2} GB | {} | {} | {:.0}% |\n",
            row["case"].as_str().unwrap_or("?"),
            row["implementation"].as_str().unwrap_or("?"),
            number(row, "median_step_s"),
            number(row, "tokens_per_s"),
            100.0 * number(row, "mfu"),
            number(row, memory.key) / 1e9,
            ratio(&|t| number(t, "median_step_s") / number(row, "median_step_s")),
            ratio(&|t| number(row, memory.key) / number(t, memory.key)),
            100.0 * number(row, "others_cpu_share"),
        );
    }
    table
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::shapes_table;

    #[test]
    fn the_table_pairs_each_case_with_trl() {
        let row = |side: &str, step: f64, rss: f64| {
            json!({
                "case": "sft 4 x 512", "side": side, "implementation": side,
                "median_step_s": step, "tokens_per_s": 2048.0 / step, "mfu": 0.1,
                "peak_rss_bytes": rss, "others_cpu_share": 0.0,
            })
        };
        let table = shapes_table(&[row("trl-rs", 2.0, 1e9), row("trl", 6.0, 4e9)]);
        assert!(
            table.contains(
                "| sft 4 x 512 | trl-rs | 2.00 | 1024 | 10.0% | 1.00 GB | 3.00x | 0.25x | 0% |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| sft 4 x 512 | trl | 6.00 | 341 | 10.0% | 4.00 GB | - | - | 0% |")
        );
    }
}
