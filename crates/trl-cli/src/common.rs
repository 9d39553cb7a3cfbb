//! What every training command does the same way: parse TRL keys and check their values,
//! validate the data before any model loads, resolve the model, pick the device, check the
//! output folder, set up logging, report the outcome. The tokenizer and the reference model
//! are set up in `tokenizer_setup.rs` and `reference.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};
use burn::tensor::Device;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use trl_core::data::token_cache::{CacheKey, cached};
use trl_core::data::{Dataset, DatasetArgs, Method as DataMethod, load_dataset};
use trl_core::train::args::{ReportTo, known_keys};
use trl_core::train::collective::{describe, world};
use trl_core::train::output_dir::{check_output_dir, prepare_output_dir};
use trl_core::train::{Method, RunLogger, TrainOutcome, TrainingArguments, train_with_eval};

use crate::config::{parse_args, reject_unknown_keys, take_keys as take_known_keys};
use crate::device::{default_device_spec, parse_device};
use crate::hub_training::{TrainingPush, run_info};
use crate::model_args::ModelAndDataArgs;

/// A method's config as a training command uses it: its keys, their checks, its data column.
pub trait CommandConfig: Serialize + DeserializeOwned + Default {
    /// Range checks on the method's keys (each error names its option).
    fn validate(&self) -> Result<()>;

    /// The column of standard language-modeling text.
    fn text_field(&self) -> String {
        "text".into()
    }
}

impl CommandConfig for trl_sft::SftConfig {
    fn validate(&self) -> Result<()> {
        Ok(trl_sft::SftConfig::validate(self)?)
    }

    fn text_field(&self) -> String {
        self.dataset_text_field.clone()
    }
}

impl CommandConfig for trl_dpo::DpoConfig {
    fn validate(&self) -> Result<()> {
        Ok(trl_dpo::DpoConfig::validate(self)?)
    }
}

impl CommandConfig for trl_kto::KtoConfig {
    fn validate(&self) -> Result<()> {
        Ok(trl_kto::KtoConfig::validate(self)?)
    }
}

impl CommandConfig for trl_reward::RewardConfig {
    fn validate(&self) -> Result<()> {
        Ok(trl_reward::RewardConfig::validate(self)?)
    }
}

impl CommandConfig for trl_grpo::GrpoConfig {
    fn validate(&self) -> Result<()> {
        Ok(trl_grpo::GrpoConfig::validate(self)?)
    }
}

impl CommandConfig for trl_grpo::RlooConfig {
    fn validate(&self) -> Result<()> {
        self.split()?;
        Ok(())
    }
}

/// Why tokenizing a dataset failed: a bad row (its 0-based index, named by its file and line
/// in the error) or something else.
pub enum PrepareError {
    Row(usize, String),
    Other(trl_core::Error),
}

impl From<(usize, String)> for PrepareError {
    fn from((row, message): (usize, String)) -> Self {
        PrepareError::Row(row, message)
    }
}

/// Whether a training command trains, or only evaluates its data with the model (`trl eval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Evaluate,
}

/// A parsed training command: shared keys, the method's config, and the validated data.
pub struct Setup<C> {
    pub args: TrainingArguments,
    pub config: C,
    pub dataset: Dataset,
    /// The eval rows, validated like the train rows; `None` when nothing is evaluated.
    pub eval_dataset: Option<Dataset>,
    /// The (base) model's folder: its config and weights.
    pub model_dir: PathBuf,
    /// Where the tokenizer is read from: the adapter folder when `--model_name_or_path` is a
    /// peft folder holding one (a previous trl-rs or TRL run saves it there), else `model_dir`.
    pub tokenizer_dir: PathBuf,
    /// The LoRA adapter this run trains (`--use_peft`, or a peft folder as the model).
    pub adapter: Option<crate::lora::AdapterPlan>,
    pub device_spec: String,
    /// `--push_to_hub`: the repo is ready (token read, repo created) before training.
    pub hub: Option<Arc<TrainingPush>>,
    pub mode: Mode,
}

/// Parses `raw` for `command` with the method's default overrides, rejects unknown keys and
/// invalid values, refuses an output folder holding another run, loads and validates the
/// dataset for `method` and resolves the model folder.
pub fn setup<C: CommandConfig>(
    command: &str,
    raw: &[String],
    defaults: &[(&str, Value)],
    method: DataMethod,
) -> Result<Setup<C>> {
    setup_mode(command, raw, defaults, method, Mode::Train)
}

