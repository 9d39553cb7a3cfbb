//! Mini-batch orders recorded from another trainer, for replays: TRL 1.12 shuffles each PPO
//! epoch with the global numpy RNG (`np.random.permutation(local_batch_size)`), which a Rust
//! run cannot draw, so a replay takes the permutations TRL drew, over TRL's row order, and
//! maps them onto ours by the rows' queries.

use trl_core::{Error, Result};

/// Per rollout batch: the other trainer's queries in its row order, and its permutation of
/// those rows for every PPO epoch.
pub struct RecordedOrders {
    pub batches: Vec<(Vec<Vec<u32>>, Vec<Vec<usize>>)>,
}

impl RecordedOrders {
    /// Our row indices in the order the recorded permutation of `epoch` visits the rows of
    /// rollout batch `step`; `queries` are our rows' queries.
    pub fn order(&self, step: u64, epoch: usize, queries: &[Vec<u32>]) -> Result<Vec<usize>> {
        let error = |message: String| Error::Config {
            path: "ppo".into(),
            message,
        };
        let (theirs, perms) = self
            .batches
            .get(step as usize)
            .ok_or_else(|| error(format!("no recorded order for rollout batch {step}")))?;
        let perm = perms
            .get(epoch)
            .ok_or_else(|| error(format!("no recorded order for PPO epoch {epoch}")))?;
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
