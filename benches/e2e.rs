//! End-to-end training steps of trl-rs on the benchmark model: one method per process, so that
//! the process's peak RSS is that run's. `cargo xtask bench` runs it (twice: SFT and DPO) on
//! the model and data `reference/bench_trl.py make-model` wrote, the same files TRL trains on:
//!
//! ```text
//! cargo bench --bench e2e -- --method sft|dpo --model DIR --out FILE.json [--warmup 3] [--steps 10]
//!     [--data FILE] [--lora]
//! ```
//!
//! `--data` takes a `bench_trl.py make-data` file (other shapes: the real-shape case and the
//! sequence-length sweep); the batch is then its rows (SFT) or pairs (DPO).
//!
//! It runs `warmup + steps` optimizer steps through `trl_core::train::train` with
//! `trl_sft::SftMethod` (8 rows of 256 tokens, every token a label) or `trl_dpo::DpoMethod`
//! (8 pairs: 16 sequences of 128 prompt + 128 completion tokens, sigmoid loss, the reference
//! model frozen as `trl dpo` loads it), fp32 on the default device (burn flex on CPU). A step's
//! time is the interval between consecutive `Method::after_step` calls, as TRL's is between
//! `on_step_end` callbacks. The JSON holds every step's time, the median of the measured ones,
//! tokens/s, the parameter counts the FLOP estimate needs, and `peak_rss_bytes` (`VmHWM` of
//! `/proc/self/status`, read at the end).
//!
//! `--device SPEC` (default `cpu`): a `trl --device` value (`cuda`, `cuda:1`, `wgpu`) of a backend
//! this bench was built with (`cargo bench --features cuda|wgpu`); on a GPU each step ends with
//! a device sync, so a step's time includes its queued kernels. `--matmul_peak` also measures
//! the device's fp32 matmul rate (`device_matmul_flops`), the peak the GPU benchmark's MFU uses.
//!
//! `--lora`: the model is frozen and trains fresh LoRA adapters with TRL's `--use_peft`
//! defaults (r 16, alpha 32, dropout 0.05, peft's default targets `q_proj`, `v_proj`), as
//! `trl sft --use_peft` does; the method is reported as `sft-lora` / `dpo-lora`.
//!
//! `--bf16` (CPU only): the products in bf16 on AMX tiles, as `trl sft --bf16 true` trains on
//! such a CPU (`trl_core::precision::set_cpu_bf16_matmuls`); the method gets a `-bf16` suffix.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use serde_json::{Value, json};
use trl_core::lora::{LoraConfig, TargetModules, TaskType, attach_new};
use trl_core::model::{CausalLm, load_causal_lm, load_frozen_causal_lm, read_config};
use trl_core::tokenizer::Tokenizer;
use trl_core::train::args::SaveStrategy;
use trl_core::train::{
    Method, PreparedStep, RunLogger, StepContext, StepMetrics, TrainingArguments, train,
};
use trl_dpo::data::DpoExample;
use trl_dpo::{DpoConfig, DpoMethod};
use trl_sft::data::SftExample;
use trl_sft::{SftConfig, SftMethod};

mod common;

use common::{BoxResult, median, peak_rss_bytes};

const LEARNING_RATE: f64 = 1e-5;

struct Options {
    method: String,
    model: PathBuf,
    /// The token ids: `--data`, else the model's `bench_data.json`.
    data: PathBuf,
    out: PathBuf,
    warmup: usize,
    steps: usize,
    lora: bool,
    /// `--device`: where the model trains.
    device: String,
    /// `--matmul_peak`: measure the device's fp32 matmul rate too.
    matmul_peak: bool,
    /// `--gradient_checkpointing`: recompute each layer in the backward (TRL's default).
    gradient_checkpointing: bool,
    /// `--bf16`: bf16 products on the CPU's AMX tiles.
    bf16: bool,
}

