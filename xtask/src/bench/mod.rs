//! `cargo xtask bench [--compare trl] [--quick]`: trl-rs's kernels and training steps, and
//! optionally TRL's steps on the same model in the same invocation; writes
//! `target/bench/results.json` and `BENCHMARKS.md`.
//!
//! `--only generation` / `--only grpo` / `--only lora` run that benchmark alone and replace only
//! its section of BENCHMARKS.md. `--device cuda|wgpu` runs the GPU benchmark of [`gpu`] (SFT
//! and DPO on the real-shape model; a smoke run on wgpu). `--only real-shape [--layers N]` (Qwen2.5-0.5B's config) and
//! `--only seq-sweep` (2048 tokens per step at four sequence lengths) run the other shapes of
//! [`shapes`]; `--warmup N --steps N` set their step counts (default 1 and 3).
//!
//! 1. `reference/bench_trl.py make-model` writes the benchmark model, tokenizer and data once
//!    (`target/bench/model`), with the reference venv: both sides train identical weights.
//! 2. `cargo bench --no-run` builds `benches/kernels.rs` and `benches/e2e.rs` (release profile).
//! 3. The criterion kernels run; their estimates are read back from `target/bench/criterion`.
//! 4. Each end-to-end measurement runs in its own process (trl-rs, then with `--compare trl`
//!    TRL's trainer and a hand-written PyTorch loop), so each peak RSS is that run's own.
//! 5. The generation benchmark (`benches/generate.rs`, and transformers' `generate` with
//!    `--compare trl`) runs at 1 x 1 and 16 prompts x 4 sequences, each in its own process.
//! 6. The GRPO benchmark (`benches/grpo.rs`, and TRL's `GRPOTrainer` with `--compare trl`):
//!    one step of generation + scoring + update, each side in its own process.
//! 7. The LoRA benchmark (`benches/e2e.rs --lora`, and TRL's `SFTTrainer` with peft with
//!    `--compare trl`): SFT steps training fresh adapters, each side in its own process.
//! 8. The machine is read from `/proc/cpuinfo`; MFU is computed as BENCHMARKS.md states.

mod criterion;
mod flops;
mod generation;
mod gpu;
mod grpo;
mod lora;
mod machine;
mod measure;
mod provenance;
mod report;
mod section;
mod shapes;

use std::process::Command;
use std::time::SystemTime;

use anyhow::{Result, bail};
use serde_json::json;

use crate::{reference_python, repo_root, run};
use criterion::read_criterion;
use flops::{add_derived, flop_model};
use machine::Machine;
use measure::{BenchInputs, build_benches, measure, run_watching_others, wait_for_idle};
use provenance::provenance;
use report::{NOTES_HEADING, end_to_end_table, render_markdown};

struct Options {
    compare_trl: bool,
    quick: bool,
    /// `--only generation|grpo|lora`: run that benchmark alone and replace its section
    /// of BENCHMARKS.md, leaving the other sections as they are.
    only: Option<Only>,
    /// `--layers N`: decoder layers of the real-shape model (default 24, Qwen2.5-0.5B's).
    layers: usize,
    /// `--warmup N --steps N` of the shape benchmarks.
    warmup: usize,
    steps: usize,
    /// `--device cuda|wgpu`: the GPU benchmark of [`gpu`] instead of the CPU ones.
    gpu: Option<gpu::Gpu>,
}

