//! One GRPO step of trl-rs (generation + scoring + update) on the benchmark model, in its own
//! process (so the peak RSS is this run's). `cargo xtask bench --compare trl` runs it next to
//! `reference/bench_trl.py grpo` (TRL's `GRPOTrainer`) with the same sizes:
//!
//! ```text
//! cargo bench --bench grpo -- --model DIR --out FILE.json [--prompts 16] [--num_generations 4]
//!     [--prompt_len 64] [--max_completion_length 128] [--gradient_accumulation_steps 4]
//!     [--warmup 2] [--steps 5]
//! ```
//!
//! Prompts: `--prompts` slices of `--prompt_len` tokens of the SFT rows in `bench_data.json`
//! (prompt `i` is row `i % 8` from token `(i / 8) * 128`, as `benches/generate.rs` takes them).
//! One optimizer step = one generation batch of `prompts x num_generations` completions,
//! scored by an in-process reward (the share of even token ids), then
//! `gradient_accumulation_steps` micro-batches of `prompts x num_generations /
//! gradient_accumulation_steps` rows (TRL's `steps_per_generation` defaults to the
//! accumulation steps, so every optimizer step generates once). Sampling with GRPOConfig's
//! defaults (temperature 1, top-k 0, top-p 1) and `min_new_tokens = max_completion_length`,
//! so every completion has the full length on both sides. GRPOConfig's other defaults
//! (dapo loss, beta 0, learning rate 1e-6), fp32, the default device (flex on CPU).
//!
//! A step's time is the interval between consecutive `Method::after_step` calls (TRL's:
//! between `on_step_end` callbacks); the generation time is the `CompletionSource::complete`
//! call around the policy sampler (TRL's: `_generate_single_turn`); the rollout time is the
//! `Method::prepare` call (generation, decoding, scoring, advantages; TRL's:
//! `_generate_and_score_completions`), the rest of the step is the update.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::tensor::{Device, Tensor};
use serde_json::{Map, Value, json};
use trl_core::generate::GenerationOptions;
use trl_core::model::{CausalLm, load_causal_lm};
use trl_core::tokenizer::Tokenizer;
use trl_core::train::args::SaveStrategy;
use trl_core::train::{
    Method, PreparedStep, RunLogger, Sampler, StepContext, StepMetrics, TrainingArguments, train,
};
use trl_grpo::data::PromptExample;
use trl_grpo::rewards::{RewardFunction, RewardInput};
use trl_grpo::rollout::{CompletionSource, PolicySampler, RolloutBatch};
use trl_grpo::{GrpoConfig, GrpoMethod, GrpoParts, Variant};

mod common;

use common::{BoxResult, median, peak_rss_bytes};

/// GRPOConfig's default learning rate.
const LEARNING_RATE: f64 = 1e-6;

struct Options {
    model: PathBuf,
    out: PathBuf,
    prompts: usize,
    num_generations: usize,
    prompt_len: usize,
    max_completion_length: usize,
    gradient_accumulation_steps: usize,
    warmup: usize,
    steps: usize,
}

/// `None` when run without `--model` (a plain `cargo bench`): there is nothing to measure.
fn parse_options() -> BoxResult<Option<Options>> {
    let names = [
        "prompts",
        "num_generations",
        "prompt_len",
        "max_completion_length",
        "gradient_accumulation_steps",
        "warmup",
        "steps",
    ];
    let mut o = [16usize, 4, 64, 128, 4, 2, 5];
    let Some((model, out)) = common::parse_args(&names, &mut o)? else {
        return Ok(None);
    };
    let [
        prompts,
        num_generations,
        prompt_len,
        max_completion_length,
        accumulation,
        warmup,
        steps,
    ] = o;
    if (prompts * num_generations) % accumulation.max(1) != 0 || steps == 0 {
        return Err(format!(
            "--prompts {prompts} x --num_generations {num_generations} must split into \
             --gradient_accumulation_steps {accumulation} micro-batches, and --steps must be > 0"
        )
        .into());
    }
    Ok(Some(Options {
        model,
        out: out.unwrap_or_else(|| PathBuf::from("grpo.json")),
        prompts,
        num_generations,
        prompt_len,
        max_completion_length,
        gradient_accumulation_steps: accumulation.max(1),
        warmup,
        steps,
    }))
}

/// The benchmark prompts (see the module doc), named `p0`, `p1`, ... as TRL's side names them.
fn prompts(data: &Value, count: usize, prompt_len: usize) -> BoxResult<Vec<PromptExample>> {
    Ok(common::prompt_ids(data, count, prompt_len)?
        .into_iter()
        .enumerate()
        .map(|(i, prompt_ids)| PromptExample {
            prompt: Value::String(format!("p{i}")),
            prompt_ids,
            columns: Map::new(),
        })
        .collect())
}

