//! The reference model of the preference methods (DPO, KTO), set up one way for both: the
//! folder of `ref_model` (or the policy's), checked against the policy at start, and
//! `precompute_ref_log_probs` through one on-disk cache keyed by everything that changes the
//! numbers (the reference's files, the examples' token ids, the options that cut or weight
//! them).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use trl_core::model::{DecoderConfig, read_config};
use trl_core::train::ref_cache::{Fingerprint, cached_rows};

/// The reference model's folder: `ref_model` resolved (a local folder or a hub id, at its
/// cached revision), else the policy's own folder (a frozen copy of the start). A
/// `ref_model` whose vocabulary differs from the policy's, or (with `sync_ref_model`, which
/// mixes the two models' weights) whose shapes differ, is an error naming both.
pub fn reference_dir(ref_model: Option<&str>, policy_dir: &Path, sync: bool) -> Result<PathBuf> {
    let Some(id) = ref_model else {
        return Ok(policy_dir.to_path_buf());
    };
    let dir = trl_core::hub::resolve_model(id, None)?;
    let policy = read_config(policy_dir)?;
    let reference = read_config(&dir)?;
    let differences = differences(&policy, &reference, sync);
    if !differences.is_empty() {
        bail!(
            "--ref_model {id} ({}) does not fit the policy {}: {}{}",
            dir.display(),
            policy_dir.display(),
            differences.join(", "),
            if sync {
                " (sync_ref_model mixes the two models' weights, so every shape must match)"
            } else {
                " (the reference scores the policy's token ids, so the vocabularies must match)"
            }
        );
    }
    Ok(dir)
}

/// `"name: policy vs reference"` for each size that must match: the vocabulary always, every
/// weight shape when the weights are mixed.
fn differences(policy: &DecoderConfig, reference: &DecoderConfig, shapes: bool) -> Vec<String> {
    let pair = |name: &'static str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
        (name, format!("{a:?}"), format!("{b:?}"))
    };
    let (p, r) = (policy, reference);
    let mut sizes = vec![pair("vocab_size", &p.vocab_size, &r.vocab_size)];
    if shapes {
        sizes.extend([
            pair("architecture", &p.family, &r.family),
            pair("hidden_size", &p.hidden_size, &r.hidden_size),
            pair(
                "intermediate_size",
                &p.intermediate_size,
                &r.intermediate_size,
            ),
            pair(
                "num_hidden_layers",
                &p.num_hidden_layers,
                &r.num_hidden_layers,
            ),
            pair(
                "num_attention_heads",
                &p.num_attention_heads,
                &r.num_attention_heads,
            ),
            pair(
                "num_key_value_heads",
                &p.num_key_value_heads,
                &r.num_key_value_heads,
            ),
            pair("head_dim", &p.head_dim, &r.head_dim),
            pair(
                "tie_word_embeddings",
                &p.tie_word_embeddings,
                &r.tie_word_embeddings,
            ),
            pair("qkv_bias", &p.qkv_bias, &r.qkv_bias),
            pair("qk_norm", &p.qk_norm, &r.qk_norm),
        ]);
    }
    sizes
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(name, a, b)| format!("{name} {a} (policy) vs {b} (reference)"))
        .collect()
}

/// How a method's examples carry their reference log-probs (two values per example: DPO's
/// chosen/rejected, KTO's completion/KL completion).
pub struct RefSlots<E> {
    /// Mixes the example's token ids into the cache key.
    pub fingerprint: fn(&E, &mut Fingerprint),
    /// The example's values, once computed.
    pub read: fn(&E) -> Option<(f64, f64)>,
    /// Stores values into the example.
    pub write: fn(&mut E, (f64, f64)),
}

/// The cache key of a method's reference log-probs: `tag` (bump its version whenever the
/// computation changes), the reference folder's identity (path, which for a hub model holds
/// the resolved revision, config and weight files), `options` (every option that changes the
/// values: max_length, truncation_mode, ld_alpha, ...) and every example's token ids.
pub fn reference_key<E>(
    tag: &str,
    reference_dir: &Path,
    options: &str,
    examples: &[E],
    slots: &RefSlots<E>,
) -> Fingerprint {
    let mut key = Fingerprint::default();
    key.update(tag.as_bytes());
    key.update_model_dir(reference_dir);
    key.update(&(options.len() as u64).to_le_bytes());
    key.update(options.as_bytes());
    for example in examples {
        (slots.fingerprint)(example, &mut key);
    }
    key
}

/// Fills every example's reference log-probs from the cache, or by running `compute` (which
/// fills them) and caching the result. The key is [`reference_key`].
pub fn cached_reference_logps<E: Clone>(
    tag: &str,
    reference_dir: &Path,
    options: &str,
    examples: &mut [E],
    slots: &RefSlots<E>,
    compute: impl FnOnce(&mut [E]) -> trl_core::Result<()>,
) -> Result<()> {
    let key = reference_key(tag, reference_dir, options, examples, slots);
    let mut computed = examples.to_vec();
    let (rows, hit) = cached_rows(&key, || {
        compute(&mut computed)?;
        Ok(computed
            .iter()
            .map(|e| (slots.read)(e).map_or(vec![], |(a, b)| vec![a, b]))
            .collect())
    })?;
    if rows.len() != examples.len() {
        bail!(
            "the reference log-prob cache entry {} holds {} rows for {} examples; delete it",
            key.hex(),
            rows.len(),
            examples.len()
        );
    }
    for (index, (example, row)) in examples.iter_mut().zip(rows).enumerate() {
        let [a, b] = row[..] else {
            bail!(
                "reference log-probs of example {index} are missing (cache entry {})",
                key.hex()
            );
        };
        (slots.write)(example, (a, b));
    }
    eprintln!(
        "reference log-probs: {}",
        if hit {
            "read from cache"
        } else {
            "computed and cached"
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots() -> RefSlots<Vec<u32>> {
        RefSlots {
            fingerprint: |e, key| key.update_ids(e),
            read: |_| None,
            write: |_, _| {},
        }
    }

    #[test]
    fn the_key_changes_with_each_input() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/tiny-qwen2");
        let other = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/tiny-llama");
        let examples = vec![vec![1, 2, 3]];
        let key = |tag: &str, dir: &Path, options: &str, examples: &[Vec<u32>]| {
            reference_key(tag, dir, options, examples, &slots()).hex()
        };
        let base = key("t", &dir, "[24,\"keep_start\",null]", &examples);
        assert_eq!(base, key("t", &dir, "[24,\"keep_start\",null]", &examples));
        for changed in [
            key("u", &dir, "[24,\"keep_start\",null]", &examples),
            key("t", &other, "[24,\"keep_start\",null]", &examples),
            key("t", &dir, "[128,\"keep_start\",null]", &examples),
            key("t", &dir, "[24,\"keep_end\",null]", &examples),
            key("t", &dir, "[24,\"keep_start\",0.5]", &examples),
            key("t", &dir, "[24,\"keep_start\",null]", &[vec![1, 2, 4]]),
        ] {
            assert_ne!(base, changed);
        }
    }
}
