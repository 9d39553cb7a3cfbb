//! `precompute_ref_log_probs` through the on-disk cache: keyed by every example's token ids
//! and the reference model's weights.

use std::path::Path;

use anyhow::Result;
use trl_core::train::ref_cache::{Fingerprint, cached_rows};
use trl_dpo::data::DpoExample;

/// Fills `ref_logps` of every example from the cache, or by running `compute` and caching.
pub fn cached_reference_logps(
    reference_dir: &str,
    examples: &mut [DpoExample],
    compute: impl FnOnce(&mut [DpoExample]) -> trl_core::Result<()>,
) -> Result<()> {
    let mut key = Fingerprint::default();
    key.update(b"dpo-ref-logps-v1");
    key.update_model_dir(Path::new(reference_dir));
    for example in examples.iter() {
        key.update_ids(&example.prompt_ids);
        key.update_ids(&example.chosen_ids);
        key.update_ids(&example.rejected_ids);
    }
    let mut computed = examples.to_vec();
    let (rows, hit) = cached_rows(&key, || {
        compute(&mut computed)?;
        Ok(computed
            .iter()
            .map(|e| e.ref_logps.map_or(vec![], |(c, r)| vec![c, r]))
            .collect())
    })?;
    for (example, row) in examples.iter_mut().zip(rows) {
        if let [chosen, rejected] = row[..] {
            example.ref_logps = Some((chosen, rejected));
        }
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