/// [`setup`] for `mode`: evaluating (`trl eval`) reads the `dataset_test_split` of a folder or
/// hub dataset (a single file whole) as the command's data, evaluates nothing during a run
/// and leaves the output folder's check out (it only receives `eval_results.json`).
pub fn setup_mode<C: CommandConfig>(
    command: &str,
    raw: &[String],
    defaults: &[(&str, Value)],
    method: DataMethod,
    mode: Mode,
) -> Result<Setup<C>> {
    let mut map: BTreeMap<String, Value> = parse_args(raw)?;
    for (key, value) in defaults {
        map.entry(key.to_string()).or_insert(value.clone());
    }
    let mut inputs: ModelAndDataArgs = take_known_keys(&mut map, command)?;
    let args: TrainingArguments = take_known_keys(&mut map, command)?;
    let config: C = take_known_keys(&mut map, command)?;
    reject_unknown_keys(&map, command)?;
    for note in inputs.check()? {
        eprintln!("{note}");
    }
    args.validate()?;
    config.validate()?;
    args.report_sinks()?;
    if mode == Mode::Train {
        check_output_dir(&args)?;
    }
    let model_id = inputs
        .model_name_or_path
        .clone()
        .context("--model_name_or_path is required")?;
    let dataset_name = inputs
        .dataset_name
        .clone()
        .context("--dataset_name is required")?;
    if mode == Mode::Evaluate && !std::path::Path::new(&dataset_name).is_file() {
        inputs.dataset_train_split = inputs.dataset_test_split.clone();
    }
    // Data first: bad rows stop the run before any model loads or any output is written.
    let data_args = DatasetArgs {
        dataset_name,
        dataset_config: inputs.dataset_config.clone(),
        dataset_train_split: inputs.dataset_train_split.clone(),
        dataset_text_field: config.text_field(),
    };
    let dataset = load_dataset(&data_args, method)?;
    let eval_dataset = match mode {
        Mode::Train => crate::eval_setup::eval_dataset(&args, &inputs, &data_args, method)?,
        Mode::Evaluate => None,
    };
    // A local peft adapter folder has no config.json: it names its base instead.
    let named_dir = if trl_core::lora::is_adapter_dir(Path::new(&model_id)) {
        PathBuf::from(&model_id)
    } else {
        trl_core::hub::resolve_model(&model_id, inputs.model_revision.as_deref())?
    };
    let (model_dir, adapter) = crate::lora::resolve(&inputs, &model_id, named_dir.clone())?;
    let tokenizer_dir = if named_dir.join("tokenizer.json").is_file() {
        named_dir
    } else {
        model_dir.clone()
    };
    // With several processes, each rank takes the GPU of its local rank (`cuda:<local_rank>`).
    let device_spec = crate::launch::rank_device(
        inputs.device.as_deref().unwrap_or(default_device_spec()),
        inputs.device.is_some(),
        world().size(),
        crate::launch::local_rank(),
    );
    let method_keys = (
        serde_json::to_value(&config)?,
        serde_json::to_value(C::default())?,
    );
    let run = run_info(
        command,
        &model_id,
        &data_args.dataset_name,
        &model_dir,
        &args,
        method_keys,
    );
    // Only rank 0 writes outputs, so only it pushes them.
    let hub = match world().is_main() {
        true => TrainingPush::start(&args, run)?,
        false => None,
    };
    Ok(Setup {
        args,
        config,
        dataset,
        eval_dataset,
        model_dir,
        tokenizer_dir,
        adapter,
        device_spec,
        hub,
        mode,
    })
}

impl<C> Setup<C> {
    /// The examples `prepare` tokenizes from this run's dataset, through the on-disk cache of
    /// `trl_core::data::token_cache`: keyed by the data files' bytes, the tokenizer folder,
    /// `recipe` (bump its version whenever the preparation changes what it produces) and
    /// `options` (every setting that changes the examples, tokenizer overrides included).
    /// `prepare` reports a bad row by its 0-based index; the error names its file and line.
    /// Says so when the examples were read back.
    pub fn cached_examples<T: Serialize + DeserializeOwned>(
        &self,
        recipe: &str,
        options: &str,
        prepare: impl FnOnce() -> std::result::Result<Vec<T>, PrepareError>,
    ) -> Result<Vec<T>> {
        self.cached_examples_of(&self.dataset, recipe, options, prepare)
    }

