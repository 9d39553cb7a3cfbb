//! Training curves of a run: `trainer_state.json`'s `log_history` drawn as a grid of small
//! line charts into one PNG (`OUTPUT_DIR/curves.png`), because people look at curves, not at
//! JSON. Used by `trl plot` and after every training run.
//!
//! It knows no model and no backend: it reads the JSON the HF Trainer and trl-rs both write,
//! so it also plots runs made with TRL in Python.

mod draw;
mod history;
mod select;

use std::path::{Path, PathBuf};

pub use draw::{PANEL_SIZE, draw_grid, draw_png, image_size};
pub use history::{History, STATE_FILE, Series};
pub use select::{Panel, select_panels};

/// The file every training run writes into its output folder at the end.
pub const CURVES_FILE: &str = "curves.png";

/// What can stop a plot; each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error(
        "{}: no {STATE_FILE} here; pass the output_dir of a training run (trl sft, dpo, kto \
         and reward write it when they finish, and into every checkpoint-N/)",
        dir.display()
    )]
    NoTrainerState { dir: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not valid JSON ({source})", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: has no `log_history` list; is it a trainer_state.json?", path.display())]
    NoLogHistory { path: PathBuf },
    #[error(
        "{}: log_history has no logged step to draw; train with --logging_steps N smaller than \
         the number of steps",
        path.display()
    )]
    EmptyHistory { path: PathBuf },
    #[error("this run never logged a metric named `{name}`; it logged: {}", available.join(", "))]
    UnknownMetric {
        name: String,
        available: Vec<String>,
    },
    #[error("no metric chosen to draw")]
    NothingToDraw,
    #[error("the embedded font could not be loaded")]
    Font,
    #[error("drawing the curves failed: {0}")]
    Draw(String),
    #[error("{}: could not write the image ({message})", path.display())]
    Write { path: PathBuf, message: String },
}

/// Draws the default curves of the run in `output_dir` into `output_dir/curves.png` and
/// returns that path. Training commands call it once the run is saved.
pub fn write_curves(output_dir: &Path) -> Result<PathBuf, PlotError> {
    let path = output_dir.join(CURVES_FILE);
    plot_run(output_dir, None, &path)?;
    Ok(path)
}

/// Draws the run in `output_dir` into the PNG `output`: the named `metrics` (each its own
/// panel), or the defaults for the run's method when `None`. Returns the panels drawn.
pub fn plot_run(
    output_dir: &Path,
    metrics: Option<&[String]>,
    output: &Path,
) -> Result<Vec<Panel>, PlotError> {
    let history = History::read(output_dir)?;
    let panels = select_panels(&history, metrics)?;
    draw_png(&panels, output)?;
    Ok(panels)
}

#[cfg(test)]
mod png_tests;