/// `None` when run without `--model` (a plain `cargo bench`): there is nothing to measure.
fn parse_options() -> BoxResult<Option<Options>> {
    let mut method = "sft".to_string();
    let (mut model, mut out, mut data) = (None, None, None);
    let (mut warmup, mut steps) = (3, 10);
    let (mut lora, mut matmul_peak, mut gradient_checkpointing) = (false, false, false);
    let mut device = "cpu".to_string();
    let mut bf16 = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--method" => method = value()?,
            "--model" => model = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--data" => data = Some(PathBuf::from(value()?)),
            "--warmup" => warmup = value()?.parse()?,
            "--steps" => steps = value()?.parse()?,
            "--lora" => lora = true,
            "--device" => device = value()?,
            "--matmul_peak" => matmul_peak = true,
            "--gradient_checkpointing" => gradient_checkpointing = true,
            "--bf16" => bf16 = true,
            _ => {} // cargo bench's own flags (--bench)
        }
    }
    let Some(model) = model else {
        return Ok(None);
    };
    Ok(Some(Options {
        method,
        data: data.unwrap_or_else(|| model.join("bench_data.json")),
        model,
        out: out.unwrap_or_else(|| PathBuf::from("e2e.json")),
        warmup,
        steps,
        lora,
        device,
        matmul_peak,
        gradient_checkpointing,
        bf16,
    }))
}

/// Any method, with the time of each optimizer step's end recorded.
struct Timed<M> {
    inner: M,
    marks: Vec<Instant>,
    /// A GPU device to wait for at each step's end (kernels run asynchronously there).
    sync: Option<Device>,
}

impl<M: Method> Method for Timed<M> {
    type Model = M::Model;
    type Example = M::Example;
    type Batch = M::Batch;

    fn prepare(
        &mut self,
        model: &Self::Model,
        micro_batches: &[Vec<&Self::Example>],
        ctx: &StepContext,
    ) -> trl_core::Result<PreparedStep<Self::Batch>> {
        self.inner.prepare(model, micro_batches, ctx)
    }

    fn items_in(&self, batch: &Self::Batch) -> f64 {
        self.inner.items_in(batch)
    }

    fn loss(
        &self,
        model: &Self::Model,
        batch: &Self::Batch,
        items_in_step: f64,
    ) -> trl_core::Result<(Tensor<1>, StepMetrics)> {
        self.inner.loss(model, batch, items_in_step)
    }

    fn save_model(&self, model: &Self::Model, dir: &Path) -> trl_core::Result<()> {
        self.inner.save_model(model, dir)
    }

    fn load_model(&self, dir: &Path, device: &Device) -> trl_core::Result<Self::Model> {
        self.inner.load_model(dir, device)
    }

    fn after_step(&mut self, model: &Self::Model, step: u64) -> trl_core::Result<()> {
        self.inner.after_step(model, step)?;
        if let Some(device) = &self.sync {
            device.sync().map_err(|e| trl_core::Error::Device {
                message: format!("waiting for the device: {e:?}"),
            })?;
        }
        self.marks.push(Instant::now());
        Ok(())
    }
}

/// Runs `args.max_steps` steps and returns each step's wall time in seconds.
fn time_steps<M: Method>(
    method: M,
    model: M::Model,
    examples: &[M::Example],
    args: &TrainingArguments,
    device: &Device,
    on_gpu: bool,
) -> BoxResult<Vec<f64>> {
    let mut timed = Timed {
        inner: method,
        marks: vec![Instant::now()],
        sync: on_gpu.then(|| device.clone()),
    };
    train(
        &mut timed,
        model,
        examples,
        args,
        device,
        &mut RunLogger::silent(),
    )?;
    let marks = timed.marks;
    Ok(marks
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect())
}

/// The backend of a `--device` value: `cpu`, `cuda` or `wgpu`.
fn device_kind(spec: &str) -> &'static str {
    let spec = spec.trim().to_ascii_lowercase();
    if spec.starts_with("cuda") {
        "cuda"
    } else if spec.starts_with("wgpu") || spec.starts_with("gpu") {
        "wgpu"
    } else {
        "cpu"
    }
}

/// The implementation column of the tables.
fn implementation(spec: &str) -> String {
    match device_kind(spec) {
        "cpu" => "trl-rs (burn 0.22 flex, simd + rayon)".to_string(),
        gpu => format!("trl-rs (burn 0.22 {gpu})"),
    }
}

