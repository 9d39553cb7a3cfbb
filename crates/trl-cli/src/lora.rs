//! LoRA in the training commands (TRL's `--use_peft` and `ModelConfig` lora keys): which
//! adapter a run trains, the adapter-aware [`Method`] wrapper that saves and resumes peft
//! folders, and the reference model of the preference and online methods under LoRA.
//!
//! - `--use_peft` on a base model: a fresh adapter (peft's init); the reference (DPO, KTO,
//!   GRPO/RLOO with `beta != 0`) is the base with adapters switched off, sharing its tensors.
//! - `--model_name_or_path ADAPTER_DIR` (a peft folder, its `adapter_config.json` naming the
//!   base): that adapter trains further; the reference is the starting policy (base + the
//!   adapter as loaded, frozen), as TRL's "ref" adapter copy. With `--use_peft` too, TRL
//!   asks to merge first; trl-rs continues the folder's adapter and says so.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use serde_json::Value;
use trl_core::lora::{self, Adaptable, LoraConfig, TargetModules, TaskType, is_adapter_dir};
use trl_core::model::read_config;
use trl_core::tokenizer::Tokenizer;
use trl_core::train::method::EvalContext;
use trl_core::train::{Method, PreparedStep, Sampler, StepContext, StepMetrics, TrainingArguments};

use crate::model_args::ModelAndDataArgs;

/// Where a run's adapter comes from.
#[derive(Debug, Clone)]
pub enum AdapterSource {
    /// `--use_peft`: attached fresh to the base.
    Fresh,
    /// A peft folder given as `--model_name_or_path`.
    Saved(PathBuf),
}

/// The adapter a run trains: its config and where it comes from.
#[derive(Debug, Clone)]
pub struct AdapterPlan {
    pub config: LoraConfig,
    pub source: AdapterSource,
}

/// Resolves `model_dir` (what `--model_name_or_path` named): a peft folder gives its base
/// folder and the adapter; `--use_peft` gives a fresh adapter over `model_dir`.
pub fn resolve(
    inputs: &ModelAndDataArgs,
    model_id: &str,
    model_dir: PathBuf,
) -> Result<(PathBuf, Option<AdapterPlan>)> {
    if is_adapter_dir(&model_dir) {
        let config = LoraConfig::read(&model_dir)?;
        let base_id = &config.base_model_name_or_path;
        let base = trl_core::hub::resolve_model(base_id, None).with_context(|| {
            format!(
                "{}: base_model_name_or_path {base_id:?} (from adapter_config.json)",
                model_dir.display()
            )
        })?;
        if inputs.use_peft {
            eprintln!(
                "note: --model_name_or_path is a peft adapter: training it further with its own \
                 adapter_config.json (the --lora_* flags do not apply; TRL would ask to merge it first)"
            );
        }
        let plan = AdapterPlan {
            config,
            source: AdapterSource::Saved(model_dir),
        };
        return Ok((base, Some(plan)));
    }
    if !inputs.use_peft {
        return Ok((model_dir, None));
    }
    let config = config_from_flags(inputs, model_id)?;
    let family = read_config(&model_dir)?.family;
    let config = LoraConfig {
        target_modules: match &inputs.lora_target_modules {
            None => LoraConfig::default_targets(family),
            Some(_) => config.target_modules,
        },
        ..config
    };
    Ok((
        model_dir,
        Some(AdapterPlan {
            config,
            source: AdapterSource::Fresh,
        }),
    ))
}

/// The folder holding the `config.json` that describes `dir`'s model: `dir` itself, or for a
/// peft adapter folder its base model's folder.
pub fn model_config_dir(dir: &Path) -> Result<PathBuf> {
    if !is_adapter_dir(dir) || dir.join("config.json").is_file() {
        return Ok(dir.to_path_buf());
    }
    let config = LoraConfig::read(dir)?;
    trl_core::hub::resolve_model(&config.base_model_name_or_path, None).with_context(|| {
        format!(
            "{}: base_model_name_or_path {:?} (from adapter_config.json)",
            dir.display(),
            config.base_model_name_or_path
        )
    })
}

