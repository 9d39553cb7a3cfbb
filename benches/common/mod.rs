//! What the end-to-end, generation and GRPO benchmark binaries share: the `trl` binary's
//! allocator (so peak RSS is what a user sees), argument parsing, the benchmark prompts from
//! `bench_data.json`, peak RSS and the median.
//!
//! Cargo compiles this folder module into each benchmark that says `mod common;`; each uses
//! only some of the helpers, hence `allow(dead_code)`.
#![allow(dead_code)]

use std::error::Error;
use std::path::PathBuf;

use serde_json::Value;

/// The `trl` binary's allocator (src/main.rs), so peak RSS is what a user sees.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub type BoxResult<T> = Result<T, Box<dyn Error>>;

/// `--model DIR`, `--out FILE` and `--<names[i]> N` into `values[i]` (defaults in place);
/// cargo bench's own flags are skipped. `None` without `--model` (a plain `cargo bench`:
/// there is nothing to measure).
pub fn parse_args(
    names: &[&str],
    values: &mut [usize],
) -> BoxResult<Option<(PathBuf, Option<PathBuf>)>> {
    let (mut model, mut out) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--model" => model = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            flag => {
                let slot = flag
                    .strip_prefix("--")
                    .and_then(|name| names.iter().position(|n| *n == name));
                if let Some(slot) = slot {
                    values[slot] = value()?.parse()?;
                }
            }
        }
    }
    Ok(model.map(|model| (model, out)))
}

/// `count` prompts of `prompt_len` tokens from the SFT rows of `bench_data.json`: prompt `i`
/// is row `i % rows` from token `(i / rows) * 128`, as the Python side takes them.
pub fn prompt_ids(data: &Value, count: usize, prompt_len: usize) -> BoxResult<Vec<Vec<u32>>> {
    let rows = data["sft"]
        .as_array()
        .ok_or("bench_data.json: no sft rows")?;
    (0..count)
        .map(|i| {
            let row = rows[i % rows.len()]
                .as_array()
                .ok_or("bench_data.json: an sft row is not a list")?;
            let start = (i / rows.len()) * 128;
            row.get(start..start + prompt_len)
                .ok_or("bench_data.json: rows too short for the prompts")?
                .iter()
                .map(|id| Ok(id.as_u64().ok_or("bench_data.json: bad id")? as u32))
                .collect()
        })
        .collect()
}

/// Peak resident set size of this process (`VmHWM`), in bytes.
pub fn peak_rss_bytes() -> BoxResult<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or("no VmHWM in /proc/self/status")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or("malformed VmHWM line")?
        .parse()?;
    Ok(kib * 1024)
}

/// The median (the mean of the middle two for an even count); `None` for no values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}
