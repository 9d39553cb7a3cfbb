//! The panels drawn as a grid of small line charts into a PNG, with plotters' bitmap backend
//! and an embedded DejaVu Sans font (no system fonts or libraries needed).

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::PlotError;
use crate::select::Panel;

/// The size of one panel in pixels; the image is a grid of them.
pub const PANEL_SIZE: (u32, u32) = (520, 340);

/// Panels per row (fewer when there are fewer panels).
const COLUMNS: u32 = 3;

/// Extra space above the data of a panel with a legend, as a fraction of the data's span.
const LEGEND_HEADROOM: f64 = 0.3;

/// The font family plotters is asked for; registered from the embedded DejaVu Sans.
const FONT: &str = "sans-serif";

/// Line colours, one per curve of a panel (matplotlib's first four: familiar to TRL users).
const PALETTE: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// Draws `panels` into the PNG file `path` (overwritten), sized to hold them all.
pub fn draw_png(panels: &[Panel], path: &Path) -> Result<(), PlotError> {
    let write_err = |message: String| PlotError::Write {
        path: path.to_path_buf(),
        message,
    };
    let root = BitMapBackend::new(path, image_size(panels.len())).into_drawing_area();
    draw_grid(&root, panels)?;
    root.present().map_err(|e| write_err(e.to_string()))
}

/// The `(width, height)` in pixels of a grid holding `count` panels.
pub fn image_size(count: usize) -> (u32, u32) {
    let (columns, rows) = grid(count);
    (columns * PANEL_SIZE.0, rows * PANEL_SIZE.1)
}

/// `(columns, rows)` of the grid for `count` panels.
fn grid(count: usize) -> (u32, u32) {
    let count = count.max(1) as u32;
    let columns = count.min(COLUMNS);
    (columns, count.div_ceil(columns))
}

/// Draws every panel into its cell of `root` on a white background. Generic over the
/// backend so tests can draw into memory.
pub fn draw_grid<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[Panel],
) -> Result<(), PlotError> {
    if panels.is_empty() {
        return Err(PlotError::NothingToDraw);
    }
    register_font()?;
    root.fill(&WHITE).map_err(draw_err)?;
    let (columns, rows) = grid(panels.len());
    let cells = root.split_evenly((rows as usize, columns as usize));
    for (cell, panel) in cells.iter().zip(panels) {
        draw_panel(cell, panel)?;
    }
    Ok(())
}

/// One chart: title, axes with readable tick labels, a line (with dots) per curve, and a
/// legend when there is more than one curve.
fn draw_panel<DB: DrawingBackend>(
    cell: &DrawingArea<DB, Shift>,
    panel: &Panel,
) -> Result<(), PlotError> {
    let points = || panel.lines.iter().flat_map(|l| l.points.iter().copied());
    // A little room at the ends so the first and last dots are not cut by the axes.
    let (x_lo, x_hi) = padded_range(points().map(|(x, _)| x), 0.03);
    let (y_lo, mut y_hi) = padded_range(points().map(|(_, y)| y), 0.06);
    if panel.lines.len() > 1 {
        // Headroom for the legend, so it does not hide the curves' tops.
        y_hi += (y_hi - y_lo) * LEGEND_HEADROOM;
    }
    let mut chart = ChartBuilder::on(cell)
        .caption(&panel.title, (FONT, 20))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(80)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
        .map_err(draw_err)?;
    let x_label = |x: &f64| tick_label(*x, x_lo, x_hi);
    let y_label = |y: &f64| tick_label(*y, y_lo, y_hi);
    chart
        .configure_mesh()
        .x_desc("step")
        .x_labels(6)
        .y_labels(6)
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(draw_err)?;
    for (index, line) in panel.lines.iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        // Dots keep a curve of one or a few points visible; on long runs they would blur it.
        let dots = if line.points.len() <= 40 { 3 } else { 0 };
        chart
            .draw_series(
                LineSeries::new(line.points.iter().copied(), color.stroke_width(2))
                    .point_size(dots),
            )
            .map_err(draw_err)?
            .label(line.name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(3)));
    }
    if panel.lines.len() > 1 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .draw()
            .map_err(draw_err)?;
    }
    Ok(())
}

