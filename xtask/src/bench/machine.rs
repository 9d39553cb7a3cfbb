//! The machine under test: CPU description from `/proc/cpuinfo`, peak fp32 FLOPs, load average.

use anyhow::{Context, Result};
use serde_json::{Value, json};

/// The CPU as `/proc/cpuinfo` describes it.
pub(super) struct Machine {
    pub(super) model_name: String,
    pub(super) logical_cpus: usize,
    pub(super) mhz: f64,
    flags: Vec<String>,
}

impl Machine {
    pub(super) fn read() -> Result<Machine> {
        let text = std::fs::read_to_string("/proc/cpuinfo").context("reading /proc/cpuinfo")?;
        let field = |name: &str| {
            text.lines()
                .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        Ok(Machine {
            model_name: field("model name"),
            logical_cpus: text
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count()
                .max(1),
            mhz: field("cpu MHz").parse().unwrap_or(0.0),
            flags: field("flags")
                .split_whitespace()
                .map(String::from)
                .collect(),
        })
    }

    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// Whether trl-rs's `--bf16` runs on AMX tiles here (AMX-BF16 in the flags).
    pub(super) fn has_amx_bf16(&self) -> bool {
        self.has("amx_bf16")
    }

    /// fp32 lanes of the widest vector unit the flags name.
    pub(super) fn lanes(&self) -> f64 {
        if self.has("avx512f") {
            16.0
        } else if self.has("avx2") || self.has("avx") {
            8.0
        } else {
            4.0
        }
    }

    /// FLOPs per cycle per core: lanes x 2 (a fused multiply-add is two) x 2 FMA pipes.
    pub(super) fn flops_per_cycle(&self, lanes: f64) -> f64 {
        let fma = if self.has("fma") { 2.0 } else { 1.0 };
        lanes * fma * 2.0
    }

    pub(super) fn peak_fp32_flops(&self) -> f64 {
        self.logical_cpus as f64 * self.mhz * 1e6 * self.flops_per_cycle(self.lanes())
    }

    pub(super) fn avx2_peak_fp32_flops(&self) -> f64 {
        self.logical_cpus as f64 * self.mhz * 1e6 * self.flops_per_cycle(8.0)
    }

    pub(super) fn to_json(&self) -> Value {
        let simd: Vec<&str> = [
            "sse4_2",
            "avx",
            "avx2",
            "fma",
            "avx512f",
            "avx512_bf16",
            "amx_tile",
        ]
        .into_iter()
        .filter(|f| self.has(f))
        .collect();
        json!({
            "cpu": self.model_name,
            "logical_cpus": self.logical_cpus,
            "mhz": self.mhz,
            "simd_flags": simd,
            "fp32_lanes": self.lanes(),
            "flops_per_cycle_per_core": self.flops_per_cycle(self.lanes()),
            "peak_fp32_flops": self.peak_fp32_flops(),
            "avx2_peak_fp32_flops": self.avx2_peak_fp32_flops(),
            "load_average_at_start": load_average(),
        })
    }
}

/// The 1, 5 and 15 minute load averages: how busy the machine was with other work.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
