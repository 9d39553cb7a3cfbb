//! `cargo xtask bench --device cuda|wgpu`: SFT and DPO steps of the real-shape model
//! (Qwen2.5-0.5B's config) on a GPU backend, with tokens/s, MFU against the fp32 matmul rate
//! measured on the same device, and peak device memory; side by side with TRL's trainers when
//! the reference venv's torch sees CUDA.
//!
//! - `cuda`: the real-shape cases (SFT and DPO at 4 x 512, SFT at 1 x 4096) with `--layers N`
//!   decoder layers (default 24); the table replaces BENCHMARKS.md's GPU section. Peak device
//!   memory is sampled from `nvidia-smi` every 100 ms while each run lasts (the GPU's used
//!   memory less what was used before the run: the process's whole footprint, CUDA context
//!   included, for both sides alike).
//! - `wgpu`: a smoke run (one SFT and one DPO step of 1 x 64 tokens) proving the benchmark
//!   works end to end on that backend, e.g. Mesa's lavapipe without a GPU; no timings are
//!   reported, BENCHMARKS.md is left alone. It trains the small benchmark model: lavapipe
//!   cannot allocate the real-shape model's 544 MB embedding as one buffer ("can't allocate
//!   buffer of size: 544538624").

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::machine::Machine;
use super::measure::{build_benches, measure};
use super::provenance::provenance;
use super::section::replace_section;
use super::shapes::{Case, MemoryColumn, REAL_SHAPE, ShapeBench, case_table};

/// BENCHMARKS.md's heading of the CUDA results.
pub(super) const HEADING: &str = "## GPU: SFT and DPO on the real-shape model (cuda)";

/// The GPU backends the benchmark runs on (cargo features of the root package).
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum Gpu {
    Cuda,
    Wgpu,
}

impl Gpu {
    /// `--device` values: `cpu` is `None` (the CPU benchmarks).
    pub(super) fn parse(value: Option<&str>) -> Result<Option<Gpu>> {
        match value {
            Some("cpu") => Ok(None),
            Some("cuda") => Ok(Some(Gpu::Cuda)),
            Some("wgpu") => Ok(Some(Gpu::Wgpu)),
            other => bail!("--device {other:?}: expected cpu, cuda or wgpu"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Gpu::Cuda => "cuda",
            Gpu::Wgpu => "wgpu",
        }
    }
}

/// What the GPU benchmark needs from `cargo xtask bench`'s options and set-up.
pub(super) struct GpuRun<'a> {
    pub root: &'a Path,
    pub out: &'a Path,
    pub python: &'a Path,
    pub script: &'a Path,
    pub layers: usize,
    pub warmup: usize,
    pub steps: usize,
    pub compare: bool,
}

/// Builds the e2e bench with the backend's feature and runs the cases of `gpu`.
pub(super) fn run(gpu: Gpu, run: &GpuRun) -> Result<()> {
    let executables = build_benches(run.root, &["e2e"], &[gpu.name()])?;
    let machine = Machine::read()?;
    let smoke = gpu == Gpu::Wgpu;
    let bench = ShapeBench {
        root: run.root,
        out: run.out,
        e2e: &executables["e2e"],
        python: run.python,
        script: run.script,
        threads: machine.logical_cpus,
        warmup: if smoke { 0 } else { run.warmup },
        steps: if smoke { 1 } else { run.steps },
        device: gpu.name(),
    };
    if smoke {
        let model = run.out.join("model");
        if !model.join("bench_data.json").is_file() {
            crate::run(
                Command::new(run.python)
                    .arg(run.script)
                    .args(["make-model", "--out"])
                    .arg(&model),
            )?;
        }
        let cases =
            [("sft", 1, 64), ("dpo", 1, 64)].map(|(method, rows, seq)| Case { method, rows, seq });
        let rows = bench.run(&model, &cases, false)?;
        println!(
            "wgpu smoke run: {} SFT/DPO runs trained on the benchmark model; no timings are \
             reported for a software or shared GPU",
            rows.len()
        );
        return Ok(());
    }
    let model = bench.real_model(run.layers)?;
    let compare = run.compare && torch_sees_cuda(run.python);
    if run.compare && !compare {
        eprintln!("the reference venv's torch sees no CUDA device: trl-rs only");
    }
    let rows = bench.run(&model, &REAL_SHAPE, compare)?;
    write_section(run, &machine, &rows)
}

