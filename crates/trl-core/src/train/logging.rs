//! Where a run reports: a progress bar with tokens/s and ETA on a terminal (plain lines
//! otherwise), `log_history` lines as JSONL with `report_to jsonl`, TensorBoard scalars with
//! `report_to tensorboard`, and a Ctrl-C flag.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use super::state::LogEntry;
use super::tensorboard::TensorBoardWriter;
use crate::{Error, Result};

/// Called with each regular checkpoint folder once it is written (`push_to_hub`'s
/// `hub_strategy`); an error stops the run.
pub type CheckpointHook = Box<dyn FnMut(&Path) -> Result<()>>;

/// Reports progress and metrics of one run.
pub struct RunLogger {
    checkpoint_hook: Option<CheckpointHook>,
    bar: Option<ProgressBar>,
    jsonl: Option<PathBuf>,
    tensorboard: Option<TensorBoardWriter>,
    interrupt: Arc<AtomicBool>,
    started: Instant,
    tokens: f64,
    quiet: bool,
}

impl RunLogger {
    /// A logger; `jsonl` receives every log entry as a line; `interrupt` is set by a Ctrl-C
    /// handler installed by the binary.
    pub fn new(jsonl: Option<PathBuf>, interrupt: Arc<AtomicBool>, quiet: bool) -> Self {
        RunLogger {
            checkpoint_hook: None,
            bar: None,
            jsonl,
            tensorboard: None,
            interrupt,
            started: Instant::now(),
            tokens: 0.0,
            quiet,
        }
    }

    /// Also writes every log entry's numbers as TensorBoard scalars (`train/<name>`) under
    /// `log_dir` (`report_to tensorboard`).
    pub fn with_tensorboard(mut self, log_dir: &Path) -> Result<Self> {
        self.tensorboard = Some(TensorBoardWriter::create(log_dir)?);
        Ok(self)
    }

    /// Also calls `hook` after each regular checkpoint (not the one Ctrl-C writes).
    pub fn with_checkpoint_hook(mut self, hook: CheckpointHook) -> Self {
        self.checkpoint_hook = Some(hook);
        self
    }

    /// A checkpoint was written to `dir`: runs the hook, if any.
    pub fn checkpoint_saved(&mut self, dir: &Path) -> Result<()> {
        match &mut self.checkpoint_hook {
            Some(hook) => hook(dir),
            None => Ok(()),
        }
    }

    /// A logger that prints nothing (tests, library use).
    pub fn silent() -> Self {
        Self::new(None, Arc::new(AtomicBool::new(false)), true)
    }

    /// Starts the progress display at `first_step` of `total_steps`.
    pub fn start(&mut self, total_steps: u64, first_step: u64) {
        self.started = Instant::now();
        if !self.quiet && std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total_steps);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_position(first_step);
            self.bar = Some(bar);
        }
    }

    /// One optimizer step done.
    pub fn progress(&mut self, step: u64, tokens: f64, loss: f64) {
        self.tokens += tokens;
        let rate = self.tokens / self.started.elapsed().as_secs_f64().max(1e-9);
        if let Some(bar) = &self.bar {
            bar.set_position(step);
            bar.set_message(format!("loss {loss:.4} | {rate:.0} tok/s"));
        }
    }

    /// A log entry: printed (plain line or above the bar) and appended to the JSONL file.
    pub fn log(&mut self, entry: &LogEntry) -> Result<()> {
        let line = serde_json::to_string(entry).unwrap_or_default();
        if !self.quiet {
            match &self.bar {
                Some(bar) => bar.println(&line),
                None => eprintln!("{line}"),
            }
        }
        if let Some(writer) = &mut self.tensorboard {
            let step = entry.get("step").and_then(|v| v.as_i64()).unwrap_or(0);
            let scalars: Vec<(String, f64)> = entry
                .iter()
                .filter(|(name, _)| name.as_str() != "step")
                .filter_map(|(name, value)| Some((name.clone(), value.as_f64()?)))
                .collect();
            writer.add_scalars(step, &scalars)?;
        }
        if let Some(path) = &self.jsonl {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            writeln!(file, "{line}").map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    }

    /// A free-form note (resume, saves).
    pub fn note(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// Whether Ctrl-C was pressed.
    pub fn interrupted(&self) -> bool {
        self.interrupt.load(Ordering::SeqCst)
    }

    /// Closes the progress bar.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }
}
