//! `trl plot`: a run's logged curves as a PNG, for looking at a run without reading its JSON.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

/// Arguments of `trl plot`.
#[derive(Args, Debug)]
pub struct PlotArgs {
    /// The output_dir of a training run (or one of its checkpoint-N/ folders): the folder
    /// holding trainer_state.json.
    output_dir: PathBuf,
    /// Metrics to draw, comma-separated, each on its own panel (e.g. loss,grad_norm); default:
    /// loss, learning_rate, grad_norm and the method's own metrics.
    #[arg(long, value_delimiter = ',')]
    metrics: Vec<String>,
    /// The PNG file to write (default: OUTPUT_DIR/curves.png).
    #[arg(long)]
    output: Option<PathBuf>,
}

/// Draws the curves and says where they went and which panels they hold.
pub fn run(args: &PlotArgs) -> Result<()> {
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| args.output_dir.join(trl_plot::CURVES_FILE));
    let metrics = (!args.metrics.is_empty()).then_some(args.metrics.as_slice());
    let panels = trl_plot::plot_run(&args.output_dir, metrics, &output)?;
    let titles: Vec<&str> = panels.iter().map(|p| p.title.as_str()).collect();
    println!("wrote {} ({})", output.display(), titles.join(", "));
    Ok(())
}