/// Writes `target/bench/gpu.json` and BENCHMARKS.md's GPU section.
fn write_section(run: &GpuRun, machine: &Machine, rows: &[Value]) -> Result<()> {
    let results = json!({
        "generated": provenance(run.root),
        "machine": machine.to_json(),
        "gpu": gpu_name(),
        "gpu_runs": rows,
    });
    std::fs::write(
        run.out.join("gpu.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    let table = case_table(rows, &DEVICE_MEMORY);
    let g = &results["generated"];
    let section = format!(
        "{HEADING}\n\nA random model with Qwen2.5-0.5B's config and {} decoder layers on {}; fp32 \
         on both sides; {} warm-up step(s), then the median of {}; each side in its own process \
         (`cargo xtask bench --device cuda --compare trl`). MFU: the step's training FLOPs over \
         the fp32 matmul rate burn measured on this GPU (4096 x 4096 products). Peak device \
         memory: nvidia-smi's used memory during the run less before it. Measured on {} UTC at \
         commit {}.\n\n{table}",
        run.layers,
        results["gpu"].as_str().unwrap_or("?"),
        run.warmup,
        run.steps,
        g["date_utc"].as_str().unwrap_or("?"),
        g["commit"].as_str().unwrap_or("?"),
    );
    let path = run.root.join("BENCHMARKS.md");
    let previous = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, replace_section(&previous, HEADING, &section))?;
    println!("{table}");
    Ok(())
}

/// Peak device memory, the GPU benchmark's memory column.
const DEVICE_MEMORY: MemoryColumn = MemoryColumn {
    key: "peak_device_bytes",
    name: "peak device memory",
};

/// [`measure`], with the peak device memory of the run added on CUDA.
pub(super) fn measure_on(
    device: &str,
    file: &Path,
    command: impl Fn() -> Command,
) -> Result<Value> {
    if device != "cuda" {
        return measure(file, command);
    }
    let before = used_device_bytes().unwrap_or(0);
    let sampler = MemorySampler::start();
    let measured = measure(file, command);
    let peak = sampler.stop();
    let mut result = measured?;
    result["peak_device_bytes"] = json!(peak.saturating_sub(before));
    Ok(result)
}

/// The first GPU's used memory in bytes, from `nvidia-smi` (None without one).
fn used_device_bytes() -> Option<u64> {
    let output = Command::new("nvidia-smi")
        .args(["--query-gpu=memory.used", "--format=csv,noheader,nounits"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mib: u64 = text.lines().next()?.trim().parse().ok()?;
    Some(mib * 1024 * 1024)
}

/// The first GPU's name, from `nvidia-smi`.
fn gpu_name() -> String {
    Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|text| text.lines().next().map(|l| l.trim().to_string()))
        .unwrap_or_else(|| "an unnamed GPU".into())
}

/// A thread polling [`used_device_bytes`] every 100 ms, keeping the maximum.
struct MemorySampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl MemorySampler {
    fn start() -> MemorySampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(used_device_bytes().unwrap_or(0));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        MemorySampler { stop, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

/// Whether the reference venv's torch sees a CUDA device (TRL's side can run).
fn torch_sees_cuda(python: &Path) -> bool {
    Command::new(python)
        .args([
            "-c",
            "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)",
        ])
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{DEVICE_MEMORY, Gpu, case_table};

    #[test]
    fn devices_parse_and_cpu_means_the_cpu_benchmarks() {
        assert_eq!(Gpu::parse(Some("cuda")).unwrap(), Some(Gpu::Cuda));
        assert_eq!(Gpu::parse(Some("wgpu")).unwrap(), Some(Gpu::Wgpu));
        assert_eq!(Gpu::parse(Some("cpu")).unwrap(), None);
        let err = Gpu::parse(Some("tpu")).unwrap_err().to_string();
        assert!(err.contains("cpu, cuda or wgpu"), "{err}");
    }

    #[test]
    fn the_table_pairs_each_case_with_trl_on_device_memory() {
        let row = |side: &str, step: f64, memory: f64| {
            json!({
                "case": "dpo 4 x 512", "side": side, "implementation": side,
                "median_step_s": step, "tokens_per_s": 4096.0 / step, "mfu": 0.25,
                "peak_device_bytes": memory, "others_cpu_share": 0.0,
            })
        };
        let table = case_table(
            &[row("trl-rs", 0.5, 3e9), row("trl", 1.0, 6e9)],
            &DEVICE_MEMORY,
        );
        assert!(table.contains("| peak device memory |"), "{table}");
        assert!(
            table.contains(
                "| dpo 4 x 512 | trl-rs | 0.50 | 8192 | 25.0% | 3.00 GB | 2.00x | 0.50x | 0% |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| dpo 4 x 512 | trl | 1.00 | 4096 | 25.0% | 6.00 GB | - | - | 0% |")
        );
    }
}
