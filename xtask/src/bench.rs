//! `cargo xtask bench [--compare trl] [--quick]`: trl-rs's kernels and training steps, and
//! optionally TRL's steps on the same model in the same invocation; writes
//! `target/bench/results.json` and `BENCHMARKS.md`.
//!
//! 1. `reference/bench_trl.py make-model` writes the benchmark model, tokenizer and data once
//!    (`target/bench/model`), with the reference venv: both sides train identical weights.
//! 2. `cargo bench --no-run` builds `benches/kernels.rs` and `benches/e2e.rs` (release profile).
//! 3. The criterion kernels run; their estimates are read back from `target/bench/criterion`.
//! 4. Each end-to-end measurement runs in its own process (trl-rs, then with `--compare trl`
//!    TRL's trainer and a hand-written PyTorch loop), so each peak RSS is that run's own.
//! 5. The machine is read from `/proc/cpuinfo`; MFU is computed as BENCHMARKS.md states.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{reference_python, repo_root, run};

/// Where the hand-written part of BENCHMARKS.md starts; everything from it on is kept.
const NOTES_HEADING: &str = "## Notes (hand-written, kept across runs)";

struct Options {
    compare_trl: bool,
    quick: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        compare_trl: false,
        quick: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--compare" => match args.next().map(String::as_str) {
                Some("trl") => options.compare_trl = true,
                other => bail!("--compare {other:?}: the only comparison is `--compare trl`"),
            },
            other => {
                bail!("cargo xtask bench: unknown flag {other:?} (flags: --compare trl, --quick)")
            }
        }
    }
    Ok(options)
}

pub fn bench(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    let root = repo_root();
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    let python = reference_python(&root)?;
    let script = root.join("reference/bench_trl.py");
    let model = out.join("model");
    if !model.join("bench_data.json").is_file() {
        run(Command::new(&python)
            .arg(&script)
            .args(["make-model", "--out"])
            .arg(&model))?;
    }
    let machine = Machine::read()?;
    let executables = build_benches(&root)?;
    let (warmup, steps) = if options.quick { (1, 3) } else { (3, 10) };

    let steps_args = [
        "--warmup".to_string(),
        warmup.to_string(),
        "--steps".to_string(),
        steps.to_string(),
    ];
    let mut e2e = Vec::new();
    for method in ["sft", "dpo"] {
        let file = out.join(format!("e2e-{method}-trl-rs.json"));
        e2e.push(measure(&file, || {
            let mut cmd = Command::new(&executables["e2e"]);
            cmd.args(["--method", method, "--model"])
                .arg(&model)
                .arg("--out")
                .arg(&file)
                .args(&steps_args)
                .current_dir(&root);
            cmd
        })?);
        if options.compare_trl {
            for implementation in ["trl", "torch"] {
                let file = out.join(format!("e2e-{method}-{implementation}.json"));
                e2e.push(measure(&file, || {
                    let mut cmd = Command::new(&python);
                    cmd.arg(&script)
                        .args(["run", "--method", method, "--impl", implementation])
                        .arg("--model")
                        .arg(&model)
                        .arg("--out")
                        .arg(&file)
                        .args(&steps_args)
                        .args(["--threads", &machine.logical_cpus.to_string()])
                        .current_dir(&root);
                    cmd
                })?);
            }
        }
    }

    let criterion_home = out.join("criterion");
    let started = SystemTime::now();
    let mut kernels_cmd = Command::new(&executables["kernels"]);
    kernels_cmd
        .arg("--bench")
        .env("CRITERION_HOME", &criterion_home)
        .current_dir(&root);
    if options.quick {
        kernels_cmd.arg("--quick");
    }
    wait_for_idle();
    let kernels_others = run_watching_others(&mut kernels_cmd)?;
    let kernels = read_criterion(&criterion_home, started)?;

    let model_shape = flop_model(&e2e)?;
    for result in &mut e2e {
        add_derived(result, &model_shape, machine.peak_fp32_flops());
    }
    let results = json!({
        "generated": provenance(&root),
        "quick": options.quick,
        "machine": machine.to_json(),
        "end_to_end": e2e,
        "kernels": kernels,
        "kernels_others_cpu_share": kernels_others,
    });
    let json_path = out.join("results.json");
    std::fs::write(&json_path, serde_json::to_vec_pretty(&results)?)?;
    let mut markdown = render_markdown(&results, &machine);
    // Hand-written notes below the generated part survive a rerun.
    let previous = std::fs::read_to_string(root.join("BENCHMARKS.md")).unwrap_or_default();
    if let Some(at) = previous.find(NOTES_HEADING) {
        markdown = format!("{markdown}\n{}", &previous[at..]);
    }
    std::fs::write(root.join("BENCHMARKS.md"), &markdown)?;
    println!("{}", end_to_end_table(&results));
    println!("wrote {} and BENCHMARKS.md", json_path.display());
    Ok(())
}

