//! The training engine shared by every method: arguments with transformers' names, AdamW,
//! LR schedules, the loop with gradient accumulation, logging, checkpoints and resume.

pub mod args;
pub mod args_check;
pub mod checkpoint;
pub mod logging;
pub mod metrics;
pub mod mix;
pub mod optim;
pub mod output_dir;
pub mod ref_cache;
pub mod sampler;
pub mod schedule;
pub mod state;
pub mod tensorboard;
pub mod trainer;

pub use args::{TrainingArguments, take_known_keys};
pub use logging::RunLogger;
pub use metrics::StepMetrics;
pub use trainer::{Method, TrainOutcome, train};
