//! `checkpoint-N/` folders: model, optimizer moments, trainer state; written to a temporary
//! folder and renamed into place so a crash (even `kill -9`) never leaves a half checkpoint.
//!
//! The scheduler needs no file (it is a pure function of the step) and neither does the data
//! order (a pure function of the seed, the epoch and the step), so resuming from step N
//! replays exactly what an uninterrupted run does.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};

use super::loss_scale::LossScale;
use super::optim::{AdamWState, Moments};

/// The optimizer file's entry for fp16's loss scale: `[scale, good_steps, skipped_steps]`.
const LOSS_SCALE: &str = "loss_scale";
use super::state::TrainerState;
use crate::model::{WeightReader, WeightWriter};
use crate::{Error, Result};

/// Name of the optimizer file inside a checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// Name of the trainer state file.
pub const STATE_FILE: &str = "trainer_state.json";

/// Folder name of the checkpoint after `step` optimizer steps.
pub fn checkpoint_dir(output_dir: &Path, step: u64) -> PathBuf {
    output_dir.join(format!("checkpoint-{step}"))
}

/// Existing complete checkpoints in `output_dir`, sorted by step.
pub fn list_checkpoints(output_dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(output_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("checkpoint-")?.parse().ok()?;
            entry
                .path()
                .join(STATE_FILE)
                .is_file()
                .then(|| (step, entry.path()))
        })
        .collect();
    found.sort();
    found
}

