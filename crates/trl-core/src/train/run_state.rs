//! The loop's bookkeeping between optimizer steps: the trainer state, the optimizer, and
//! what the next log line averages.

use super::args::TrainingArguments;
use super::loss_scale::LossScale;
use super::metrics::MetricWindow;
use super::optim::AdamWState;
use super::plan::Plan;
use super::state::TrainerState;
use super::step::StepReport;

/// The loop's bookkeeping between steps: state, optimizer, what the next log line averages.
pub(super) struct RunState {
    pub state: TrainerState,
    pub optimizer: AdamWState,
    pub window: MetricWindow,
    pub loss_since_log: f64,
    pub steps_since_log: u64,
    pub total_loss: f64,
    /// Tokens trained on so far (TRL's `num_tokens`); kept in `trainer_state.json` as
    /// `num_input_tokens_seen`, from which a resumed run continues it.
    pub total_tokens: f64,
}

impl RunState {
    /// A fresh run of `plan`: step 0, empty optimizer, nothing logged.
    pub fn new(args: &TrainingArguments, plan: &Plan) -> Self {
        let logging_steps = TrainingArguments::interval(args.logging_steps, plan.total_steps);
        let save_steps = TrainingArguments::interval(args.save_steps, plan.total_steps);
        RunState {
            state: TrainerState {
                max_steps: plan.total_steps,
                logging_steps,
                eval_steps: args.resolved_eval_steps(plan.total_steps),
                save_steps,
                num_train_epochs: plan.epochs,
                train_batch_size: args.per_device_train_batch_size,
                is_local_process_zero: true,
                is_world_process_zero: true,
                ..TrainerState::default()
            },
            optimizer: AdamWState {
                loss_scale: args.fp16.then(LossScale::default),
                ..AdamWState::default()
            },
            window: MetricWindow::default(),
            loss_since_log: 0.0,
            steps_since_log: 0,
            total_loss: 0.0,
            total_tokens: 0.0,
        }
    }

    /// Adds a finished step to the running totals.
    pub fn record(&mut self, report: &StepReport) {
        self.total_tokens += report.tokens;
        self.state.num_input_tokens_seen = self.total_tokens.round() as u64;
        // A non-finite loss (an fp16 overflow: the step was skipped) counts as the average of
        // the steps since the last log, as the HF Trainer's `logging_nan_inf_filter` does.
        let loss = match report.loss.is_finite() {
            true => report.loss,
            false => self.loss_since_log / (1 + self.steps_since_log) as f64,
        };
        self.loss_since_log += loss;
        self.steps_since_log += 1;
        self.total_loss += loss;
    }
}