/// Builds the two bench targets and returns their executables by name.
fn build_benches(root: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["bench", "--no-run", "--bench", "kernels", "--bench", "e2e"])
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
    for name in ["kernels", "e2e"] {
        if !executables.contains_key(name) {
            bail!("cargo bench --no-run did not report the `{name}` executable");
        }
    }
    Ok(executables)
}

/// A run is retried when other processes took more than this share of the CPUs during it.
const MAX_OTHERS_SHARE: f64 = 0.05;
/// Runs of one measurement at most; the least disturbed is kept.
const MAX_TRIES: usize = 3;

/// Runs one end-to-end measurement in its own process once the machine is idle, and again
/// (up to [`MAX_TRIES`]) while other processes took more than [`MAX_OTHERS_SHARE`] of the
/// CPUs during it. A disturbed run says little: when a build took a core, TRL's DPO step here
/// went from 1.1 s to 8.8 s (torch's OpenMP threads wait on each other), trl-rs's barely moved.
fn measure(file: &Path, command: impl Fn() -> Command) -> Result<Value> {
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
fn run_watching_others(cmd: &mut Command) -> Result<f64> {
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
fn wait_for_idle() {
    for _ in 0..300 {
        let sample = CpuSample::now();
        std::thread::sleep(std::time::Duration::from_secs(1));
        if sample.busy_share_since() <= 0.05 {
            return;
        }
    }
    eprintln!("the machine stayed busy for five minutes; measuring anyway");
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// Criterion's estimates of every benchmark (re)measured since `since`.
fn read_criterion(home: &Path, since: SystemTime) -> Result<Vec<Value>> {
    let mut found = Vec::new();
    let mut stack = vec![home.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "benchmark.json")
                && dir.file_name().is_some_and(|n| n == "new")
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t >= since)
            {
                let info = read_json(&path)?;
                let estimates = read_json(&dir.join("estimates.json"))?;
                let median_s = estimates["median"]["point_estimate"]
                    .as_f64()
                    .unwrap_or(0.0)
                    / 1e9;
                let elements = info["throughput"]["Elements"].as_f64();
                found.push(json!({
                    "id": info["full_id"],
                    "median_s": median_s,
                    "mean_s": estimates["mean"]["point_estimate"].as_f64().unwrap_or(0.0) / 1e9,
                    "elements": elements,
                    "elements_per_s": elements.map(|e| e / median_s),
                }));
            }
        }
    }
    // In the order benches/kernels.rs defines its groups.
    let rank = |id: &str| {
        ["matmul", "attention", "mlp", "elementwise", "optimizer"]
            .iter()
            .position(|g| id.starts_with(g))
    };
    found.sort_by_key(|k| {
        let id = k["id"].as_str().unwrap_or_default().to_string();
        (rank(&id), id)
    });
    Ok(found)
}

/// What the FLOP estimate needs, from trl-rs's report of the model it trained.
struct FlopModel {
    /// Parameters that take part in matmuls: all but the input embedding table.
    matmul_params: f64,
    layers: f64,
    attention_width: f64,
}

fn flop_model(e2e: &[Value]) -> Result<FlopModel> {
    let ours = e2e
        .iter()
        .find(|r| r["side"] == "trl-rs")
        .context("no trl-rs end-to-end result")?;
    let number = |key: &str| {
        ours[key]
            .as_f64()
            .with_context(|| format!("trl-rs result has no {key}"))
    };
    Ok(FlopModel {
        matmul_params: number("params")? - number("embedding_params")?,
        layers: number("num_layers")?,
        attention_width: number("attention_width")?,
    })
}

