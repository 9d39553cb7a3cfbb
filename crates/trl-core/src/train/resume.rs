//! Resuming a run from `checkpoint-N`: which folder (`resume_from_checkpoint`), and putting
//! back the model, the method's state, the optimizer and the trainer state. The data order
//! and the LR schedule are pure functions of the step, so nothing else needs restoring.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde_json::Value;

use super::args::TrainingArguments;
use super::checkpoint::{OPTIMIZER_FILE, STATE_FILE, list_checkpoints, load_optimizer};
use super::method::Method;
use super::optim::AdamWState;
use super::state::TrainerState;
use crate::{Error, Result};

/// The checkpoint folder `resume_from_checkpoint` points at: `true` takes the latest
/// `checkpoint-N` in `output_dir`, a string is a folder, `false`/absent resumes nothing.
pub fn resume_dir(args: &TrainingArguments, output_dir: &Path) -> Result<Option<PathBuf>> {
    match &args.resume_from_checkpoint {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
        Some(Value::Bool(true)) => latest_checkpoint(output_dir).map(Some),
        Some(Value::String(flag)) if flag.eq_ignore_ascii_case("true") => {
            latest_checkpoint(output_dir).map(Some)
        }
        Some(Value::String(flag)) if flag.eq_ignore_ascii_case("false") => Ok(None),
        Some(Value::String(path)) => {
            let dir = PathBuf::from(path);
            if dir.join(STATE_FILE).is_file() {
                Ok(Some(dir))
            } else {
                Err(Error::Config {
                    path: dir,
                    message:
                        "resume_from_checkpoint: not a checkpoint folder (no trainer_state.json)"
                            .into(),
                })
            }
        }
        Some(other) => Err(Error::Config {
            path: "resume_from_checkpoint".into(),
            message: format!("expected true, false or a path, found {other}"),
        }),
    }
}

fn latest_checkpoint(output_dir: &Path) -> Result<PathBuf> {
    match list_checkpoints(output_dir).pop() {
        Some((_, dir)) => Ok(dir),
        None => Err(Error::Config {
            path: output_dir.to_path_buf(),
            message: "resume_from_checkpoint=true but no checkpoint-N folder with a trainer_state.json is here"
                .into(),
        }),
    }
}

/// Loads the model, method state and optimizer (when saved) of checkpoint `dir` and continues `state`
/// (step, epoch, log history, token counts) from it.
pub fn restore<M: Method>(
    method: &mut M,
    dir: &Path,
    device: &Device,
    state: &mut TrainerState,
    optimizer: &mut AdamWState,
) -> Result<M::Model> {
    let model = method.load_model(dir, device)?;
    method.load_state(dir, device)?;
    // A `save_only_model` checkpoint has no optimizer file: AdamW starts afresh, as the HF
    // Trainer loads the optimizer only when its file is there.
    if dir.join(OPTIMIZER_FILE).is_file() {
        let fp16_scale = optimizer.loss_scale;
        *optimizer = load_optimizer(dir, device)?;
        // A run resumed under --fp16 keeps the saved scale, or starts one (as GradScaler does
        // when the checkpoint has no scaler state); without --fp16 none is used.
        optimizer.loss_scale = fp16_scale.and(optimizer.loss_scale.or(fp16_scale));
    }
    let saved = TrainerState::load(&dir.join(STATE_FILE))?;
    state.global_step = saved.global_step;
    state.epoch = saved.epoch;
    state.log_history = saved.log_history;
    state.num_input_tokens_seen = saved.num_input_tokens_seen;
    state.best_metric = saved.best_metric;
    state.best_global_step = saved.best_global_step;
    state.best_model_checkpoint = saved.best_model_checkpoint;
    Ok(model)
}