/// TRL's `get_peft_config`: the LoRA settings of `--use_peft` and the `--lora_*` flags.
fn config_from_flags(inputs: &ModelAndDataArgs, model_id: &str) -> Result<LoraConfig> {
    if inputs.use_dora {
        bail!(
            "--use_dora true: DoRA is not supported by trl-rs (use plain LoRA, --use_dora false)"
        );
    }
    if inputs.lora_r == 0 {
        bail!("--lora_r must be a positive integer (got 0)");
    }
    if !(0.0..1.0).contains(&inputs.lora_dropout) {
        bail!(
            "--lora_dropout must be in [0, 1) (got {})",
            inputs.lora_dropout
        );
    }
    let names = |key: &str, value: &Option<Value>| -> Result<Vec<String>> {
        match value {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(s
                .split(',')
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .with_context(|| format!("--{key}: {v} is not a module name"))
                })
                .collect(),
            Some(other) => bail!("--{key}: {other} is not a module name or a list of them"),
        }
    };
    let target_modules = match &inputs.lora_target_modules {
        // One value that is not a list of names: peft reads a string as a regular expression
        // the whole module path must match (TRL passes a single value on as a string).
        Some(Value::String(pattern)) if is_pattern(pattern) => TargetModules::regex(pattern)
            .map_err(|e| anyhow::anyhow!("--lora_target_modules: {e}"))?,
        value => match names("lora_target_modules", value)? {
            targets if targets == ["all-linear"] => TargetModules::AllLinear,
            targets => TargetModules::Names(targets),
        },
    };
    Ok(LoraConfig {
        r: inputs.lora_r,
        lora_alpha: inputs.lora_alpha,
        lora_dropout: inputs.lora_dropout,
        target_modules,
        exclude_modules: None,
        layers: Default::default(),
        modules_to_save: names("lora_modules_to_save", &inputs.lora_modules_to_save)?,
        use_rslora: inputs.use_rslora,
        task_type: TaskType::parse(&inputs.lora_task_type)?,
        base_model_name_or_path: model_id.to_string(),
    })
}

/// Whether a `--lora_target_modules` value is a regular expression rather than module names
/// (names, commas and spaces only otherwise).
fn is_pattern(value: &str) -> bool {
    !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-,. ".contains(c))
}

impl AdapterPlan {
    /// A sequence-classification adapter (reward models): `SEQ_CLS`, with the fresh `score`
    /// head trained in full and saved with the adapter, as peft adds it for that task.
    pub fn for_sequence_classification(mut self) -> Self {
        self.config.task_type = TaskType::SeqCls;
        if !self.config.modules_to_save.iter().any(|m| m == "score") {
            self.config.modules_to_save.push("score".into());
        }
        self
    }

    /// `base` with this plan's adapter: fresh, or loaded from its folder. A fresh adapter's
    /// `lora_A` is drawn after seeding the device with `seed` (the run's `--seed`), so a run
    /// is reproducible; the dropout masks then continue that stream.
    pub fn apply<M: Adaptable>(&self, base: M, device: &Device, seed: u64) -> Result<M> {
        Ok(match &self.source {
            AdapterSource::Fresh => {
                device.seed(seed);
                lora::attach_new(base, &self.config, device)?
            }
            AdapterSource::Saved(dir) => lora::load_adapter(base, &self.config, dir, device)?,
        })
    }

    /// The reference model of `policy` (just built by [`AdapterPlan::apply`]): the base with
    /// adapters off for a fresh adapter, the starting policy frozen for a loaded one. Both
    /// share the base tensors with `policy`.
    pub fn reference<M: Adaptable>(&self, policy: &M) -> Result<M> {
        Ok(match &self.source {
            AdapterSource::Fresh => lora::without_adapters(policy)?,
            AdapterSource::Saved(_) => policy.clone().no_grad(),
        })
    }

    /// What tells reference log-probs of this plan apart in the on-disk cache: nothing for a
    /// fresh adapter (the reference is the base), the adapter file's bytes for a loaded one.
    pub fn reference_key(&self) -> Result<String> {
        match &self.source {
            AdapterSource::Fresh => Ok(String::new()),
            AdapterSource::Saved(dir) => {
                let path = dir.join(lora::ADAPTER_FILE);
                let bytes = std::fs::read(&path).with_context(|| path.display().to_string())?;
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut hasher);
                Ok(format!("|adapter:{:016x}", hasher.finish()))
            }
        }
    }
}

/// Loads a base model of the method's kind from a folder (for resuming an adapter run).
pub type LoadBase<Model> = Box<dyn Fn(&Path, &Device) -> trl_core::Result<Model> + Send>;

/// A method trained through a LoRA adapter: everything is the inner method's, except that
/// the model is saved as a peft folder (adapter + config + tokenizer) and resumed from one.
pub struct AdapterMethod<'a, M: Method> {
    pub inner: &'a mut M,
    pub config: LoraConfig,
    pub base_dir: PathBuf,
    pub tokenizer: Tokenizer,
    pub load_base: LoadBase<M::Model>,
    /// The run's `--seed`: with the step number it seeds the device before each step, so the
    /// adapters' dropout masks depend on the step alone and a resumed run draws the same ones.
    pub seed: u64,
}

/// The device seed of optimizer step `step`.
fn step_seed(seed: u64, step: u64) -> u64 {
    trl_core::train::sampler::derived_seed(seed, step, 0)
}

