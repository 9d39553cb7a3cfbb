//! Evaluation in the training commands: where the eval rows come from (`--dataset_test_split`
//! of the same folder or hub dataset, or `--eval_dataset_name`), their tokenized examples
//! (cached like the train ones), and `trl eval`'s report of a finished model.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::Device;
use serde::Serialize;
use serde::de::DeserializeOwned;
use trl_core::data::{Dataset, DatasetArgs, Method as DataMethod, Row, load_dataset};
use trl_core::train::{EvalContext, Method, TrainingArguments, evaluate};

use crate::common::{PrepareError, Setup};
use crate::model_args::ModelAndDataArgs;

/// The eval data when `eval_strategy` / `eval_on_start` ask for evaluation: the
/// `dataset_test_split` of `dataset_name` (as TRL's scripts take `dataset[dataset_test_split]`),
/// or `eval_dataset_name` (a single file is evaluated whole). Validated for `method` like the
/// train rows, before any model loads.
pub(crate) fn eval_dataset(
    args: &TrainingArguments,
    inputs: &ModelAndDataArgs,
    train: &DatasetArgs,
    method: DataMethod,
) -> Result<Option<Dataset>> {
    if !args.evaluates() {
        return Ok(None);
    }
    if method == DataMethod::Ppo {
        return Err(trl_core::train::method::eval_unsupported().into());
    }
    if inputs.eval_dataset_name.is_none() && std::path::Path::new(&train.dataset_name).is_file() {
        anyhow::bail!(
            "eval_strategy/eval_on_start need eval rows, and `{}` is a single file (the train \
             split): pass --eval_dataset_name FILE, or a folder with train and {} files",
            train.dataset_name,
            inputs.dataset_test_split
        );
    }
    let name = inputs
        .eval_dataset_name
        .clone()
        .unwrap_or_else(|| train.dataset_name.clone());
    let split = if inputs.eval_dataset_name.is_some() && std::path::Path::new(&name).is_file() {
        "train".to_string()
    } else {
        inputs.dataset_test_split.clone()
    };
    let eval_args = DatasetArgs {
        dataset_name: name,
        dataset_train_split: split,
        ..train.clone()
    };
    let dataset = load_dataset(&eval_args, method)
        .with_context(|| "the eval dataset (eval_strategy is not `no`; see --dataset_test_split and --eval_dataset_name)")?;
    Ok(Some(dataset))
}

impl<C> Setup<C> {
    /// [`Setup::cached_examples`] for the eval rows (`prepare` gets them); `None` when
    /// nothing is evaluated.
    pub fn cached_eval_examples<T: Serialize + DeserializeOwned>(
        &self,
        recipe: &str,
        options: &str,
        prepare: impl FnOnce(&[Row]) -> std::result::Result<Vec<T>, PrepareError>,
    ) -> Result<Option<Vec<T>>> {
        let Some(dataset) = &self.eval_dataset else {
            return Ok(None);
        };
        let examples =
            self.cached_examples_of(dataset, recipe, options, || prepare(dataset.rows()))?;
        if examples.is_empty() {
            anyhow::bail!("no eval row is left after preparation (truncation to max_length)");
        }
        Ok(Some(examples))
    }

    /// `trainer.evaluate()` on a finished model: the `eval_*` metrics as one JSON line on
    /// stdout, and `eval_results.json` in `output_dir` when one was given (transformers'
    /// `save_metrics("eval", ...)`).
    pub(crate) fn evaluate_only<M: Method>(
        &self,
        method: &mut M,
        model: &M::Model,
        examples: &[M::Example],
        device: &Device,
    ) -> Result<()> {
        let ctx = EvalContext {
            step: 0,
            num_tokens: 0.0,
            device,
            batch: 0,
        };
        let batch = self.args.per_device_eval_batch_size;
        let summary = evaluate(method, model, examples, batch, &ctx)?;
        println!("{}", serde_json::to_string(&summary.metrics)?);
        if self.args.output_dir != TrainingArguments::default().output_dir {
            let dir = PathBuf::from(&self.args.output_dir);
            std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
            let path = dir.join("eval_results.json");
            std::fs::write(
                &path,
                serde_json::to_string_pretty(&summary.metrics)? + "\n",
            )
            .with_context(|| path.display().to_string())?;
            eprintln!("saved {}", path.display());
        }
        Ok(())
    }
}
