//! A data-parallel rank's share of a generation batch, as TRL's `_generate_and_score_completions`
//! treats it under accelerate: every process generates and scores its own rows (the loop
//! hands each rank `rows` consecutive rows of the global batch, rank `r` starting at global
//! row `r * rows`), then the rewards (and RLOO's KL, the completion lengths) are gathered so
//! that group advantages and the logged metrics cover the whole global batch, and each
//! process keeps its own slice (`process_slice`). With one process every gather is the
//! identity.

use serde::Serialize;
use serde::de::DeserializeOwned;
use trl_core::train::collective::{Collective, world};
use trl_core::train::gather::{all_gather_bytes, all_gather_f64};
use trl_core::{Error, Result};

use crate::advantages::SequenceKl;
use crate::rollout::is_truncated;

/// This process's rows of a global generation batch.
pub(crate) struct RowShard {
    world: &'static dyn Collective,
    rows: usize,
}

impl RowShard {
    /// The share of `rows` rows this process generated (every rank has as many).
    pub fn new(rows: usize) -> Self {
        RowShard {
            world: world(),
            rows,
        }
    }

    /// The global index of this process's first row.
    pub fn first_row(&self) -> u64 {
        (self.world.rank() * self.rows) as u64
    }

    /// Processes sharing the batch.
    pub fn processes(&self) -> usize {
        self.world.size()
    }

    /// Whether this process writes logs (rank 0).
    pub fn is_main(&self) -> bool {
        self.world.is_main()
    }

    /// `[global rows][width]`: every rank's `local` rows `[rows][width]`, in rank order.
    /// Every rank passes the same `width`.
    pub fn gather_rows(&self, local: &[Vec<f64>], width: usize) -> Vec<Vec<f64>> {
        let flat: Vec<f64> = local.iter().flatten().copied().collect();
        let gathered = all_gather_f64(self.world, &flat);
        if width == 0 {
            return vec![Vec::new(); self.rows * self.processes()];
        }
        gathered.chunks(width).map(<[f64]>::to_vec).collect()
    }

    /// This process's slice of a global per-row vector.
    pub fn local<'a, T>(&self, global: &'a [T]) -> &'a [T] {
        let start = self.world.rank() * self.rows;
        &global[start.min(global.len())..(start + self.rows).min(global.len())]
    }

    /// `value` summed over the processes.
    pub fn sum(&self, value: f64) -> f64 {
        let mut sum = [value];
        self.world.all_reduce_sum_f64(&mut sum);
        sum[0]
    }

    /// Every rank's `local` records, in rank order (what `gather_object` does for TRL's
    /// completion table), through JSON.
    pub fn gather_records<T: Serialize + DeserializeOwned>(&self, local: &[T]) -> Result<Vec<T>> {
        let bytes = to_json(local)?;
        let mut all = Vec::new();
        for part in all_gather_bytes(self.world, &bytes) {
            all.extend(from_json::<T>(&part)?);
        }
        Ok(all)
    }
}

/// What a generation batch's advantages and metrics are computed from, over every
/// process's rows (`[global rows]` each).
pub(crate) struct GlobalScores {
    /// `[rows][reward functions]` (TRL's gathered `rewards_per_func`).
    pub table: Vec<Vec<f64>>,
    /// Completion lengths and whether each was truncated (the `completions/*` metrics).
    pub lengths: Vec<f64>,
    pub truncated: Vec<bool>,
    /// RLOO's per-sequence KL (`beta != 0`).
    pub kl: Option<SequenceKl>,
}

impl RowShard {
    /// Gathers this process's `completions`, reward `table` and `kl` into [`GlobalScores`]
    /// (one all-gather of `[length, truncated, kl sum, kl tokens, rewards...]` per row).
    pub fn gather_scores(
        &self,
        completions: &[Vec<u32>],
        eos_and_pad: &[u32],
        table: &[Vec<f64>],
        kl: Option<SequenceKl>,
    ) -> GlobalScores {
        let functions = table.first().map_or(0, Vec::len);
        let local: Vec<Vec<f64>> = completions
            .iter()
            .zip(table)
            .enumerate()
            .map(|(i, (ids, rewards))| {
                let (kl_sum, kl_tokens) =
                    kl.as_ref().map_or((0.0, 0.0), |k| (k.sums[i], k.tokens[i]));
                let truncated = f64::from(u8::from(is_truncated(ids, eos_and_pad)));
                let mut row = vec![ids.len() as f64, truncated, kl_sum, kl_tokens];
                row.extend(rewards);
                row
            })
            .collect();
        let global = self.gather_rows(&local, 4 + functions);
        GlobalScores {
            table: global.iter().map(|r| r[4..].to_vec()).collect(),
            lengths: global.iter().map(|r| r[0]).collect(),
            truncated: global.iter().map(|r| r[1] != 0.0).collect(),
            kl: kl.map(|_| SequenceKl {
                sums: global.iter().map(|r| r[2]).collect(),
                tokens: global.iter().map(|r| r[3]).collect(),
            }),
        }
    }
}

fn to_json<T: Serialize>(records: &[T]) -> Result<Vec<u8>> {
    serde_json::to_vec(records).map_err(|e| Error::Data {
        message: format!("completion records as JSON: {e}"),
    })
}

fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<Vec<T>> {
    serde_json::from_slice(bytes).map_err(|e| Error::Data {
        message: format!("completion records gathered from another rank: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_keeps_its_rows() {
        let shard = RowShard::new(2);
        assert_eq!(shard.first_row(), 0);
        let rows = vec![vec![1.0, 2.0], vec![3.0, f64::NAN]];
        let gathered = shard.gather_rows(&rows, 2);
        assert_eq!(gathered[0], rows[0]);
        assert!(gathered[1][1].is_nan());
        assert_eq!(shard.local(&[5, 6]), &[5, 6]);
        assert_eq!(shard.sum(3.5), 3.5);
        let records = shard.gather_records(&["a".to_string()]).unwrap();
        assert_eq!(records, vec!["a".to_string()]);
    }
}