/// Writes a checkpoint: `write_model` fills the folder with the model (and tokenizer), then the
/// optimizer (unless `None`: `save_only_model`) and state are added, and the folder is renamed
/// into place.
pub fn save_checkpoint(
    output_dir: &Path,
    state: &TrainerState,
    optimizer: Option<&AdamWState>,
    write_model: &dyn Fn(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let final_dir = checkpoint_dir(output_dir, state.global_step);
    let tmp_dir = output_dir.join(format!(".tmp-checkpoint-{}", state.global_step));
    if tmp_dir.exists() {
        std::fs::remove_dir_all(&tmp_dir).map_err(|e| Error::io(&tmp_dir, e))?;
    }
    std::fs::create_dir_all(&tmp_dir).map_err(|e| Error::io(&tmp_dir, e))?;
    write_model(&tmp_dir)?;
    if let Some(optimizer) = optimizer {
        save_optimizer(&tmp_dir.join(OPTIMIZER_FILE), optimizer)?;
    }
    state.save(&tmp_dir.join(STATE_FILE))?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(|e| Error::io(&final_dir, e))?;
    }
    std::fs::rename(&tmp_dir, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
    Ok(final_dir)
}

/// Deletes the oldest checkpoints beyond `limit`, as transformers' `rotate_checkpoints`: no
/// limit or a limit of 0 keeps every checkpoint; the newest and the best (`best_step`) are
/// never deleted, so `max(limit, protected)` remain.
pub fn prune_checkpoints(
    output_dir: &Path,
    limit: Option<usize>,
    best_step: Option<u64>,
) -> Result<()> {
    let Some(limit) = limit.filter(|&l| l > 0) else {
        return Ok(());
    };
    let checkpoints = list_checkpoints(output_dir);
    let newest = checkpoints.last().map(|(step, _)| *step);
    let protected = |step: u64| Some(step) == newest || Some(step) == best_step;
    let protected_count = checkpoints.iter().filter(|(s, _)| protected(*s)).count();
    let keep = limit.max(protected_count);
    let mut remaining = checkpoints.len();
    for (step, dir) in checkpoints {
        if remaining <= keep {
            break;
        }
        if !protected(step) {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            remaining -= 1;
        }
    }
    Ok(())
}

fn save_optimizer(path: &Path, optimizer: &AdamWState) -> Result<()> {
    let mut writer = WeightWriter::default();
    for (index, moments) in optimizer.moments.iter().enumerate() {
        if let Some(m) = moments {
            writer.add(&format!("{index}.exp_avg"), m.exp_avg.clone())?;
            writer.add(&format!("{index}.exp_avg_sq"), m.exp_avg_sq.clone())?;
        }
    }
    // The step count rides along as a one-element tensor (exact up to 2^24 steps).
    writer.add_values("step", vec![1], vec![optimizer.step as f32]);
    // fp16's loss scale: a power of two and two step counts, exact in f32 up to 2^24.
    if let Some(scale) = optimizer.loss_scale {
        let counts = [scale.good_steps, scale.skipped_steps].map(|c| c as f32);
        let values = vec![scale.scale as f32, counts[0], counts[1]];
        writer.add_values(LOSS_SCALE, vec![3], values);
    }
    writer.write(path)
}

/// Reads optimizer moments written by [`save_checkpoint`].
pub fn load_optimizer(dir: &Path, device: &Device) -> Result<AdamWState> {
    let mut reader = WeightReader::open_file(&dir.join(OPTIMIZER_FILE))?;
    let step = reader.read("step", &[1])?[0] as u64;
    let loss_scale = match reader.contains(LOSS_SCALE) {
        true => {
            let values = reader.read(LOSS_SCALE, &[3])?;
            Some(LossScale {
                scale: f64::from(values[0]),
                good_steps: values[1] as u64,
                skipped_steps: values[2] as u64,
            })
        }
        false => None,
    };
    // Moments are stored flat as "{index}.exp_avg"; parameters without a gradient have none.
    let count = reader
        .names()
        .filter_map(|name| name.split('.').next()?.parse::<usize>().ok())
        .max()
        .map_or(0, |last| last + 1);
    // The moments live off the autodiff graph, as a fresh run's (`zeros_like` of the plain
    // weights): on the training device they would drag every AdamW op through it.
    let plain = device.clone().without_autodiff();
    let mut moments = Vec::with_capacity(count);
    for index in 0..count {
        let (avg, avg_sq) = (format!("{index}.exp_avg"), format!("{index}.exp_avg_sq"));
        if !reader.contains(&avg) {
            moments.push(None);
            continue;
        }
        let exp_avg = reader.read(&avg, &[reader.numel(&avg)])?;
        let exp_avg_sq = reader.read(&avg_sq, &[exp_avg.len()])?;
        let flat = |values: Vec<f32>| {
            let len = values.len();
            Tensor::<1>::from_data(TensorData::new(values, [len]), &plain)
        };
        moments.push(Some(Moments {
            exp_avg: flat(exp_avg),
            exp_avg_sq: flat(exp_avg_sq),
        }));
    }
    Ok(AdamWState {
        step,
        moments,
        loss_scale,
    })
}

#[cfg(test)]
mod prune_tests {
    use super::*;

    fn checkpoints_after_pruning(limit: Option<usize>) -> Vec<u64> {
        checkpoints_after_pruning_with_best(limit, None)
    }

    fn checkpoints_after_pruning_with_best(limit: Option<usize>, best: Option<u64>) -> Vec<u64> {
        let dir = tempfile::tempdir().unwrap();
        for step in [2, 4, 6] {
            let checkpoint = checkpoint_dir(dir.path(), step);
            std::fs::create_dir_all(&checkpoint).unwrap();
            std::fs::write(checkpoint.join(STATE_FILE), "{}").unwrap();
        }
        prune_checkpoints(dir.path(), limit, best).unwrap();
        list_checkpoints(dir.path())
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    #[test]
    fn a_limit_keeps_the_newest_and_zero_keeps_all_as_transformers() {
        assert_eq!(checkpoints_after_pruning(Some(2)), [4, 6]);
        assert_eq!(checkpoints_after_pruning(Some(0)), [2, 4, 6]);
        assert_eq!(checkpoints_after_pruning(None), [2, 4, 6]);
    }

    #[test]
    fn the_best_checkpoint_survives_the_limit_as_transformers() {
        assert_eq!(
            checkpoints_after_pruning_with_best(Some(1), Some(2)),
            [2, 6]
        );
        assert_eq!(
            checkpoints_after_pruning_with_best(Some(2), Some(2)),
            [2, 6]
        );
        assert_eq!(
            checkpoints_after_pruning_with_best(Some(2), Some(6)),
            [4, 6]
        );
    }
}

#[cfg(test)]
mod optimizer_file_tests {
    use super::*;

    /// fp16's loss scale is saved with the optimizer and read back; without one none is read.
    #[test]
    fn the_loss_scale_round_trips_through_the_optimizer_file() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let moments = Moments {
            exp_avg: Tensor::from_data(TensorData::new(vec![0.5f32, -1.0], [2]), &device),
            exp_avg_sq: Tensor::from_data(TensorData::new(vec![0.25f32, 1.0], [2]), &device),
        };
        for loss_scale in [
            Some(LossScale {
                scale: 8192.0,
                good_steps: 1234,
                skipped_steps: 3,
            }),
            None,
        ] {
            let state = AdamWState {
                step: 7,
                moments: vec![None, Some(moments.clone())],
                loss_scale,
            };
            save_optimizer(&dir.path().join(OPTIMIZER_FILE), &state).unwrap();
            let read = load_optimizer(dir.path(), &device).unwrap();
            assert_eq!((read.step, read.loss_scale), (7, loss_scale));
            assert!(read.moments[0].is_none());
            let avg = read.moments[1].as_ref().unwrap().exp_avg.clone();
            assert_eq!(avg.into_data().try_to_vec::<f32>().unwrap(), [0.5, -1.0]);
        }
    }
}