/// The device's fp32 matmul rate in FLOP/s: ten products of two 4096 x 4096 matrices after
/// two warm-up products, timed from a synced device to a synced device.
fn matmul_flops(device: &Device) -> BoxResult<f64> {
    const N: usize = 4096;
    const REPEATS: usize = 10;
    let sync = || {
        device
            .sync()
            .map_err(|e| format!("waiting for the device: {e:?}"))
    };
    let a = Tensor::<2>::random([N, N], Distribution::Default, device);
    let b = Tensor::<2>::random([N, N], Distribution::Default, device);
    for _ in 0..2 {
        let _ = a.clone().matmul(b.clone());
    }
    sync()?;
    let started = Instant::now();
    let products: Vec<Tensor<2>> = (0..REPEATS).map(|_| a.clone().matmul(b.clone())).collect();
    sync()?;
    let seconds = started.elapsed().as_secs_f64();
    drop(products);
    Ok(2.0 * (N * N * N * REPEATS) as f64 / seconds)
}

fn ids(value: &Value) -> BoxResult<Vec<u32>> {
    value
        .as_array()
        .ok_or("bench_data.json: expected a list of token ids")?
        .iter()
        .map(|id| {
            id.as_u64()
                .map(|id| id as u32)
                .ok_or_else(|| "bench_data.json: a token id is not an integer".into())
        })
        .collect()
}

