//! The training engine shared by every method: arguments with transformers' names, AdamW,
//! LR schedules, the data order, the loop with gradient accumulation, logging, checkpoints
//! and resume.

pub mod args;
pub mod args_check;
pub mod checkpoint;
mod checkpointing;
pub mod collective;
pub mod data_order;
pub mod data_parallel;
pub mod eval;
mod eval_args;
mod eval_loop;
pub mod eval_shard;
pub mod gather;
mod kernel_pool;
pub mod logging;
pub mod loss_scale;
pub mod method;
pub mod metrics;
pub mod mix;
pub mod optim;
pub mod output_dir;
pub mod plan;
pub mod ref_cache;
pub mod ref_sync;
mod resume;
mod run_state;
pub mod sampler;
pub mod schedule;
pub mod state;
pub mod step;
mod summary;
pub mod tensorboard;
pub mod trainer;

pub use args::{TrainingArguments, take_known_keys};
pub use checkpointing::TRL_CHECKPOINTING_DEFAULT;
pub use data_order::{RepeatSampler, Sampler};
pub use eval::{EvalSummary, evaluate};
pub use logging::RunLogger;
pub use method::{EvalContext, Method, PreparedStep, StepContext};
pub use metrics::StepMetrics;
pub use trainer::{TrainOutcome, train, train_with_eval};