    pub(crate) fn cached_examples_of<T: Serialize + DeserializeOwned>(
        &self,
        dataset: &Dataset,
        recipe: &str,
        options: &str,
        prepare: impl FnOnce() -> std::result::Result<Vec<T>, PrepareError>,
    ) -> Result<Vec<T>> {
        let key = CacheKey::new(recipe)
            .data_files(dataset.files())?
            .tokenizer_dir(&self.tokenizer_dir)?
            .options(options);
        let hit = key.path::<T>().is_file();
        let examples = cached(&key, || {
            prepare().map_err(|e| match e {
                PrepareError::Row(row, message) => trl_core::Error::Data {
                    message: format!("{}: {message}", dataset.origin(row)),
                },
                PrepareError::Other(e) => e,
            })
        })?;
        if hit {
            eprintln!(
                "tokenized data: read from cache {}",
                key.path::<T>().display()
            );
        }
        Ok(examples)
    }

    /// The training device (with autodiff; with burn's gradient-checkpointing strategy when
    /// `activation_checkpointing` / `gradient_checkpointing` is on, as TRL's configs default
    /// it), mixed precision set up for it (`--bf16` / `--fp16`).
    pub fn device(&self) -> Result<Device> {
        let device = parse_device(&self.device_spec)?.autodiff();
        crate::mixed_precision::apply(&self.args, &device)?;
        let checkpointing = self
            .args
            .activation_checkpointing_or(trl_core::train::TRL_CHECKPOINTING_DEFAULT)?;
        Ok(if checkpointing {
            device.gradient_checkpointing()
        } else {
            device
        })
    }

    /// The line every training command prints before it starts: what is trained, on what.
    /// With several processes each rank prints it, naming itself (`rank R of N`).
    pub fn announce(&self, command: &str, count: usize, unit: &str, extra: &str) {
        let world = world();
        let ranks = match world.size() {
            1 => String::new(),
            _ => format!(", {} (data-parallel)", describe(world)),
        };
        eprintln!(
            "trl {command}: {count} {unit} ({} rows, format {}){extra}, model {}, device {}{ranks}",
            self.dataset.len(),
            self.dataset.format,
            self.model_dir.display(),
            self.device_spec
        );
    }

    /// Prepares the output folder (clearing a previous run with `--overwrite_output_dir
    /// true`, see `trl_core::train::output_dir`), then the progress, JSONL and TensorBoard
    /// sinks as `report_to` asks. Call it right before training starts. Only rank 0 of a
    /// data-parallel job touches the folder and logs; the other ranks wait until it is ready.
    fn logger(&self, interrupt: Arc<AtomicBool>) -> Result<RunLogger> {
        let world = world();
        if !world.is_main() {
            world.barrier();
            return Ok(RunLogger::new(None, interrupt, true));
        }
        let prepared = prepare_output_dir(&self.args);
        world.barrier();
        prepared?;
        let sinks = self.args.report_sinks()?;
        let output_dir = PathBuf::from(&self.args.output_dir);
        let jsonl = sinks
            .contains(&ReportTo::Jsonl)
            .then(|| output_dir.join("log_history.jsonl"));
        let mut logger = RunLogger::new(jsonl, interrupt, false);
        if sinks.contains(&ReportTo::Tensorboard) {
            // transformers' default logging_dir is OUTPUT_DIR/runs/...
            let log_dir = self
                .args
                .logging_dir
                .clone()
                .map(PathBuf::from)
                .unwrap_or_else(|| output_dir.join("runs"));
            logger = logger.with_tensorboard(&log_dir)?;
        }
        Ok(logger)
    }
}

impl<C> Setup<C> {
    /// Trains `method` on `examples` to the end (preparing the output folder and the log
    /// sinks first) and reports the run: the tail every training command shares.
    pub fn train<M: Method>(
        &self,
        method: &mut M,
        model: M::Model,
        examples: &[M::Example],
        device: &Device,
        interrupt: Arc<AtomicBool>,
    ) -> Result<()> {
        self.train_with_eval(method, model, examples, None, device, interrupt)
    }

