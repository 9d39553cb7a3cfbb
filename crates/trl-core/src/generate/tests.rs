//! Generation against transformers (reference/generate_reference.py) and the KV cache against
//! the full forward.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde_json::Value;

use super::*;
use crate::model::{KvCache, TokenBatch, load_causal_lm};

/// Every causal-LM family the fixtures cover (the sharded and bf16 copies share tiny-llama's
/// architecture; they are in the greedy test).
const FAMILIES: [&str; 6] = [
    "tiny-llama",
    "tiny-llama-tied-llama3rope",
    "tiny-llama-linear-rope",
    "tiny-mistral",
    "tiny-qwen2",
    "tiny-qwen3",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

fn model(name: &str) -> CausalLm {
    load_causal_lm(&fixtures().join("models").join(name), &Device::default()).unwrap()
}

fn to_vec(t: burn::tensor::Tensor<3>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// Prefill of a left-padded batch, then one token per step: the logits of every new position
/// equal the full forward's at that position.
#[test]
fn kv_cache_decoding_equals_the_full_forward_at_every_position() {
    let rows: [Vec<u32>; 2] = [
        vec![11, 250, 37, 90, 14, 200, 3, 77, 5, 61, 120],
        vec![8, 300, 45, 19, 260, 9, 33, 100, 2, 7, 150, 66, 91],
    ];
    let pad = [4usize, 0]; // row 0 is left-padded to row 1's length
    let (prompt, total) = (6usize, 13usize);
    let input_ids: Vec<Vec<u32>> = rows
        .iter()
        .zip(pad)
        .map(|(r, p)| [vec![0; p], r.clone()].concat()[..total].to_vec())
        .collect();
    let mask: Vec<Vec<i64>> = pad
        .iter()
        .map(|&p| (0..total).map(|i| (i >= p) as i64).collect())
        .collect();
    for family in FAMILIES {
        let lm = model(family);
        let vocab = lm.config().vocab_size;
        let full = to_vec(lm.forward(&TokenBatch::new(input_ids.clone(), mask.clone())));
        let mut cache = KvCache::new(lm.config(), 2, total, &lm.device());
        let slice = |m: &Vec<Vec<u32>>, a: usize, b: usize| {
            m.iter().map(|r| r[a..b].to_vec()).collect::<Vec<_>>()
        };
        let slice_mask =
            |a: usize, b: usize| mask.iter().map(|r| r[a..b].to_vec()).collect::<Vec<_>>();
        let mut worst = 0f32;
        let mut compare = |logits: Vec<f32>, start: usize, new: usize| {
            for b in 0..2 {
                for s in 0..new {
                    if mask[b][start + s] == 0 {
                        continue;
                    }
                    let ours = &logits[(b * new + s) * vocab..][..vocab];
                    let want = &full[(b * total + start + s) * vocab..][..vocab];
                    for (o, w) in ours.iter().zip(want) {
                        worst = worst.max((o - w).abs());
                    }
                }
            }
        };
        let prefill = lm.forward_cached(
            &slice(&input_ids, 0, prompt),
            &slice_mask(0, prompt),
            &mut cache,
        );
        compare(to_vec(prefill), 0, prompt);
        for t in prompt..total {
            let step = lm.forward_cached(
                &slice(&input_ids, t, t + 1),
                &slice_mask(t, t + 1),
                &mut cache,
            );
            compare(to_vec(step), t, 1);
        }
        assert!(worst < 1e-4, "{family}: max |cached - full| logit {worst}");
    }
}

/// Greedy ids equal transformers' `generate(do_sample=False)` on every causal fixture model,
/// for a left-padded batch (where one row may stop early at EOS) and a single prompt.
#[test]
fn greedy_generation_equals_transformers() {
    let expected = read_json(&fixtures().join("expected/generate/greedy.json"));
    let max_new_tokens = expected["max_new_tokens"].as_u64().unwrap() as usize;
    for (name, case) in expected["models"].as_object().unwrap() {
        let lm = model(name);
        let options = GenerationOptions {
            max_new_tokens,
            do_sample: false,
            eos_token_ids: ids(&case["eos_token_ids"]),
            pad_token_id: case["pad_token_id"].as_u64().unwrap() as u32,
            ..GenerationOptions::default()
        };
        for batch in case["batches"].as_array().unwrap() {
            let batch = batch.as_array().unwrap();
            let prompts: Vec<Vec<u32>> = batch.iter().map(|c| ids(&c["prompt"])).collect();
            let got = generate(&lm, &prompts, &options, None, &mut |_, _| {}).unwrap();
            for (completion, want) in got.iter().zip(batch) {
                assert_eq!(completion.token_ids, ids(&want["completion_ids"]), "{name}");
            }
        }
    }
}

fn sampled(lm: &CausalLm, seed: u64) -> Vec<Vec<u32>> {
    let options = GenerationOptions {
        max_new_tokens: 10,
        min_new_tokens: 10,
        seed,
        top_k: 0,
        num_return_sequences: 2,
        eos_token_ids: vec![383],
        pad_token_id: 381,
        ..GenerationOptions::default()
    };
    let prompts = vec![vec![5, 17, 200], vec![40, 2]];
    let out = generate(lm, &prompts, &options, None, &mut |_, _| {}).unwrap();
    assert_eq!(out.len(), 4);
    assert_eq!(
        out.iter().map(|c| c.prompt_index).collect::<Vec<_>>(),
        [0, 0, 1, 1]
    );
    out.into_iter().map(|c| c.token_ids).collect()
}

#[test]
fn sampling_is_reproducible_with_a_seed_and_differs_across_seeds() {
    let lm = model("tiny-qwen2");
    let first = sampled(&lm, 1);
    assert_eq!(first, sampled(&lm, 1));
    assert_ne!(first, sampled(&lm, 2));
    assert!(
        first.iter().all(|c| c.len() == 10),
        "min_new_tokens forces the length"
    );
    assert_ne!(
        first[0], first[1],
        "two sequences of one prompt draw differently"
    );
}

/// A user stop token ends a sequence where greedy decoding produces it; the streamed tokens
/// are the returned ones.
#[test]
fn a_stop_token_ends_the_sequence_and_streaming_sees_every_token() {
    let lm = model("tiny-llama");
    let prompts = vec![vec![5u32, 17, 200, 31]];
    let mut options = GenerationOptions {
        max_new_tokens: 8,
        do_sample: false,
        pad_token_id: 381,
        ..GenerationOptions::default()
    };
    let full = generate(&lm, &prompts, &options, None, &mut |_, _| {}).unwrap();
    assert_eq!(full[0].finish_reason, FinishReason::Length);
    let stop = full[0].token_ids[3];
    let first_stop = full[0].token_ids.iter().position(|&t| t == stop).unwrap();
    options.eos_token_ids = vec![stop];
    let mut streamed = Vec::new();
    let cut = generate(&lm, &prompts, &options, None, &mut |_, t| streamed.push(t)).unwrap();
    assert_eq!(cut[0].token_ids, full[0].token_ids[..=first_stop]);
    assert_eq!(cut[0].finish_reason, FinishReason::Eos);
    assert_eq!(streamed, cut[0].token_ids);
}

fn rows(value: &Value) -> Vec<Vec<f32>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().map_or(f32::NEG_INFINITY, |x| x as f32))
                .collect()
        })
        .collect()
}

