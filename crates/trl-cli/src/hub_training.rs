//! `--push_to_hub true` on a training command, as transformers' Trainer does it:
//! - before training: the token is read (none: an error before any request) and the repo is
//!   made sure of (`hub_model_id`, default `output_dir`'s name; created if missing with
//!   `hub_private_repo`), so a refused token fails before the first step;
//! - at each checkpoint, as `hub_strategy` says: `every_save` commits the checkpoint's model
//!   files (not its optimizer state) and a model card to the repo root; `checkpoint` adds the
//!   whole checkpoint as `last-checkpoint/` (resume from it), `all_checkpoints` as
//!   `checkpoint-N/`; `end` pushes nothing then. A failed push there is a warning: the run
//!   goes on and the final push sends the model;
//! - at the end: the model card is written to `output_dir/README.md` (a README that trl-rs did
//!   not write is kept), and `output_dir` is committed without its `checkpoint-*/` folders.
//!   A failure is the command's error; the model stays saved locally.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::Value;
use trl_core::train::TrainingArguments;
use trl_core::train::args::HubStrategy;
use trl_core::train::checkpoint::OPTIMIZER_FILE;
use trl_core::train::logging::CheckpointHook;
use trl_hub_push::{
    FolderPush, HubClient, HubSettings, PushReport, README, RetryPolicy, RunInfo, UploadFile,
    folder_facts, folder_files, model_card, readme_license, write_model_card,
};

/// The pushes of one training run.
pub struct TrainingPush {
    client: HubClient,
    endpoint: String,
    repo_id: String,
    strategy: HubStrategy,
    run: RunInfo,
}

impl TrainingPush {
    /// `None` without `push_to_hub`; otherwise reads the token and makes sure the repo exists.
    pub fn start(args: &TrainingArguments, run: RunInfo) -> Result<Option<Arc<Self>>> {
        if !args.push_to_hub {
            return Ok(None);
        }
        let token = args.hub_token.as_ref().map(|secret| secret.0.as_str());
        let settings = HubSettings::from_env(token)?;
        let endpoint = settings.endpoint.clone();
        let client = HubClient::new(settings, RetryPolicy::default());
        let wanted = match &args.hub_model_id {
            Some(id) => id.clone(),
            None => default_repo_name(&args.output_dir)?,
        };
        let (repo_id, created) = client.ensure_repo(&wanted, args.hub_private_repo)?;
        let verb = if created {
            "created"
        } else {
            "pushing to existing"
        };
        eprintln!("push_to_hub: {verb} repo {endpoint}/{repo_id}");
        Ok(Some(Arc::new(TrainingPush {
            client,
            endpoint,
            repo_id,
            strategy: args.hub_strategy,
            run,
        })))
    }

    /// The hook the training loop calls after each checkpoint (`None` for `hub_strategy end`).
    pub fn checkpoint_hook(self: &Arc<Self>) -> Option<CheckpointHook> {
        if self.strategy == HubStrategy::End {
            return None;
        }
        let push = self.clone();
        Some(Box::new(move |dir: &Path| {
            match push.push_checkpoint(dir) {
                Ok(report) => push.announce(&report, &[]),
                Err(err) => eprintln!(
                    "warning: pushing {} to the Hub failed (training goes on; the final push sends the model): {err}",
                    dir.display()
                ),
            }
            Ok(())
        }))
    }

    fn push_checkpoint(&self, dir: &Path) -> trl_hub_push::Result<PushReport> {
        let (all, _) = folder_files(dir, "", false)?;
        // The model files at the root: the checkpoint's top-level files but its optimizer state.
        let mut files: Vec<UploadFile> = all
            .iter()
            .filter(|f| !f.path_in_repo.contains('/') && f.path_in_repo != OPTIMIZER_FILE)
            .cloned()
            .collect();
        let card = model_card(&self.repo_id, &folder_facts(dir)?, &self.run);
        files.push(UploadFile::from_bytes(README.into(), card.into_bytes()));
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let prefix = match self.strategy {
            HubStrategy::Checkpoint => Some("last-checkpoint/".to_owned()),
            HubStrategy::AllCheckpoints => Some(format!("{name}/")),
            HubStrategy::End | HubStrategy::EverySave => None,
        };
        if let Some(prefix) = prefix {
            files.extend(folder_files(dir, &prefix, true)?.0);
        }
        let step = name.trim_start_matches("checkpoint-");
        let message = format!("Training in progress, step {step}");
        self.client.push_files(&self.repo_id, &files, &message)
    }