    /// The tail of every offline command: trains (evaluating on `eval_examples` as the eval
    /// keys ask), or in [`Mode::Evaluate`] evaluates `model` on `examples` and reports it.
    pub fn finish<M: Method>(
        &self,
        method: &mut M,
        model: M::Model,
        examples: &[M::Example],
        eval_examples: Option<&[M::Example]>,
        device: &Device,
        interrupt: Arc<AtomicBool>,
    ) -> Result<()> {
        match self.mode {
            Mode::Train => {
                self.train_with_eval(method, model, examples, eval_examples, device, interrupt)
            }
            Mode::Evaluate => self.evaluate_only(method, &model, examples, device),
        }
    }

    /// [`Setup::train`], evaluating on `eval_examples` as the eval keys ask.
    pub fn train_with_eval<M: Method>(
        &self,
        method: &mut M,
        model: M::Model,
        examples: &[M::Example],
        eval_examples: Option<&[M::Example]>,
        device: &Device,
        interrupt: Arc<AtomicBool>,
    ) -> Result<()> {
        let mut logger = self.logger(interrupt)?;
        if let Some(hook) = self.hub.as_ref().and_then(TrainingPush::checkpoint_hook) {
            logger = logger.with_checkpoint_hook(hook);
        }
        let outcome = train_with_eval(
            method,
            model,
            examples,
            eval_examples,
            &self.args,
            device,
            &mut logger,
        )?;
        if world().is_main() {
            report(&outcome);
        }
        match &self.hub {
            Some(hub) => hub.push_final(&outcome.output_dir),
            None => Ok(()),
        }
    }

    /// [`Setup::train`] through this run's LoRA adapter when it has one: `model` is then the
    /// base with the adapter applied ([`crate::lora::AdapterPlan::apply`]), and the run saves
    /// and resumes peft folders (with `tokenizer`); `load_base` reloads the base to resume.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_adapted<M: Method>(
        &self,
        method: &mut M,
        model: M::Model,
        examples: &[M::Example],
        eval_examples: Option<&[M::Example]>,
        device: &Device,
        interrupt: Arc<AtomicBool>,
        tokenizer: &trl_core::tokenizer::Tokenizer,
        load_base: crate::lora::LoadBase<M::Model>,
    ) -> Result<()>
    where
        M::Model: trl_core::lora::Adaptable,
    {
        let Some(plan) = &self.adapter else {
            return self.finish(method, model, examples, eval_examples, device, interrupt);
        };
        let mut wrapped = crate::lora::AdapterMethod {
            inner: method,
            config: plan.config.clone(),
            base_dir: self.model_dir.clone(),
            tokenizer: tokenizer.clone(),
            load_base,
            seed: self.args.seed,
        };
        self.finish(
            &mut wrapped,
            model,
            examples,
            eval_examples,
            device,
            interrupt,
        )
    }
}

/// Prints the run's summary line and where it was saved, and draws its curves
/// (`curves.png`; a failure to draw is a warning, not a failed run).
pub fn report(outcome: &TrainOutcome) {
    if let Some(summary) = outcome.state.log_history.last() {
        eprintln!("{}", serde_json::to_string(summary).unwrap_or_default());
    }
    eprintln!("saved {}", outcome.output_dir.display());
    if let Err(err) = trl_plot::write_curves(&outcome.output_dir) {
        eprintln!("warning: no {} drawn: {err}", trl_plot::CURVES_FILE);
    }
}

/// `trl <command> --help`: the supported keys, grouped.
pub fn print_help<C: Serialize + Default>(command: &str, what: &str) {
    let keys = |list: Vec<String>| list.join(", ");
    println!(
        "trl {command}: {what}\n\n\
         usage: trl {command} [--config FILE.yaml] --model_name_or_path M --dataset_name D [--key value ...]\n\n\
         Flags override the YAML file; an unsupported key is an error.\n\n\
         model and data keys: {}\n\ntraining keys: {}\n\n{command} keys: {}",
        keys(known_keys::<ModelAndDataArgs>()),
        keys(known_keys::<TrainingArguments>()),
        keys(known_keys::<C>()),
    );
}

/// Whether the raw arguments ask for help.
pub fn wants_help(raw: &[String]) -> bool {
    raw.iter().any(|a| a == "--help" || a == "-h")
}
