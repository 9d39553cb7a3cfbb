//! Mini-batch orders recorded from another trainer, for replays: TRL 1.12 shuffles each PPO
//! epoch with the global numpy RNG (`np.random.permutation(local_batch_size)`), which a Rust
//! run cannot draw, so a replay takes the permutations TRL drew, over TRL's row order, and
//! maps them onto ours by the rows' queries.

use trl_core::{Error, Result};

/// One rollout batch as another trainer ordered it.
pub struct RecordedBatch {
    /// Its queries, in its row order.
    pub queries: Vec<Vec<u32>>,
    /// Its permutation of those rows for every PPO epoch.
    pub permutations: Vec<Vec<usize>>,
}

/// Recorded mini-batch orders, one entry per rollout batch.
pub struct RecordedOrders {
    pub batches: Vec<RecordedBatch>,
}

impl RecordedOrders {
    /// Our row indices in the order the recorded permutation of `epoch` visits the rows of
    /// rollout batch `step`; `queries` are our rows' queries.
    pub fn order(&self, step: u64, epoch: usize, queries: &[Vec<u32>]) -> Result<Vec<usize>> {
        let error = |message: String| Error::Config {
            path: "ppo".into(),
            message,
        };
        let recorded = self
            .batches
            .get(step as usize)
            .ok_or_else(|| error(format!("no recorded order for rollout batch {step}")))?;
        let (theirs, perm) = (&recorded.queries, recorded.permutations.get(epoch));
        let perm = perm.ok_or_else(|| error(format!("no recorded order for PPO epoch {epoch}")))?;
        perm.iter()
            .map(|&i| {
                let query = theirs
                    .get(i)
                    .ok_or_else(|| error(format!("recorded row {i} out of range")))?;
                queries.iter().position(|q| q == query).ok_or_else(|| {
                    error(format!(
                        "rollout batch {step}: no row for recorded query {query:?}"
                    ))
                })
            })
            .collect()
    }
}