fn assert_rows_equal(case: &str, got: &[Vec<f32>], want: &[Vec<f32>]) {
    for (r, (g, w)) in got.iter().zip(want).enumerate() {
        for (v, (a, b)) in g.iter().zip(w).enumerate() {
            let same =
                (a.is_infinite() && b.is_infinite()) || (a - b).abs() <= 1e-5 * b.abs().max(1.0);
            assert!(
                same,
                "{case}: row {r} token {v}: ours {a}, transformers {b}"
            );
        }
    }
}

/// Each processor, and the whole sampling pipeline in transformers' order, equal
/// transformers' on recorded rows.
#[test]
fn logits_processors_equal_transformers() {
    let expected = read_json(&fixtures().join("expected/generate/processors.json"));
    let scores = rows(&expected["scores"]);
    let input_ids: Vec<Vec<u32>> = expected["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids)
        .collect();
    let generated = input_ids[0].len() - expected["prompt_length"].as_u64().unwrap() as usize;
    let eos = ids(&expected["eos_token_ids"]);
    let apply = |f: &dyn Fn(&mut [f32], &[u32])| -> Vec<Vec<f32>> {
        scores
            .iter()
            .zip(&input_ids)
            .map(|(row, previous)| {
                let mut row = row.clone();
                f(&mut row, previous);
                row
            })
            .collect()
    };
    let pipeline = GenerationOptions {
        do_sample: true,
        temperature: 0.7,
        top_k: 20,
        top_p: 0.9,
        min_p: Some(0.05),
        repetition_penalty: 1.2,
        min_new_tokens: 5,
        eos_token_ids: eos.clone(),
        ..GenerationOptions::default()
    };
    let cases: Vec<(&str, Box<dyn Fn(&mut [f32], &[u32]) + '_>)> = vec![
        ("top_p_0.9", Box::new(|r, _| processors::top_p(r, 0.9))),
        ("top_p_0.5", Box::new(|r, _| processors::top_p(r, 0.5))),
        ("top_k_10", Box::new(|r, _| processors::top_k(r, 10))),
        ("top_k_1", Box::new(|r, _| processors::top_k(r, 1))),
        ("min_p_0.1", Box::new(|r, _| processors::min_p(r, 0.1))),
        (
            "repetition_penalty_1.3",
            Box::new(|r, p| processors::repetition_penalty(r, p, 1.3)),
        ),
        (
            "temperature_0.7",
            Box::new(|r, _| processors::temperature(r, 0.7)),
        ),
        (
            "min_new_tokens_5",
            Box::new(|r, _| {
                if generated < 5 {
                    processors::suppress_eos(r, &eos)
                }
            }),
        ),
        (
            "min_new_tokens_3",
            Box::new(|r, _| {
                if generated < 3 {
                    processors::suppress_eos(r, &eos)
                }
            }),
        ),
        (
            "pipeline",
            Box::new(|r, p| processors::process_row(r, p, generated, &pipeline)),
        ),
    ];
    for (name, processor) in cases {
        let want = rows(&expected["outputs"][name]);
        assert_rows_equal(name, &apply(processor.as_ref()), &want);
    }
}

/// Identical prompt rows are prefilled once and copied into every row's cache: each sequence
/// draws exactly what it draws when no other row repeats its prompt.
#[test]
fn repeated_prompts_draw_what_they_draw_without_repeats() {
    let lm = model("tiny-qwen2");
    let options = GenerationOptions {
        max_new_tokens: 10,
        min_new_tokens: 10,
        seed: 3,
        top_k: 0,
        eos_token_ids: vec![383],
        pad_token_id: 381,
        ..GenerationOptions::default()
    };
    let run = |prompts: &[&[u32]]| -> Vec<Vec<u32>> {
        let prompts: Vec<Vec<u32>> = prompts.iter().map(|p| p.to_vec()).collect();
        let out = generate(&lm, &prompts, &options, None, &mut |_, _| {}).unwrap();
        out.into_iter().map(|c| c.token_ids).collect()
    };
    let (p, q, r): (&[u32], &[u32], &[u32]) = (&[5, 17, 200], &[40, 2], &[9, 300, 31]);
    let repeated = run(&[p, p, q]);
    let p_first = run(&[p, r, q]);
    let p_second = run(&[r, p, q]);
    assert_eq!(repeated[0], p_first[0]);
    assert_eq!(repeated[1], p_second[1]);
    assert_eq!(repeated[2], p_first[2]);
    assert_ne!(
        repeated[0], repeated[1],
        "each sequence keeps its own stream"
    );
}