/// Training FLOPs of one step, tokens/s, MFU and the ratios to TRL's run of the same method.
fn add_derived(result: &mut Value, m: &FlopModel, peak: f64) {
    let tokens = result["tokens_per_step"].as_f64().unwrap_or(0.0);
    let seq = result["seq_len"].as_f64().unwrap_or(0.0);
    // Forward per token: 2 N (matmuls) + 4 L S A (scores and weighted values); backward 2x that.
    let forward_per_token = 2.0 * m.matmul_params + 4.0 * m.layers * seq * m.attention_width;
    let mut flops = 3.0 * forward_per_token * tokens;
    if result["method"] == "dpo" {
        flops += forward_per_token * tokens; // the reference model's forward
    }
    let step = result["median_step_s"].as_f64().unwrap_or(f64::NAN);
    result["flops_per_step"] = json!(flops);
    result["achieved_flops_per_s"] = json!(flops / step);
    result["mfu"] = json!(flops / step / peak);
}

/// The CPU as `/proc/cpuinfo` describes it.
struct Machine {
    model_name: String,
    logical_cpus: usize,
    mhz: f64,
    flags: Vec<String>,
}

impl Machine {
    fn read() -> Result<Machine> {
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

    /// fp32 lanes of the widest vector unit the flags name.
    fn lanes(&self) -> f64 {
        if self.has("avx512f") {
            16.0
        } else if self.has("avx2") || self.has("avx") {
            8.0
        } else {
            4.0
        }
    }

    /// FLOPs per cycle per core: lanes x 2 (a fused multiply-add is two) x 2 FMA pipes.
    fn flops_per_cycle(&self, lanes: f64) -> f64 {
        let fma = if self.has("fma") { 2.0 } else { 1.0 };
        lanes * fma * 2.0
    }

    fn peak_fp32_flops(&self) -> f64 {
        self.logical_cpus as f64 * self.mhz * 1e6 * self.flops_per_cycle(self.lanes())
    }

    fn avx2_peak_fp32_flops(&self) -> f64 {
        self.logical_cpus as f64 * self.mhz * 1e6 * self.flops_per_cycle(8.0)
    }

    fn to_json(&self) -> Value {
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

fn command_output(program: &str, args: &[&str], dir: &Path) -> String {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn provenance(root: &Path) -> Value {
    let dirty = !command_output(
        "git",
        &["status", "--porcelain", "--untracked-files=no"],
        root,
    )
    .is_empty();
    json!({
        "date_utc": command_output("date", &["-u", "+%Y-%m-%d %H:%M"], root),
        "commit": command_output("git", &["rev-parse", "--short", "HEAD"], root),
        "work_tree_modified": dirty,
        "rustc": command_output("rustc", &["--version"], root),
    })
}

fn gb(bytes: &Value) -> String {
    format!("{:.2} GB", bytes.as_f64().unwrap_or(0.0) / 1e9)
}

/// The end-to-end table: one row per (method, implementation), ratios against TRL's trainer.
fn end_to_end_table(results: &Value) -> String {
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
        let speed = if speedup >= 1.0 {
            format!("{speedup:.2}x faster than TRL")
        } else {
            format!("{:.2}x slower than TRL", 1.0 / speedup)
        };
        let met = |ok: bool| if ok { "met" } else { "not met" };
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
                if ratio >= 1.0 {
                    format!("{ratio:.2}x faster")
                } else {
                    format!("{:.2}x slower", 1.0 / ratio)
                }
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

fn render_markdown(results: &Value, machine: &Machine) -> String {
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
{params} parameters), fp32, AdamW, grad-norm clipping at 1.0. SFT: 8 rows of 256 tokens. DPO: 8 pairs of \
128 prompt + 128 completion tokens = 16 sequences of 256, sigmoid loss, the reference model a frozen copy. \
{warmup} warm-up step(s), then the median of {steps}; every run in its own process, started once the CPUs were idle. The column \"others' CPU\" is the share of the CPUs that other processes took during the run; a run above {max_others:.0}% is measured again (at most {MAX_TRIES} times) and the least disturbed kept.\n\n\
{table}\n\
{verdicts}\n\
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
    )
}
