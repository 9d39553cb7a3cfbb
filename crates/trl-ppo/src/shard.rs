//! A data-parallel rank's share of a PPO rollout batch. The training loop hands rank `r` the
//! loader batches `g * processes + r` of each rollout batch (`per_device_train_batch_size`
//! rows each), so its local row `j` is global row `(j / micro * processes + r) * micro + j %
//! micro` of the batch one process would hold. Each rank generates (one random stream per
//! global row) and scores its rows with the global batch's padded widths, so every row comes
//! out as in one process; then one all-gather brings every rank's rows, in global order, to
//! every rank. The targets (KL-shaped rewards, GAE, whitening) are then computed over the
//! whole global batch on every rank: the same numbers whatever the number of processes.
//! With one process every call returns its input.

use std::ops::Range;
use std::path::Path;

use trl_core::train::collective::Collective;
use trl_core::train::gather::all_gather_f64;
use trl_core::{Error, Result};

use crate::gae::RolloutInputs;
use crate::rollout::{
    ResponseSource, Rollout, RolloutModels, RolloutSettings, finish_rollout, padded_rows,
    rollout_inputs,
};

/// This process's rows of a global rollout batch.
pub struct RolloutShard<'a> {
    world: &'a dyn Collective,
    /// Rows per loader batch (`per_device_train_batch_size`).
    micro: usize,
}

/// A rollout batch over every process, rows in global order.
pub struct GlobalRows {
    /// The queries, unpadded.
    pub queries: Vec<Vec<u32>>,
    /// `[rows][context + width]`.
    pub query_responses: Vec<Vec<u32>>,
    pub inputs: RolloutInputs,
}

impl<'a> RolloutShard<'a> {
    /// The share of `world`'s rank, whose loader batches hold `micro` rows.
    pub fn new(world: &'a dyn Collective, micro: usize) -> Self {
        RolloutShard {
            world,
            micro: micro.max(1),
        }
    }

    /// The global row index of each of `local` local rows.
    pub fn global_rows(&self, local: usize) -> Vec<usize> {
        let (n, r, m) = (self.world.size(), self.world.rank(), self.micro);
        (0..local).map(|j| (j / m * n + r) * m + j % m).collect()
    }

    /// `global` cut into runs of consecutive global rows: (local range, first global row).
    pub fn runs(global: &[usize]) -> Vec<(Range<usize>, u64)> {
        let mut runs: Vec<(Range<usize>, u64)> = Vec::new();
        for (j, &g) in global.iter().enumerate() {
            match runs.last_mut() {
                Some((range, first)) if *first as usize + range.len() == g => range.end = j + 1,
                _ => runs.push((j..j + 1, g as u64)),
            }
        }
        runs
    }

    /// The largest `(context, width)` over the ranks.
    pub fn global_shape(&self, context: usize, width: usize) -> (usize, usize) {
        let all = all_gather_f64(self.world, &[context as f64, width as f64]);
        all.chunks(2).fold((0, 0), |(c, w), pair| {
            (c.max(pair[0] as usize), w.max(pair[1] as usize))
        })
    }

    /// Every rank's rows, placed at their global indices `global` (one all-gather of
    /// `[index, query length, score, sequence length, tokens..., logprobs..., ref logprobs...,
    /// values...]` per row; every rank's rows are `context + width` tokens wide).
    pub fn gather(
        &self,
        global: &[usize],
        queries: Vec<Vec<u32>>,
        query_responses: Vec<Vec<u32>>,
        inputs: RolloutInputs,
    ) -> GlobalRows {
        if self.world.size() == 1 {
            return GlobalRows {
                queries,
                query_responses,
                inputs,
            };
        }
        let tokens = query_responses.first().map_or(0, Vec::len);
        let width = inputs.logprobs.first().map_or(0, Vec::len);
        let stride = 4 + tokens + 3 * width;
        let mut flat = Vec::with_capacity(global.len() * stride);
        for (j, &g) in global.iter().enumerate() {
            let q = &queries[j];
            flat.extend([g as f64, q.len() as f64, f64::from(inputs.scores[j])]);
            flat.push(inputs.sequence_lengths[j] as f64);
            flat.extend(query_responses[j].iter().map(|&t| f64::from(t)));
            for m in [&inputs.logprobs, &inputs.ref_logprobs, &inputs.values] {
                flat.extend(m[j].iter().map(|&v| f64::from(v)));
            }
        }
        let all = all_gather_f64(self.world, &flat);
        let mut rows: Vec<&[f64]> = all.chunks(stride.max(1)).collect();
        rows.sort_by_key(|row| row[0] as usize);
        unpack(&rows, tokens, width)
    }
}

/// The scored global rollout batch of `step` and its queries (global row order): this rank's
/// `queries` (its loader batches, in order) answered by `source` and scored here, padded to
/// the global batch's widths, then every rank's rows gathered; the targets are computed over
/// the whole global batch.
pub fn global_rollout(
    shard: &RolloutShard,
    source: &mut dyn ResponseSource,
    models: &RolloutModels,
    queries: Vec<Vec<u32>>,
    step: u64,
    settings: &RolloutSettings,
) -> Result<(Vec<Vec<u32>>, Rollout)> {
    let global = shard.global_rows(queries.len());
    let mut responses = Vec::with_capacity(queries.len());
    for (range, first_row) in RolloutShard::runs(&global) {
        responses.extend(source.respond(models.policy, &queries[range], step, first_row)?);
    }
    let context = queries.iter().map(Vec::len).max().unwrap_or(0);
    let width = responses.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let (context, width) = shard.global_shape(context, width);
    let rows = padded_rows(&queries, &responses, settings.pad_token_id, context, width);
    let inputs = rollout_inputs(models, &rows, context, settings)?;
    let all = shard.gather(&global, queries, rows, inputs);
    let rollout = finish_rollout(context, all.query_responses, all.inputs, settings)?;
    Ok((all.queries, rollout))
}

