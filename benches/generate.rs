//! Generation throughput of trl-rs on the benchmark model, one configuration per process (so
//! the peak RSS is that run's). `cargo xtask bench` runs it at batch 1 and at 16 prompts x 4
//! sequences, next to `reference/bench_trl.py generate` (transformers' `generate`):
//!
//! ```text
//! cargo bench --bench generate -- --model DIR --out FILE.json --batch 16 --num_return_sequences 4
//!     [--prompt_len 64] [--max_new_tokens 128] [--warmup 1] [--runs 3]
//! ```
//!
//! Prompts: `--batch` slices of `--prompt_len` tokens of the SFT rows in `bench_data.json`
//! (prompt `i` is row `i % 8` from token `(i / 8) * 128`), as the Python side takes them.
//! Sampling with transformers' defaults (temperature 1, top-k 50), `min_new_tokens =
//! max_new_tokens` so every sequence has the same length, fp32, the default device (flex on
//! CPU). Time: the whole `generate` call (prefill + decoding); tokens/s = generated tokens /
//! median time.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::Device;
use serde_json::{Value, json};
use trl_core::generate::{GenerationOptions, generate};
use trl_core::model::load_causal_lm;

mod common;

use common::{BoxResult, peak_rss_bytes};

struct Options {
    model: PathBuf,
    out: PathBuf,
    batch: usize,
    num_return_sequences: usize,
    prompt_len: usize,
    max_new_tokens: usize,
    warmup: usize,
    runs: usize,
}

/// `None` when run without `--model` (a plain `cargo bench`): there is nothing to measure.
fn parse_options() -> BoxResult<Option<Options>> {
    let names = [
        "batch",
        "num_return_sequences",
        "prompt_len",
        "max_new_tokens",
        "warmup",
        "runs",
    ];
    let mut o = [1usize, 1, 64, 128, 1, 3];
    let Some((model, out)) = common::parse_args(&names, &mut o)? else {
        return Ok(None);
    };
    let [
        batch,
        num_return_sequences,
        prompt_len,
        max_new_tokens,
        warmup,
        runs,
    ] = o;
    Ok(Some(Options {
        model,
        out: out.unwrap_or_else(|| PathBuf::from("generate.json")),
        batch,
        num_return_sequences,
        prompt_len,
        max_new_tokens,
        warmup,
        runs,
    }))
}

fn main() -> BoxResult<()> {
    let Some(o) = parse_options()? else {
        eprintln!("generate: nothing to do without --model; run `cargo xtask bench`");
        return Ok(());
    };
    let data: Value = serde_json::from_slice(&std::fs::read(o.model.join("bench_data.json"))?)?;
    let prompts = common::prompt_ids(&data, o.batch, o.prompt_len)?;
    let device = Device::default();
    let model = load_causal_lm(&o.model, &device)?;
    let options = GenerationOptions {
        max_new_tokens: o.max_new_tokens,
        min_new_tokens: o.max_new_tokens,
        num_return_sequences: o.num_return_sequences,
        eos_token_ids: model.config().eos_token_ids.clone(),
        pad_token_id: model.config().pad_token_id.unwrap_or(0),
        ..GenerationOptions::default()
    };
    let mut times = Vec::new();
    for run in 0..o.warmup + o.runs {
        let started = Instant::now();
        let mut seeded = options.clone();
        seeded.seed = run as u64;
        let out = generate(&model, &prompts, &seeded, None, &mut |_, _| {})?;
        times.push(started.elapsed().as_secs_f64());
        let tokens: usize = out.iter().map(|c| c.token_ids.len()).sum();
        assert_eq!(tokens, o.batch * o.num_return_sequences * o.max_new_tokens);
    }
    let mut measured = times[o.warmup..].to_vec();
    measured.sort_by(f64::total_cmp);
    let median = measured[measured.len() / 2];
    let generated = (o.batch * o.num_return_sequences * o.max_new_tokens) as f64;
    let result = json!({
        "side": "trl-rs",
        "implementation": "trl-rs (burn 0.22 flex, KV cache)",
        "batch": o.batch,
        "num_return_sequences": o.num_return_sequences,
        "prompt_len": o.prompt_len,
        "max_new_tokens": o.max_new_tokens,
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "run_times_s": times,
        "median_s": median,
        "tokens_per_s": generated / median,
        "peak_rss_bytes": peak_rss_bytes()?,
    });
    std::fs::write(&o.out, serde_json::to_vec_pretty(&result)?)?;
    println!(
        "trl-rs generate {}x{}: {median:.3} s, {:.0} tokens/s, peak RSS {:.2} GB",
        o.batch,
        o.num_return_sequences,
        generated / median,
        result["peak_rss_bytes"].as_f64().unwrap_or(0.0) / 1e9
    );
    Ok(())
}