/// The reward both sides compute in-process: the share of even token ids in a completion.
struct EvenShare;

impl RewardFunction for EvenShare {
    fn name(&self) -> &str {
        "even_share"
    }

    fn score(&mut self, batch: &[RewardInput]) -> trl_grpo::rewards::Result<Vec<Option<f64>>> {
        Ok(batch
            .iter()
            .map(|input| {
                let ids = &input.completion_ids;
                let even = ids.iter().filter(|&&t| t % 2 == 0).count();
                Some(even as f64 / ids.len().max(1) as f64)
            })
            .collect())
    }
}

/// What the timed sampler saw: each generation's seconds and its completions' lengths.
#[derive(Default)]
struct GenerationLog {
    seconds: Vec<f64>,
    lengths: Vec<usize>,
}

/// The policy sampler with a stopwatch around each generation batch.
struct TimedSampler {
    inner: PolicySampler,
    log: Arc<Mutex<GenerationLog>>,
}

impl CompletionSource for TimedSampler {
    fn complete(
        &mut self,
        model: &CausalLm,
        prompts: &[Vec<u32>],
        generation: u64,
        first_row: u64,
    ) -> trl_core::Result<Vec<Vec<u32>>> {
        let started = Instant::now();
        let completions = self.inner.complete(model, prompts, generation, first_row)?;
        let mut log = self.log.lock().expect("the generation log is not poisoned");
        log.seconds.push(started.elapsed().as_secs_f64());
        log.lengths.extend(completions.iter().map(Vec::len));
        Ok(completions)
    }

    fn order(&mut self, rows: usize, generation: u64, seed: u64) -> Vec<usize> {
        self.inner.order(rows, generation, seed)
    }
}

/// GRPO with the time of each optimizer step's end and of each `prepare` (generation,
/// decoding, scoring, advantages: TRL's `_generate_and_score_completions`) recorded;
/// everything else forwarded.
struct Timed {
    inner: GrpoMethod,
    marks: Vec<Instant>,
    prepare_s: Vec<f64>,
}

impl Method for Timed {
    type Model = CausalLm;
    type Example = PromptExample;
    type Batch = RolloutBatch;

    fn sampler(&self, args: &TrainingArguments) -> Sampler {
        self.inner.sampler(args)
    }

    fn loader_batch_size(&self, args: &TrainingArguments) -> usize {
        self.inner.loader_batch_size(args)
    }

    fn prepare(
        &mut self,
        model: &CausalLm,
        micro_batches: &[Vec<&PromptExample>],
        ctx: &StepContext,
    ) -> trl_core::Result<PreparedStep<RolloutBatch>> {
        let started = Instant::now();
        let prepared = self.inner.prepare(model, micro_batches, ctx);
        self.prepare_s.push(started.elapsed().as_secs_f64());
        prepared
    }

    fn items_in(&self, batch: &RolloutBatch) -> f64 {
        self.inner.items_in(batch)
    }

    fn loss(
        &self,
        model: &CausalLm,
        batch: &RolloutBatch,
        items_in_step: f64,
    ) -> trl_core::Result<(Tensor<1>, StepMetrics)> {
        self.inner.loss(model, batch, items_in_step)
    }

    fn after_step(&mut self, model: &CausalLm, step: u64) -> trl_core::Result<()> {
        self.inner.after_step(model, step)?;
        self.marks.push(Instant::now());
        Ok(())
    }

    fn save_model(&self, model: &CausalLm, dir: &Path) -> trl_core::Result<()> {
        self.inner.save_model(model, dir)
    }

    fn load_model(&self, dir: &Path, device: &Device) -> trl_core::Result<CausalLm> {
        self.inner.load_model(dir, device)
    }
}

/// Seconds of each step, of its rollout (`prepare`) and of its generation.
struct Timings {
    steps: Vec<f64>,
    rollouts: Vec<f64>,
    generations: Vec<f64>,
}