/// [`GlobalRows`] from gathered rows (already in global order).
fn unpack(rows: &[&[f64]], tokens: usize, width: usize) -> GlobalRows {
    let context = tokens - width;
    let ids = |values: &[f64]| -> Vec<u32> { values.iter().map(|&v| v as u32).collect() };
    let floats = |values: &[f64]| -> Vec<f32> { values.iter().map(|&v| v as f32).collect() };
    let column = |row: &[f64], k: usize| floats(&row[4 + tokens + k * width..][..width]);
    let query_responses: Vec<Vec<u32>> = rows.iter().map(|r| ids(&r[4..4 + tokens])).collect();
    let queries = rows
        .iter()
        .zip(&query_responses)
        .map(|(r, qr)| qr[context - r[1] as usize..context].to_vec())
        .collect();
    GlobalRows {
        queries,
        query_responses,
        inputs: RolloutInputs {
            logprobs: rows.iter().map(|&r| column(r, 0)).collect(),
            ref_logprobs: rows.iter().map(|&r| column(r, 1)).collect(),
            values: rows.iter().map(|&r| column(r, 2)).collect(),
            scores: rows.iter().map(|r| r[2] as f32).collect(),
            sequence_lengths: rows.iter().map(|r| r[3] as i64).collect(),
        },
    }
}

/// The checkpoint file naming the number of processes of the run that wrote it.
pub const STATE_FILE: &str = "ppo_state.json";

/// Writes [`STATE_FILE`] into checkpoint folder `dir`.
pub fn save_processes(dir: &Path, processes: usize) -> Result<()> {
    let path = dir.join(STATE_FILE);
    let text = serde_json::json!({ "processes": processes }).to_string();
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
}

/// An error unless checkpoint folder `dir` was written by a run on `processes` processes
/// (a checkpoint without [`STATE_FILE`] comes from one process).
pub fn check_processes(dir: &Path, processes: usize) -> Result<()> {
    let path = dir.join(STATE_FILE);
    let written = match std::fs::read(&path) {
        Ok(bytes) => {
            let value: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| Error::Config {
                    path: path.clone(),
                    message: format!("not a PPO state written by trl ppo: {e}"),
                })?;
            value["processes"].as_u64().ok_or_else(|| Error::Config {
                path: path.clone(),
                message: "no `processes` count".into(),
            })? as usize
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
        Err(e) => return Err(Error::io(&path, e)),
    };
    if written != processes {
        return Err(Error::Config {
            path,
            message: format!(
                "this checkpoint was written by a PPO run on {written} processes, whose rollout \
                 batches hold per_device_train_batch_size * gradient_accumulation_steps * \
                 {written} prompts; resume it on {written} processes (mpirun -n {written}), not \
                 {processes}"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use trl_core::train::collective::{ScriptedPeers, SingleProcess};

    #[test]
    fn a_rank_holds_every_other_loader_batch() {
        // micro 2: rank 1 holds loader batches 1 and 3 = global rows 2, 3, 6, 7
        let second_of_two = ScriptedPeers::new(1, 2, Vec::new());
        let shard = RolloutShard::new(&second_of_two, 2);
        let global = shard.global_rows(4);
        assert_eq!(global, vec![2, 3, 6, 7]);
        let runs = RolloutShard::runs(&global);
        assert_eq!(runs, vec![(0..2, 2), (2..4, 6)]);
        let alone = RolloutShard::new(&SingleProcess, 2).global_rows(4);
        assert_eq!(RolloutShard::runs(&alone), vec![(0..4, 0)]);
    }

    #[test]
    fn gathered_rows_unpack_in_global_order() {
        // two rows of 1 query token + 2 response tokens, given out of order
        let row = |g: f64, token: f64, lp: f64| {
            vec![
                g, 1.0, 0.5, 1.0, token, 7.0, 8.0, lp, lp, -1.0, -1.0, 0.25, 0.25,
            ]
        };
        let (a, b) = (row(1.0, 4.0, -2.0), row(0.0, 3.0, -3.0));
        let mut rows: Vec<&[f64]> = vec![a.as_slice(), b.as_slice()];
        rows.sort_by_key(|r| r[0] as usize);
        let got = unpack(&rows, 3, 2);
        assert_eq!(got.queries, vec![vec![3], vec![4]]);
        assert_eq!(got.query_responses[1], vec![4, 7, 8]);
        assert_eq!(
            got.inputs.logprobs,
            vec![vec![-3.0, -3.0], vec![-2.0, -2.0]]
        );
        assert_eq!(got.inputs.values[0], vec![0.25, 0.25]);
        assert_eq!(got.inputs.sequence_lengths, vec![1, 1]);
    }

    #[test]
    fn a_checkpoint_resumes_on_its_own_number_of_processes_only() {
        let dir = tempfile::tempdir().unwrap();
        check_processes(dir.path(), 1).unwrap();
        save_processes(dir.path(), 2).unwrap();
        check_processes(dir.path(), 2).unwrap();
        let err = check_processes(dir.path(), 1).unwrap_err().to_string();
        assert!(
            err.contains("on 2 processes") && err.contains("mpirun -n 2"),
            "{err}"
        );
    }
}