/// The benchmarks that run alone.
#[derive(Clone, Copy, PartialEq)]
enum Only {
    Generation,
    Grpo,
    Lora,
    RealShape,
    SeqSweep,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        compare_trl: false,
        quick: false,
        only: None,
        layers: 24,
        warmup: 1,
        steps: 3,
        gpu: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--only" => match args.next().map(String::as_str) {
                Some("generation") => options.only = Some(Only::Generation),
                Some("grpo") => options.only = Some(Only::Grpo),
                Some("lora") => options.only = Some(Only::Lora),
                Some("real-shape") => options.only = Some(Only::RealShape),
                Some("seq-sweep") => options.only = Some(Only::SeqSweep),
                other => bail!(
                    "--only {other:?}: the parts that run alone are `generation`, `grpo`, `lora`, \
                     `real-shape` and `seq-sweep`"
                ),
            },
            "--layers" | "--warmup" | "--steps" => {
                let value: usize = match args.next().map(|v| v.parse()) {
                    Some(Ok(v)) => v,
                    _ => bail!("{arg} needs a whole number"),
                };
                match arg.as_str() {
                    "--layers" => options.layers = value.max(1),
                    "--warmup" => options.warmup = value,
                    _ => options.steps = value.max(1),
                }
            }
            "--device" => options.gpu = gpu::Gpu::parse(args.next().map(String::as_str))?,
            "--compare" => match args.next().map(String::as_str) {
                Some("trl") => options.compare_trl = true,
                other => bail!("--compare {other:?}: the only comparison is `--compare trl`"),
            },
            other => {
                bail!(
                    "cargo xtask bench: unknown flag {other:?} (flags: --compare trl, --quick, \
                     --only generation|grpo|lora|real-shape|seq-sweep, --layers N, --warmup N, --steps N, \
                     --device cpu|cuda|wgpu)"
                )
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
    if let Some(device) = options.gpu {
        let run = gpu::GpuRun {
            root: &root,
            out: &out,
            python: &python,
            script: &script,
            layers: options.layers,
            warmup: options.warmup,
            steps: options.steps,
            compare: options.compare_trl,
        };
        return gpu::run(device, &run);
    }
    let model = out.join("model");
    if !model.join("bench_data.json").is_file() {
        run(Command::new(&python)
            .arg(&script)
            .args(["make-model", "--out"])
            .arg(&model))?;
    }
    let machine = Machine::read()?;
    let executables = build_benches(
        &root,
        match options.only {
            Some(Only::Generation) => &["generate"],
            Some(Only::Grpo) => &["grpo"],
            Some(Only::Lora | Only::RealShape | Only::SeqSweep) => &["e2e"],
            None => &["kernels", "e2e", "generate", "grpo"],
        },
        &[],
    )?;
    let benches = BenchInputs {
        root: &root,
        out: &out,
        model: &model,
        executables: &executables,
        python: &python,
        script: &script,
        threads: machine.logical_cpus,
    };
    if let Some(only @ (Only::RealShape | Only::SeqSweep)) = options.only {
        let bench = shapes::ShapeBench {
            root: &root,
            out: &out,
            e2e: &executables["e2e"],
            python: &python,
            script: &script,
            threads: machine.logical_cpus,
            warmup: options.warmup,
            steps: options.steps,
            device: "cpu",
        };
        return run_shapes(only, &options, &machine, &bench, &model);
    }
    if let Some(only) = options.only {
        return run_only(only, &options, &machine, &benches);
    }
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

    let generation = generation::run(&benches, options.compare_trl, options.quick)?;
    let grpo = grpo::run(&benches, options.compare_trl, options.quick)?;
    let lora = lora::run(&benches, options.compare_trl, options.quick)?;

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
        "generation": generation,
        "grpo": grpo,
        "lora": lora,
        "kernels": kernels,
        "kernels_others_cpu_share": kernels_others,
    });
    let json_path = out.join("results.json");
    std::fs::write(&json_path, serde_json::to_vec_pretty(&results)?)?;
    let mut markdown = render_markdown(&results, &machine);
    markdown = section::replace_section(&markdown, grpo::HEADING, &grpo::grpo_section(&results));
    markdown = section::replace_section(&markdown, lora::HEADING, &lora::lora_section(&results));
    // Hand-written notes below the generated part survive a rerun.
    let previous = std::fs::read_to_string(root.join("BENCHMARKS.md")).unwrap_or_default();
    if let Some(at) = previous.find(NOTES_HEADING) {
        markdown = format!("{markdown}\n{}", &previous[at..]);
    }
    std::fs::write(root.join("BENCHMARKS.md"), &markdown)?;
    println!("{}", end_to_end_table(&results));
    println!("{}", generation::generation_table(&results));
    println!("{}", grpo::grpo_table(&results));
    println!("{}", lora::lora_table(&results));
    println!("wrote {} and BENCHMARKS.md", json_path.display());
    Ok(())
}

