//! What a GRPO checkpoint keeps besides the weights: the rollout buffer (the micro-batches
//! of the current generation), how many micro-steps and generations ran, so a resumed run
//! trains on the same completions and draws the same next ones.

use std::path::Path;

use serde::{Deserialize, Serialize};
use trl_core::{Error, Result};

use crate::rollout::RolloutBatch;

/// The file in a checkpoint folder.
const STATE_FILE: &str = "rollout_state.json";

/// The online method's changing state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RolloutState {
    /// Micro-batches of the current generation batch (empty before the first).
    pub buffer: Vec<RolloutBatch>,
    /// Accumulation steps done (TRL's `_step`).
    pub micro_steps: u64,
    /// Generation batches drawn so far (seeds the next one).
    pub generations: u64,
}

impl RolloutState {
    /// Writes the state into checkpoint folder `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(STATE_FILE);
        let text = serde_json::to_vec(self).map_err(|e| Error::Config {
            path: path.clone(),
            message: e.to_string(),
        })?;
        trl_core::model::write_atomically(&path, &text)
    }

    /// Reads what [`RolloutState::save`] wrote; a checkpoint without it is an error (it was
    /// not written by an online run).
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_slice(&text).map_err(|e| Error::Config {
            path: path.clone(),
            message: format!("not a rollout state written by trl grpo/rloo: {e}"),
        })
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
        };
        state.save(dir.path()).unwrap();
        let back = RolloutState::load(dir.path()).unwrap();
        assert_eq!(back.buffer[0].rows, state.buffer[0].rows);
        assert_eq!((back.micro_steps, back.generations), (3, 2));
        assert!(RolloutState::load(&dir.path().join("nope")).is_err());
    }
}
