//! `precompute_ref_log_probs` through the on-disk cache, for any preference method: keyed by
//! every example's token ids and the reference model's weights.

use std::path::Path;

use anyhow::Result;
use trl_core::train::ref_cache::{Fingerprint, cached_rows};

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

/// Fills every example's reference log-probs from the cache, or by running `compute` (which
/// fills them) and caching the result.
pub fn cached_reference_logps<E: Clone>(
    tag: &str,
    reference_dir: &Path,
    examples: &mut [E],
    slots: &RefSlots<E>,
    compute: impl FnOnce(&mut [E]) -> trl_core::Result<()>,
) -> Result<()> {
    let mut key = Fingerprint::default();
    key.update(tag.as_bytes());
    key.update_model_dir(reference_dir);
    for example in examples.iter() {
        (slots.fingerprint)(example, &mut key);
    }
    let mut computed = examples.to_vec();
    let (rows, hit) = cached_rows(&key, || {
        compute(&mut computed)?;
        Ok(computed
            .iter()
            .map(|e| (slots.read)(e).map_or(vec![], |(a, b)| vec![a, b]))
            .collect())
    })?;
    for (example, row) in examples.iter_mut().zip(rows) {
        if let [a, b] = row[..] {
            (slots.write)(example, (a, b));
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
