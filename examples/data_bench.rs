//! Throughput and peak memory of `trl validate` on a large conversational JSONL split (about
//! 1 KB a row: 1,000,000 rows are about 1 GB), and of the tokenized-data cache. Run with
//! `cargo run --release --example data_bench -- --rows 1000000`.
//!
//! The file is generated once into `--dir` (default: the system temp folder) and reused. Peak RSS
//! is `VmHWM` of `/proc/self/status`, reset before each measurement through `clear_refs`; CPU
//! cores used is CPU time over wall time.
//!
//! Steps: format checks alone (`--skip-plain` leaves it out); format checks plus token lengths
//! under the chat template of `fixtures/models/tiny-qwen2`, what `trl validate --tokenizer` does
//! (`--skip-tokens` leaves it out); hashing the file for a cache key; writing and reading
//! `--cache-rows` tokenized rows through the cache, against serde_json for comparison.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde_json::{Value, json};
use trl_core::data::token_cache::{CacheKey, cached_in};
use trl_core::data::{DatasetArgs, Method, validate};
use trl_core::tokenizer::{RenderOptions, Tokenizer};

struct Args {
    rows: usize,
    dir: PathBuf,
    cache_rows: usize,
    skip_plain: bool,
    skip_tokens: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        rows: 1_000_000,
        dir: std::env::temp_dir().join("trl-data-bench"),
        cache_rows: 100_000,
        skip_plain: false,
        skip_tokens: false,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let mut value = || given.next().expect("a value after the flag");
        match flag.as_str() {
            "--rows" => args.rows = value().parse().expect("--rows N"),
            "--dir" => args.dir = PathBuf::from(value()),
            "--cache-rows" => args.cache_rows = value().parse().expect("--cache-rows N"),
            "--skip-plain" => args.skip_plain = true,
            "--skip-tokens" => args.skip_tokens = true,
            other => {
                panic!(
                    "unknown flag {other}: --rows N, --dir PATH, --cache-rows N, --skip-plain, --skip-tokens"
                )
            }
        }
    }
    args
}

/// Deterministic filler text (xorshift over a small vocabulary), about `bytes` long.
fn sentence(state: &mut u64, bytes: usize) -> String {
    const WORDS: [&str; 24] = [
        "the",
        "model",
        "learns",
        "from",
        "data",
        "and",
        "answers",
        "questions",
        "about",
        "capital",
        "cities",
        "rivers",
        "mountains",
        "history",
        "with",
        "short",
        "clear",
        "sentences",
        "every",
        "token",
        "counts",
        "training",
        "reward",
        "policy",
    ];
    let mut text = String::with_capacity(bytes + 16);
    while text.len() < bytes {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(WORDS[(*state % WORDS.len() as u64) as usize]);
    }
    text.push('.');
    text
}

/// Writes `rows` conversational rows (system, user, assistant; about 1 KB each) once.
fn dataset(dir: &Path, rows: usize) -> PathBuf {
    let path = dir.join(format!("messages-{rows}.jsonl"));
    if path.is_file() {
        return path;
    }
    std::fs::create_dir_all(dir).expect("a writable --dir");
    let partial = path.with_extension("partial");
    let mut out = BufWriter::new(File::create(&partial).expect("a writable --dir"));
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for index in 0..rows {
        let row = json!({"messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": format!("Question {index}: {}", sentence(&mut state, 200))},
            {"role": "assistant", "content": sentence(&mut state, 650 + (index % 200))},
        ]});
        serde_json::to_writer(&mut out, &row).expect("write");
        out.write_all(b"\n").expect("write");
    }
    out.flush().expect("write");
    drop(out);
    std::fs::rename(&partial, &path).expect("rename");
    path
}

/// Peak resident memory (`VmHWM`) in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

/// Starts a new peak: `VmHWM` becomes the current RSS (Linux `clear_refs` value 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU time (user + system) of the process in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    // After the command name: state is field 3, utime 14, stime 15 (1-based), in clock ticks.
    let ticks = |index: usize| fields.get(index - 3).and_then(|f| f.parse::<f64>().ok());
    (ticks(14).unwrap_or(0.0) + ticks(15).unwrap_or(0.0)) / 100.0
}