/// Runs `warmup + steps` GRPO steps; returns their timings and every completion's length.
fn run_steps(o: &Options, examples: &[PromptExample]) -> BoxResult<(Timings, Vec<usize>)> {
    let tokenizer = Tokenizer::from_dir(&o.model)?;
    let device = Device::default().autodiff();
    let model = load_causal_lm(&o.model, &device)?;
    let eos_token_ids = model.config().eos_token_ids.clone();
    let pad_token_id = model.config().pad_token_id.unwrap_or(0);
    let output_dir = std::env::temp_dir().join(format!("trl-rs-bench-grpo-{}", std::process::id()));
    let args = TrainingArguments {
        output_dir: output_dir.display().to_string(),
        max_steps: (o.warmup + o.steps) as i64,
        per_device_train_batch_size: o.prompts * o.num_generations / o.gradient_accumulation_steps,
        gradient_accumulation_steps: o.gradient_accumulation_steps,
        learning_rate: LEARNING_RATE,
        logging_steps: 1.0,
        save_strategy: SaveStrategy::No,
        ..TrainingArguments::default()
    };
    let config = GrpoConfig {
        num_generations: o.num_generations,
        max_completion_length: o.max_completion_length,
        ..GrpoConfig::default()
    };
    let log = Arc::new(Mutex::new(GenerationLog::default()));
    let sampler = PolicySampler {
        options: GenerationOptions {
            max_new_tokens: o.max_completion_length,
            min_new_tokens: o.max_completion_length,
            temperature: config.temperature as f32,
            top_k: config.top_k,
            top_p: config.top_p as f32,
            seed: args.seed,
            eos_token_ids: eos_token_ids.clone(),
            pad_token_id,
            ..GenerationOptions::default()
        },
    };
    let parts = GrpoParts {
        tokenizer,
        pad_token_id,
        eos_token_ids,
        reference: None,
        rewards: vec![Box::new(EvenShare)],
        source: Box::new(TimedSampler {
            inner: sampler,
            log: Arc::clone(&log),
        }),
        variant: Variant::Grpo,
    };
    let mut timed = Timed {
        inner: GrpoMethod::new(config, &args, parts)?,
        marks: vec![Instant::now()],
        prepare_s: Vec::new(),
    };
    train(
        &mut timed,
        model,
        examples,
        &args,
        &device,
        &mut RunLogger::silent(),
    )?;
    let _ = std::fs::remove_dir_all(&output_dir);
    let steps = timed
        .marks
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let rollouts = std::mem::take(&mut timed.prepare_s);
    drop(timed);
    let log = Arc::try_unwrap(log)
        .map_err(|_| "the generation log is still shared")?
        .into_inner()
        .map_err(|_| "the generation log is poisoned")?;
    let timings = Timings {
        steps,
        rollouts,
        generations: log.seconds,
    };
    Ok((timings, log.lengths))
}

fn main() -> BoxResult<()> {
    let Some(o) = parse_options()? else {
        eprintln!("grpo: nothing to do without --model; run `cargo xtask bench`");
        return Ok(());
    };
    let data: Value = serde_json::from_slice(&std::fs::read(o.model.join("bench_data.json"))?)?;
    let examples = prompts(&data, o.prompts, o.prompt_len)?;
    let (timings, lengths) = run_steps(&o, &examples)?;
    let total = o.warmup + o.steps;
    let counts = [
        timings.steps.len(),
        timings.rollouts.len(),
        timings.generations.len(),
    ];
    if counts != [total; 3] {
        return Err(format!(
            "expected {total} steps with one rollout and generation each, got {counts:?}"
        )
        .into());
    }
    if let Some(short) = lengths.iter().find(|&&l| l != o.max_completion_length) {
        return Err(format!(
            "a completion has {short} tokens, not {}",
            o.max_completion_length
        )
        .into());
    }
    let result = summary(&o, &timings)?;
    std::fs::write(&o.out, serde_json::to_vec_pretty(&result)?)?;
    println!(
        "trl-rs GRPO {}x{}: {:.3} s/step, generation {:.0}% of the step, peak RSS {:.2} GB",
        o.prompts,
        o.num_generations,
        result["median_step_s"].as_f64().unwrap_or(f64::NAN),
        100.0 * result["generation_share"].as_f64().unwrap_or(f64::NAN),
        result["peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1e9
    );
    Ok(())
}

/// The result JSON: every step's, rollout's and generation's seconds, medians of the measured
/// steps, the generation share (generation seconds / step seconds summed over the measured
/// steps).
fn summary(o: &Options, t: &Timings) -> BoxResult<Value> {
    let measured = &t.steps[o.warmup..];
    let (measured_rollout, measured_gen) = (&t.rollouts[o.warmup..], &t.generations[o.warmup..]);
    let share = measured_gen.iter().sum::<f64>() / measured.iter().sum::<f64>();
    Ok(json!({
        "side": "trl-rs",
        "implementation": "trl-rs (burn 0.22 flex, KV-cache generation)",
        "prompts": o.prompts,
        "num_generations": o.num_generations,
        "prompt_len": o.prompt_len,
        "max_completion_length": o.max_completion_length,
        "per_device_train_batch_size": o.prompts * o.num_generations / o.gradient_accumulation_steps,
        "gradient_accumulation_steps": o.gradient_accumulation_steps,
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "warmup_steps": o.warmup,
        "step_times_s": t.steps,
        "rollout_times_s": t.rollouts,
        "generation_times_s": t.generations,
        "median_step_s": median(measured).ok_or("no measured steps")?,
        "median_rollout_s": median(measured_rollout).ok_or("no measured steps")?,
        "median_generation_s": median(measured_gen).ok_or("no measured steps")?,
        "generation_share": share,
        "peak_rss_bytes": peak_rss_bytes()?,
    }))
}
