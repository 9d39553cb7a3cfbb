//! What a GRPO checkpoint keeps besides the weights: the rollout buffer (the micro-batches
//! of the current generation), how many micro-steps and generations ran, so a resumed run
//! trains on the same completions and draws the same next ones. With several processes each
//! rank's buffer holds its own completions: rank 0's goes into `rollout_state.json`, rank
//! `r`'s into `rollout_state.rank-<r>.json`, and a resume needs the same number of processes.

use std::path::Path;

use serde::{Deserialize, Serialize};
use trl_core::{Error, Result};

use crate::rollout::RolloutBatch;

/// Rank `rank`'s file in a checkpoint folder.
fn state_file(rank: usize) -> String {
    match rank {
        0 => "rollout_state.json".into(),
        r => format!("rollout_state.rank-{r}.json"),
    }
}

fn one() -> usize {
    1
}

/// The online method's changing state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutState {
    /// Micro-batches of the current generation batch (empty before the first).
    pub buffer: Vec<RolloutBatch>,
    /// Accumulation steps done (TRL's `_step`).
    pub micro_steps: u64,
    /// Generation batches drawn so far (seeds the next one).
    pub generations: u64,
    /// Processes the run trained on (each buffer is one rank's share).
    #[serde(default = "one")]
    pub processes: usize,
}

impl Default for RolloutState {
    fn default() -> Self {
        RolloutState {
            buffer: Vec::new(),
            micro_steps: 0,
            generations: 0,
            processes: 1,
        }
    }
}

impl RolloutState {
    /// Writes rank `rank`'s state into checkpoint folder `dir`.
    pub fn save(&self, dir: &Path, rank: usize) -> Result<()> {
        let path = dir.join(state_file(rank));
        let text = serde_json::to_vec(self).map_err(|e| Error::Config {
            path: path.clone(),
            message: e.to_string(),
        })?;
        trl_core::model::write_atomically(&path, &text)
    }

    /// Reads what [`RolloutState::save`] wrote for rank `rank` of `processes`; a checkpoint
    /// without it (not written by an online run) or written by another number of processes
    /// is an error.
    pub fn load(dir: &Path, rank: usize, processes: usize) -> Result<Self> {
        let path = dir.join(state_file(rank));
        let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let state: RolloutState = serde_json::from_slice(&text).map_err(|e| Error::Config {
            path: path.clone(),
            message: format!("not a rollout state written by trl grpo/rloo: {e}"),
        })?;
        if state.processes != processes {
            return Err(Error::Config {
                path,
                message: format!(
                    "this checkpoint was written by a run on {} processes, and its rollout \
                     buffer is split between them; resume it on {} processes (mpirun -n {})",
                    state.processes, state.processes, state.processes
                ),
            });
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::RolloutRow;

    #[test]
    fn round_trips_through_a_checkpoint_folder() {
        let dir = tempfile::tempdir().unwrap();
        let state = RolloutState {
            buffer: vec![RolloutBatch {
                rows: vec![RolloutRow {
                    prompt_ids: vec![1, 2],
                    completion_ids: vec![3],
                    trained: true,
                    advantage: -0.25,
                    old_logps: Some(vec![-1.5]),
                    ref_logps: None,
                }],
                generation_tokens: 1.0,
                ..RolloutBatch::default()
            }],
            micro_steps: 3,
            generations: 2,
            processes: 2,
        };
        state.save(dir.path(), 1).unwrap();
        let back = RolloutState::load(dir.path(), 1, 2).unwrap();
        assert_eq!(back.buffer[0].rows, state.buffer[0].rows);
        assert_eq!((back.micro_steps, back.generations), (3, 2));
        assert!(RolloutState::load(dir.path(), 0, 2).is_err());
        let err = RolloutState::load(dir.path(), 1, 3)
            .unwrap_err()
            .to_string();
        assert!(err.contains("resume it on 2 processes"), "{err}");
    }
}