/// Runs `work`, printing wall time, rows/s, MB/s, cores used and peak RSS.
fn measure<T>(name: &str, rows: usize, bytes: u64, work: impl FnOnce() -> T) -> T {
    reset_peak_rss();
    let (cpu, start) = (cpu_seconds(), Instant::now());
    let result = work();
    let (wall, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    println!(
        "{name}: {wall:.1} s, {:.0} rows/s, {:.0} MB/s, {:.2} cores, peak RSS {:.0} MiB",
        rows as f64 / wall,
        bytes as f64 / wall / 1e6,
        cpu / wall,
        peak_rss_mib()
    );
    result
}

fn main() {
    let args = parse_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tokenizer =
        Tokenizer::from_dir(root.join("fixtures/models/tiny-qwen2")).expect("tokenizer");

    let start = Instant::now();
    let path = dataset(&args.dir, args.rows);
    let bytes = std::fs::metadata(&path).expect("the data file").len();
    println!(
        "data: {} ({:.2} GB, {} rows, ready in {:.1} s); {} threads",
        path.display(),
        bytes as f64 / 1e9,
        args.rows,
        start.elapsed().as_secs_f64(),
        rayon::current_num_threads()
    );
    let split = DatasetArgs::new(path.to_string_lossy());

    if !args.skip_plain {
        let report = measure("validate (format checks)", args.rows, bytes, || {
            validate(&split, Method::Sft, None).expect("validate")
        });
        assert!(report.is_valid(), "{report}");
    }
    if !args.skip_tokens {
        let report = measure(
            "validate (checks + token lengths)",
            args.rows,
            bytes,
            || validate(&split, Method::Sft, Some((&tokenizer, Some(1024)))).expect("validate"),
        );
        assert!(report.is_valid(), "{report}");
        println!("  {}", report.to_string().replace('\n', "\n  "));
    }

    let key = measure(
        "cache key (hash of the data file)",
        args.rows,
        bytes,
        || {
            CacheKey::new("bench")
                .data_files(std::slice::from_ref(&path))
                .expect("hash")
                .tokenizer_dir(root.join("fixtures/models/tiny-qwen2"))
                .expect("hash")
                .options("max_length=1024")
        },
    );

    let rows = args.cache_rows.min(args.rows);
    let conversations: Vec<Value> = BufReader::new(File::open(&path).expect("data"))
        .lines()
        .take(rows)
        .map(|line| {
            serde_json::from_str::<Value>(&line.expect("line")).expect("json")["messages"].take()
        })
        .collect();
    let tokenize = || {
        conversations
            .par_iter()
            .map(|messages| {
                tokenizer
                    .apply_chat_template_ids(messages, &RenderOptions::default())
                    .expect("tokenize")
            })
            .collect::<Vec<Vec<u32>>>()
    };
    let cache_root = tempfile::tempdir().expect("temp dir");
    let examples = measure("tokenize (chat template)", rows, 0, tokenize);
    let tokens: usize = examples.iter().map(Vec::len).sum();
    let cache_file = key.path_in::<Vec<u32>>(cache_root.path());
    measure("cache write (binary)", rows, 0, || {
        cached_in(cache_root.path(), &key, || Ok(examples.clone())).expect("cache write")
    });
    let cache_bytes = std::fs::metadata(&cache_file).expect("cache file").len();
    let read_back = measure("cache read (binary)", rows, cache_bytes, || {
        cached_in::<Vec<u32>>(cache_root.path(), &key, || panic!("cache miss")).expect("cache read")
    });
    assert_eq!(read_back, examples);

    let json_file = cache_root.path().join("examples.json");
    measure("write (serde_json, for comparison)", rows, 0, || {
        let mut out = BufWriter::new(File::create(&json_file).expect("json file"));
        serde_json::to_writer(&mut out, &examples).expect("json write");
        out.flush().expect("json write");
    });
    let json_bytes = std::fs::metadata(&json_file).expect("json file").len();
    let from_json: Vec<Vec<u32>> = measure(
        "read (serde_json, for comparison)",
        rows,
        json_bytes,
        || {
            serde_json::from_slice(&std::fs::read(&json_file).expect("json file"))
                .expect("json read")
        },
    );
    assert_eq!(from_json, examples);
    println!(
        "cache of {rows} rows, {tokens} tokens: binary {:.1} MB, serde_json {:.1} MB",
        cache_bytes as f64 / 1e6,
        json_bytes as f64 / 1e6
    );
}
