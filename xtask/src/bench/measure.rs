//! Running the benches: build them, wait for idle CPUs, time each run and others' CPU share.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// Builds the bench targets `names` (release profile) with the root package's `features`
/// (a GPU backend, besides the default CPU one) and returns their executables by name.
pub(super) fn build_benches(
    root: &Path,
    names: &[&str],
    features: &[&str],
) -> Result<BTreeMap<String, PathBuf>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["bench", "--no-run"])
        .args(names.iter().flat_map(|name| ["--bench", name]));
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    let output = command
        .args(["--message-format", "json-render-diagnostics"])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .context("could not run cargo bench --no-run")?;
    if !output.status.success() {
        bail!("cargo bench --no-run failed with {}", output.status);
    }
    let mut executables = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let (Some(name), Some(exe)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) else {
            continue;
        };
        if message["target"]["kind"].get(0).and_then(Value::as_str) == Some("bench") {
            executables.insert(name.to_string(), PathBuf::from(exe));
        }
    }
    for &name in names {
        if !executables.contains_key(name) {
            bail!("cargo bench --no-run did not report the `{name}` executable");
        }
    }
    Ok(executables)
}

/// A run is retried when other processes took more than this share of the CPUs during it.
pub(super) const MAX_OTHERS_SHARE: f64 = 0.05;
/// Runs of one measurement at most; the least disturbed is kept.
pub(super) const MAX_TRIES: usize = 3;

/// Runs one end-to-end measurement in its own process once the machine is idle, and again
/// (up to [`MAX_TRIES`]) while other processes took more than [`MAX_OTHERS_SHARE`] of the
/// CPUs during it. A disturbed run says little: when a build took a core, TRL's DPO step here
/// went from 1.1 s to 8.8 s (torch's OpenMP threads wait on each other), trl-rs's barely moved.
pub(super) fn measure(file: &Path, command: impl Fn() -> Command) -> Result<Value> {
    let mut kept: Option<Value> = None;
    for attempt in 1..=MAX_TRIES {
        wait_for_idle();
        let others = run_watching_others(&mut command())?;
        let mut result = read_json(file)?;
        result["others_cpu_share"] = json!(others);
        result["attempt"] = json!(attempt);
        let better = kept
            .as_ref()
            .is_none_or(|k| others < k["others_cpu_share"].as_f64().unwrap_or(1.0));
        if better {
            kept = Some(result);
        }
        if others <= MAX_OTHERS_SHARE {
            break;
        }
        eprintln!(
            "other processes took {:.0}% of the CPUs during this run; measuring again",
            100.0 * others
        );
    }
    kept.context("no measurement")
}

/// Jiffies of all CPUs, busy and total, from the first line of `/proc/stat`.
struct CpuSample {
    busy: f64,
    total: f64,
    at: std::time::Instant,
}

impl CpuSample {
    fn now() -> CpuSample {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<f64> = text
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let get = |i: usize| fields.get(i).copied().unwrap_or(0.0);
        let total: f64 = (0..8).map(get).sum();
        CpuSample {
            busy: total - get(3) - get(4),
            total,
            at: std::time::Instant::now(),
        }
    }

    /// Share of all CPUs' time that was busy since this sample.
    fn busy_share_since(&self) -> f64 {
        let now = CpuSample::now();
        (now.busy - self.busy) / (now.total - self.total).max(1.0)
    }

    /// Share of all CPUs' time since this sample that processes other than the measured one
    /// (which reported `own_cpu_s` seconds of CPU) kept busy. Jiffies are 1/100 s on Linux.
    fn others_share_since(&self, own_cpu_s: f64) -> f64 {
        let now = CpuSample::now();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let capacity = self.at.elapsed().as_secs_f64() * cpus;
        ((now.busy - self.busy) / 100.0 - own_cpu_s).max(0.0) / capacity.max(1e-9)
    }
}

/// Runs `cmd` and returns the share of the CPUs that other processes took meanwhile: the
/// machine's busy time less the child's CPU time, read from `/proc/PID/stat` every 100 ms
/// while it runs (its last 100 ms are missed, which errs towards "disturbed").
pub(super) fn run_watching_others(cmd: &mut Command) -> Result<f64> {
    let before = CpuSample::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start {cmd:?}"))?;
    let stat_path = format!("/proc/{}/stat", child.id());
    let mut child_ticks = 0.0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Ok(stat) = std::fs::read_to_string(&stat_path)
            && let Some((_, fields)) = stat.rsplit_once(')')
        {
            // utime and stime: fields 14 and 15 of stat(5), 11 and 12 after the name
            let fields: Vec<&str> = fields.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
            if let (Some(user), Some(system)) = (ticks(11), ticks(12)) {
                child_ticks = user + system;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(before.others_share_since(child_ticks / 100.0))
}

/// Waits (at most five minutes) until the CPUs are at least 95% idle over a second.
pub(super) fn wait_for_idle() {
    for _ in 0..300 {
        let sample = CpuSample::now();
        std::thread::sleep(std::time::Duration::from_secs(1));
        if sample.busy_share_since() <= 0.05 {
            return;
        }
    }
    eprintln!("the machine stayed busy for five minutes; measuring anyway");
}

pub(super) fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// Where the inputs of the side-by-side benchmarks (generation, GRPO, LoRA SFT) are: the
/// benchmark model, the built bench executables and the reference script TRL's side runs.
pub(super) struct BenchInputs<'a> {
    pub root: &'a Path,
    pub out: &'a Path,
    pub model: &'a Path,
    pub executables: &'a BTreeMap<String, PathBuf>,
    pub python: &'a Path,
    pub script: &'a Path,
    pub threads: usize,
}

/// A number of a result row, NaN when the row lacks it (a table cell then reads NaN).
pub(super) fn number(row: &Value, key: &str) -> f64 {
    row[key].as_f64().unwrap_or(f64::NAN)
}
