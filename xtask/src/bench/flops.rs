//! Training FLOPs per step, achieved FLOP/s and MFU, derived from the end-to-end results.

use anyhow::{Context, Result};
use serde_json::{Value, json};

/// What the FLOP estimate needs, from trl-rs's report of the model it trained.
pub(super) struct FlopModel {
    /// Parameters that take part in matmuls: all but the input embedding table.
    matmul_params: f64,
    layers: f64,
    attention_width: f64,
}

pub(super) fn flop_model(e2e: &[Value]) -> Result<FlopModel> {
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
pub(super) fn add_derived(result: &mut Value, m: &FlopModel, peak: f64) {
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