/// `--only real-shape|seq-sweep`: the cases of [`shapes`]; results go to
/// `target/bench/<name>.json` and their section of BENCHMARKS.md is replaced.
fn run_shapes(
    only: Only,
    options: &Options,
    machine: &Machine,
    bench: &shapes::ShapeBench,
    bench_model: &std::path::Path,
) -> Result<()> {
    let (key, heading, rows, what) = if only == Only::RealShape {
        let model = bench.real_model(options.layers)?;
        let rows = bench.run(&model, &shapes::REAL_SHAPE, options.compare_trl)?;
        let what = format!(
            "A random model with Qwen2.5-0.5B's config (hidden 896, 14 / 2 heads, intermediate \
             4864, vocab 151,936, tied embeddings) and {} decoder layers{}",
            options.layers,
            if options.layers == 24 {
                ""
            } else {
                " (Qwen2.5-0.5B has 24)"
            }
        );
        ("real_shape", "## Real-shape model", rows, what)
    } else {
        let rows = bench.run(bench_model, &shapes::SEQ_SWEEP, options.compare_trl)?;
        let what = "The benchmark model at 2048 tokens per step".to_string();
        ("seq_sweep", "## Sequence-length sweep", rows, what)
    };
    let results = json!({
        "generated": provenance(bench.root),
        "machine": machine.to_json(),
        key: rows,
    });
    std::fs::write(
        bench.out.join(format!("{key}.json")),
        serde_json::to_vec_pretty(&results)?,
    )?;
    let g = &results["generated"];
    let table = shapes::shapes_table(&rows);
    let section = format!(
        "{heading}\n\n{what}; {} warm-up step(s), then the median of {}; fp32, {} threads, {}, \
         each side in its own process (`cargo xtask bench --only {} --compare trl`). Measured on {} UTC \
         at commit {}, load average at the start {}.\n\n{table}",
        options.warmup,
        options.steps,
        machine.logical_cpus,
        report::NO_CHECKPOINTING,
        if only == Only::RealShape {
            "real-shape"
        } else {
            "seq-sweep"
        },
        g["date_utc"].as_str().unwrap_or("?"),
        g["commit"].as_str().unwrap_or("?"),
        results["machine"]["load_average_at_start"]
            .as_str()
            .unwrap_or("?"),
    );
    let path = bench.root.join("BENCHMARKS.md");
    let previous = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(
        &path,
        section::replace_section(&previous, heading, &section),
    )?;
    println!("{table}");
    Ok(())
}

/// `--only generation|grpo|lora`: that benchmark alone; its results go to
/// `target/bench/<name>.json` and its section of BENCHMARKS.md is replaced.
fn run_only(only: Only, options: &Options, machine: &Machine, benches: &BenchInputs) -> Result<()> {
    let (root, out) = (benches.root, benches.out);
    let (compare, quick) = (options.compare_trl, options.quick);
    let (key, rows) = match only {
        Only::Generation => ("generation", generation::run(benches, compare, quick)?),
        Only::Grpo => ("grpo", grpo::run(benches, compare, quick)?),
        Only::Lora => ("lora", lora::run(benches, compare, quick)?),
        Only::RealShape | Only::SeqSweep => bail!("the shape benchmarks run through run_shapes"),
    };
    let results = json!({
        "generated": provenance(root),
        "quick": options.quick,
        "machine": machine.to_json(),
        key: rows,
    });
    std::fs::write(
        out.join(format!("{key}.json")),
        serde_json::to_vec_pretty(&results)?,
    )?;
    let path = root.join("BENCHMARKS.md");
    let previous = std::fs::read_to_string(&path).unwrap_or_default();
    let (heading, section, table) = match only {
        Only::Generation => (
            "## Generation",
            generation::generation_section(&results),
            generation::generation_table(&results),
        ),
        Only::Grpo => (
            grpo::HEADING,
            grpo::grpo_section(&results),
            grpo::grpo_table(&results),
        ),
        Only::Lora => (
            lora::HEADING,
            lora::lora_section(&results),
            lora::lora_table(&results),
        ),
        Only::RealShape | Only::SeqSweep => bail!("the shape benchmarks run through run_shapes"),
    };
    std::fs::write(
        &path,
        section::replace_section(&previous, heading, &section),
    )?;
    println!("{table}");
    Ok(())
}