/// CPU time (user + system, all threads) this process used so far, in seconds, from
/// `/proc/self/stat` (clock ticks of 1/100 s): against the wall time, how many cores the run
/// kept busy.
fn cpu_time_s() -> BoxResult<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after_name = stat.rsplit_once(')').ok_or("malformed /proc/self/stat")?.1;
    // fields 14 (utime) and 15 (stime) of stat(5); `after_name` starts at field 3
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> BoxResult<f64> {
        Ok(fields
            .get(i)
            .ok_or("short /proc/self/stat")?
            .parse::<f64>()?)
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// TRL's `--use_peft` defaults (`ModelConfig`: r 16, alpha 32, dropout 0.05; no
/// `lora_target_modules`, so peft's default targets for Qwen2, `q_proj` and `v_proj`).
fn bench_lora_config(model: &Path) -> LoraConfig {
    LoraConfig {
        r: 16,
        lora_alpha: 32.0,
        lora_dropout: 0.05,
        target_modules: TargetModules::Names(vec!["q_proj".into(), "v_proj".into()]),
        exclude_modules: None,
        layers: Default::default(),
        modules_to_save: Vec::new(),
        use_rslora: false,
        task_type: TaskType::CausalLm,
        base_model_name_or_path: model.display().to_string(),
    }
}

fn main() -> BoxResult<()> {
    let Some(options) = parse_options()? else {
        eprintln!(
            "e2e: nothing to do without --model; run `cargo xtask bench`, which writes the \
             benchmark model and passes it here"
        );
        return Ok(());
    };
    let data: Value = serde_json::from_slice(&std::fs::read(&options.data)?)?;
    let config = read_config(&options.model)?;
    let tokenizer = Tokenizer::from_dir(&options.model)?;
    let plain_device = trl::cli::device::parse_device(&options.device)?;
    let device = plain_device.clone().autodiff();
    let device = if options.gradient_checkpointing {
        device.gradient_checkpointing()
    } else {
        device
    };
    let on_gpu = device_kind(&options.device) != "cpu";
    if options.bf16 {
        if on_gpu || !trl_core::kernels::cpu_bf16_matmuls_supported() {
            return Err("--bf16: bf16 products need the CPU backend on a CPU with AMX-BF16".into());
        }
        trl_core::precision::set_cpu_bf16_matmuls(true);
    }
    let mut model: CausalLm = load_causal_lm(&options.model, &device)?;
    let params = model.num_params();
    if options.lora {
        model = attach_new(model, &bench_lora_config(&options.model), &device)?;
    }
    let output_dir = std::env::temp_dir().join(format!("trl-rs-bench-{}", std::process::id()));
    // One micro-batch per step: every SFT row, or every DPO pair.
    let batch = data[options.method.as_str()]
        .as_array()
        .map_or(0, Vec::len)
        .max(1);
    let args = TrainingArguments {
        output_dir: output_dir.display().to_string(),
        max_steps: (options.warmup + options.steps) as i64,
        per_device_train_batch_size: batch,
        learning_rate: LEARNING_RATE,
        logging_steps: 1.0,
        save_strategy: SaveStrategy::No,
        ..TrainingArguments::default()
    };

    let (step_times, sequences, seq_len) = match options.method.as_str() {
        "sft" => {
            let examples = data["sft"]
                .as_array()
                .ok_or("bench_data.json: no sft rows")?
                .iter()
                .map(|row| {
                    let input_ids = ids(row)?;
                    Ok(SftExample {
                        labels: input_ids.iter().map(|&id| id as i64).collect(),
                        seq_lengths: vec![input_ids.len()],
                        input_ids,
                    })
                })
                .collect::<BoxResult<Vec<_>>>()?;
            let seq_len = examples[0].input_ids.len();
            let method = SftMethod::new(SftConfig::default(), tokenizer)?;
            let times = time_steps(method, model, &examples, &args, &device, on_gpu)?;
            (times, examples.len(), seq_len)
        }
        "dpo" => {
            let examples = data["dpo"]
                .as_array()
                .ok_or("bench_data.json: no dpo pairs")?
                .iter()
                .map(|pair| {
                    Ok(DpoExample {
                        prompt_ids: ids(&pair["prompt_ids"])?,
                        chosen_ids: ids(&pair["chosen_ids"])?,
                        rejected_ids: ids(&pair["rejected_ids"])?,
                        ref_logps: None,
                    })
                })
                .collect::<BoxResult<Vec<_>>>()?;
            let seq_len = examples[0].prompt_ids.len() + examples[0].chosen_ids.len();
            // TRL's default reference: a frozen copy of the starting policy, as `trl dpo` loads
            // it; under LoRA the base with the adapters off (no copy), as `trl dpo --use_peft`.
            let reference = if options.lora {
                trl_core::lora::without_adapters(&model)?
            } else {
                load_frozen_causal_lm(&options.model, &device)?
            };
            let method = DpoMethod::new(DpoConfig::default(), tokenizer, Some(reference))?;
            let times = time_steps(method, model, &examples, &args, &device, on_gpu)?;
            (times, 2 * examples.len(), seq_len)
        }
        other => return Err(format!("--method {other:?}: expected sft or dpo").into()),
    };
    let _ = std::fs::remove_dir_all(&output_dir);

    let measured = &step_times[options.warmup.min(step_times.len())..];
    let median = median(measured).ok_or("no measured steps")?;
    let tokens = (sequences * seq_len) as f64;
    let mut method = options.method.clone();
    if options.lora {
        method.push_str("-lora");
    }
    if options.bf16 {
        method.push_str("-bf16");
    }
    let result = json!({
        "side": "trl-rs",
        "implementation": implementation(&options.device),
        "device": options.device,
        "device_matmul_flops": if options.matmul_peak {
            Some(matmul_flops(&plain_device)?)
        } else {
            None
        },
        "method": method,
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "tokens_per_step": tokens,
        "sequences_per_step": sequences,
        "seq_len": seq_len,
        "warmup_steps": options.warmup,
        "step_times_s": step_times,
        "median_step_s": median,
        "tokens_per_s": tokens / median,
        "peak_rss_bytes": peak_rss_bytes()?,
        "cpu_time_s": cpu_time_s()?,
        "params": params,
        // The input table takes no matmul, unless it is also the (tied) output projection.
        "embedding_params": if config.tie_word_embeddings {
            0
        } else {
            config.vocab_size * config.hidden_size
        },
        "num_layers": config.num_hidden_layers,
        "attention_width": config.num_attention_heads * config.head_dim,
    });
    std::fs::write(&options.out, serde_json::to_vec_pretty(&result)?)?;
    println!(
        "{:<45} {}: {median:.3} s/step, {:.0} tokens/s, peak RSS {:.2} GB",
        implementation(&options.device),
        method,
        tokens / median,
        result["peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1e9
    );
    Ok(())
}