    /// The push at the end of training: the card written into `output_dir`, then the folder.
    pub fn push_final(&self, output_dir: &Path) -> Result<()> {
        write_model_card(output_dir, &self.repo_id, &self.run)?;
        let (report, skipped) = self
            .client
            .push_folder(&self.repo_id, output_dir, &FolderPush::default(), "End of training")
            .with_context(|| {
                format!(
                    "pushing to the Hub failed; the model is saved in {}: push it with `trl push {} {}`",
                    output_dir.display(),
                    output_dir.display(),
                    self.repo_id
                )
            })?;
        self.announce(&report, &skipped);
        Ok(())
    }

    fn announce(&self, report: &PushReport, skipped: &[String]) {
        eprintln!(
            "pushed {} files ({} through LFS) to {}/{}: {}",
            report.regular.len() + report.lfs.len(),
            report.lfs.len(),
            self.endpoint,
            self.repo_id,
            report.commit_url
        );
        if !skipped.is_empty() {
            eprintln!("not pushed: {}", skipped.join(", "));
        }
    }
}

/// transformers' default `hub_model_id`: the output folder's name.
fn default_repo_name(output_dir: &str) -> Result<String> {
    let absolute = std::path::absolute(output_dir).context("output_dir")?;
    absolute
        .file_name()
        .map(|name| name.to_string_lossy().to_string())
        .context("--push_to_hub needs --hub_model_id (output_dir has no folder name)")
}

/// What the model card says about a run: its method, model, dataset, the base model's
/// license (from the resolved model folder's README), the main training arguments and the
/// method keys set away from their defaults.
pub fn run_info(
    command: &str,
    model: &str,
    dataset: &str,
    model_dir: &Path,
    args: &TrainingArguments,
    method_keys: (Value, Value),
) -> RunInfo {
    let mut hyperparameters: Vec<(String, String)> = vec![
        ("learning_rate".into(), number(args.learning_rate)),
        (
            "per_device_train_batch_size".into(),
            args.per_device_train_batch_size.to_string(),
        ),
        (
            "gradient_accumulation_steps".into(),
            args.gradient_accumulation_steps.to_string(),
        ),
    ];
    if args.max_steps > 0 {
        hyperparameters.push(("max_steps".into(), args.max_steps.to_string()));
    } else {
        hyperparameters.push(("num_train_epochs".into(), args.num_train_epochs.to_string()));
    }
    let scheduler = serde_json::to_value(args.lr_scheduler_type).unwrap_or_default();
    hyperparameters.extend([
        (
            "lr_scheduler_type".into(),
            scheduler.as_str().unwrap_or("?").to_owned(),
        ),
        ("warmup_ratio".into(), args.warmup_ratio.to_string()),
        ("weight_decay".into(), args.weight_decay.to_string()),
        ("max_grad_norm".into(), args.max_grad_norm.to_string()),
        (
            "optimizer".into(),
            format!(
                "AdamW (betas {}, {}; epsilon {})",
                args.adam_beta1,
                args.adam_beta2,
                number(args.adam_epsilon)
            ),
        ),
        ("seed".into(), args.seed.to_string()),
    ]);
    let (config, defaults) = method_keys;
    if let (Value::Object(config), Value::Object(defaults)) = (config, defaults) {
        for (key, value) in config {
            if defaults.get(&key) != Some(&value) {
                hyperparameters.push((key, value.to_string()));
            }
        }
    }
    RunInfo {
        method: Some(command.to_owned()),
        base_model: Some(model.to_owned()),
        datasets: vec![dataset.to_owned()],
        license: readme_license(&model_dir.join(README)),
        hyperparameters,
        versions: vec![("burn".into(), trl_core::BURN_VERSION.to_owned())],
    }
}

/// A rate as people write it: `2e-5`, not `0.00002`.
fn number(value: f64) -> String {
    if value != 0.0 && value.abs() < 1e-3 {
        format!("{value:e}")
    } else {
        value.to_string()
    }
}