/// The axis range around `values`, widened by `pad` of its span on each side; a single
/// value gets a range around it so it sits mid-axis.
pub fn padded_range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    if span <= f64::EPSILON * lo.abs().max(hi.abs()).max(1.0) {
        let half = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - half, hi + half);
    }
    (lo - span * pad, hi + span * pad)
}

/// A tick label on an axis spanning `lo..hi` (about six ticks): as many digits as the tick
/// spacing needs, trailing zeros dropped; scientific notation on axes of tiny or huge numbers
/// (learning rates like 2e-5).
pub fn tick_label(value: f64, lo: f64, hi: f64) -> String {
    let spacing_exponent = ((hi - lo).abs() / 6.0).log10().floor();
    if value.abs() <= (hi - lo).abs() * 1e-9 {
        return "0".to_string();
    }
    let magnitude = lo.abs().max(hi.abs());
    if !(1e-2..1e5).contains(&magnitude) {
        // Mantissa digits down to the spacing's leading digit: 1.05e-3 next to 1e-3.
        let exponent = value.abs().log10().floor();
        let digits = (exponent - spacing_exponent).clamp(0.0, 6.0) as usize;
        let text = format!("{value:.digits$e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        return format!("{}e{exponent}", trim_zeros(mantissa));
    }
    let decimals = (-spacing_exponent).clamp(0.0, 8.0) as usize;
    trim_zeros(&format!("{value:.decimals$}")).to_string()
}

/// `"0.500"` -> `"0.5"`, `"2.000"` -> `"2"`; integers unchanged.
fn trim_zeros(number: &str) -> &str {
    if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    }
}

/// Registers the embedded DejaVu Sans as plotters' sans-serif font, once per process.
fn register_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    if ok { Ok(()) } else { Err(PlotError::Font) }
}

fn draw_err(err: impl std::fmt::Display) -> PlotError {
    PlotError::Draw(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_read_well_at_every_scale() {
        assert_eq!(tick_label(0.5, 0.0, 2.0), "0.5");
        assert_eq!(tick_label(1.0, 0.0, 2.0), "1");
        assert_eq!(tick_label(12.5, 10.0, 13.0), "12.5");
        assert_eq!(tick_label(0.9598, 0.9596, 0.9602), "0.9598");
        assert_eq!(tick_label(2e-5, 0.0, 2.1e-5), "2e-5");
        assert_eq!(tick_label(1.5e-5, 0.0, 2.1e-5), "1.5e-5");
        assert_eq!(tick_label(3e-20, -1e-3, 1.0), "0");
        assert_eq!(tick_label(250000.0, 0.0, 3e5), "2.5e5");
        assert_eq!(tick_label(0.00105, 0.0009, 0.0011), "1.05e-3");
        assert_eq!(tick_label(0.001, 0.0009, 0.0011), "1e-3");
        assert_eq!(tick_label(-2.5, -3.0, 0.5), "-2.5");
    }

    #[test]
    fn ranges_pad_the_data_and_survive_a_single_value() {
        assert_eq!(padded_range([1.0, 3.0].into_iter(), 0.5), (0.0, 4.0));
        assert_eq!(padded_range([5.0].into_iter(), 0.1), (4.5, 5.5));
        assert_eq!(padded_range([0.0, 0.0].into_iter(), 0.1), (-1.0, 1.0));
        assert_eq!(padded_range(std::iter::empty(), 0.1), (0.0, 1.0));
    }

    #[test]
    fn the_grid_holds_every_panel() {
        assert_eq!(grid(1), (1, 1));
        assert_eq!(grid(3), (3, 1));
        assert_eq!(grid(8), (3, 3));
        assert_eq!(image_size(5), (3 * PANEL_SIZE.0, 2 * PANEL_SIZE.1));
    }
}