impl<M: Method> Method for AdapterMethod<'_, M>
where
    M::Model: Adaptable,
{
    type Model = M::Model;
    type Example = M::Example;
    type Batch = M::Batch;

    fn sampler(&self, args: &TrainingArguments) -> Sampler {
        self.inner.sampler(args)
    }

    fn loader_batch_size(&self, args: &TrainingArguments) -> usize {
        self.inner.loader_batch_size(args)
    }

    fn prepare(
        &mut self,
        model: &Self::Model,
        micro_batches: &[Vec<&Self::Example>],
        ctx: &StepContext,
    ) -> trl_core::Result<PreparedStep<Self::Batch>> {
        ctx.device.seed(step_seed(self.seed, ctx.step));
        self.inner.prepare(model, micro_batches, ctx)
    }

    fn items_in(&self, batch: &Self::Batch) -> f64 {
        self.inner.items_in(batch)
    }

    fn loss(
        &self,
        model: &Self::Model,
        batch: &Self::Batch,
        items_in_update: f64,
    ) -> trl_core::Result<(Tensor<1>, StepMetrics)> {
        self.inner.loss(model, batch, items_in_update)
    }

    fn after_step(&mut self, model: &Self::Model, step: u64) -> trl_core::Result<()> {
        self.inner.after_step(model, step)
    }

    fn save_model(&self, model: &Self::Model, dir: &Path) -> trl_core::Result<()> {
        lora::save_adapter(model, &self.config, dir)?;
        self.tokenizer.save(dir)
    }

    fn load_model(&self, dir: &Path, device: &Device) -> trl_core::Result<Self::Model> {
        let base = (self.load_base)(&self.base_dir, device)?;
        let config = LoraConfig::read(dir)?;
        lora::load_adapter(base, &config, dir, device)
    }

    fn save_state(&self, dir: &Path) -> trl_core::Result<()> {
        self.inner.save_state(dir)
    }

    fn save_rank_state(&self, dir: &Path, rank: usize) -> trl_core::Result<()> {
        self.inner.save_rank_state(dir, rank)
    }

    fn load_state(&mut self, dir: &Path, device: &Device) -> trl_core::Result<()> {
        self.inner.load_state(dir, device)
    }

    fn supports_eval(&self) -> bool {
        self.inner.supports_eval()
    }

    fn eval_model(&self, model: &Self::Model) -> Self::Model {
        self.inner.eval_model(model)
    }

    fn eval_sampler(&self) -> Sampler {
        self.inner.eval_sampler()
    }

    fn eval_batch(
        &mut self,
        model: &Self::Model,
        examples: &[&Self::Example],
        ctx: &EvalContext,
    ) -> trl_core::Result<(f64, StepMetrics)> {
        self.inner.eval_batch(model, examples, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(targets: Option<Value>) -> ModelAndDataArgs {
        ModelAndDataArgs {
            use_peft: true,
            lora_target_modules: targets,
            ..ModelAndDataArgs::default()
        }
    }

    #[test]
    fn flags_give_trl_defaults_and_parse_target_lists() {
        let config = config_from_flags(&inputs(None), "m").unwrap();
        assert_eq!(
            (config.r, config.lora_alpha, config.lora_dropout),
            (16, 32.0, 0.05)
        );
        assert_eq!(config.scaling(), 2.0);
        let all = config_from_flags(&inputs(Some("all-linear".into())), "m").unwrap();
        assert_eq!(all.target_modules, TargetModules::AllLinear);
        let list = Value::from(vec!["q_proj", "o_proj"]);
        let named = config_from_flags(&inputs(Some(list)), "m").unwrap();
        assert_eq!(
            named.target_modules,
            TargetModules::Names(vec!["q_proj".into(), "o_proj".into()])
        );
        let pattern = r".*\.layers\.[01]\..*(q|v)_proj";
        let regex = config_from_flags(&inputs(Some(pattern.into())), "m").unwrap();
        assert_eq!(regex.target_modules, TargetModules::regex(pattern).unwrap());
        assert!(regex.targets("model.layers.1.self_attn.v_proj"));
        assert!(!regex.targets("model.layers.2.self_attn.v_proj"));
        let bad = config_from_flags(&inputs(Some("(q_proj".into())), "m").unwrap_err();
        assert!(format!("{bad:#}").contains("--lora_target_modules"));
    }

    #[test]
    fn dora_and_bad_values_are_clear_errors() {
        let dora = ModelAndDataArgs {
            use_dora: true,
            ..inputs(None)
        };
        assert!(
            config_from_flags(&dora, "m")
                .unwrap_err()
                .to_string()
                .contains("DoRA")
        );
        let task = ModelAndDataArgs {
            lora_task_type: "SEQ_2_SEQ_LM".into(),
            ..inputs(None)
        };
        assert!(
            config_from_flags(&task, "m")
                .unwrap_err()
                .to_string()
                .contains("SEQ_2_SEQ_LM")
        );
        let rank = ModelAndDataArgs {
            lora_r: 0,
            ..inputs(None)
        };
        assert!(
            config_from_flags(&rank, "m")
                .unwrap_err()
                .to_string()
                .contains("lora_r")
        );
    }
}
