//! The image itself: a PNG of the expected size is written for a real run's history, and it
//! has curves and text on it, not just a background.

use std::path::Path;

use super::*;

/// An output folder holding TRL 1.16's `log_history` of a reference case as its
/// `trainer_state.json`.
fn run_folder(case: &str) -> tempfile::TempDir {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/expected")
        .join(case);
    let case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let state = serde_json::json!({ "global_step": 8, "log_history": case["log_history"] });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(STATE_FILE), state.to_string()).unwrap();
    dir
}

/// `(width, height)` from a PNG's signature and IHDR chunk, or `None` when it is no PNG.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    if bytes.len() < 24 || bytes[..8] != SIGNATURE || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    Some((word(16), word(20)))
}

#[test]
fn write_curves_writes_a_png_sized_for_its_panels() {
    let dir = run_folder("dpo/sigmoid.json");
    let path = write_curves(dir.path()).unwrap();
    assert_eq!(path, dir.path().join(CURVES_FILE));
    let bytes = std::fs::read(&path).unwrap();
    // DPO's default: loss, learning_rate, grad_norm, 4 reward panels (chosen & rejected
    // share one), mean_token_accuracy, entropy: 8 panels on a 3 x 3 grid.
    assert_eq!(png_size(&bytes), Some(image_size(8)));
    assert_eq!(image_size(8), (3 * PANEL_SIZE.0, 3 * PANEL_SIZE.1));
}

#[test]
fn the_png_has_curves_and_text_on_a_white_background() {
    let dir = run_folder("sft/messages.json");
    let output = dir.path().join("loss.png");
    let panels = plot_run(dir.path(), Some(&["loss".to_string()]), &output).unwrap();
    assert_eq!(panels.len(), 1);
    let image = image::open(&output).unwrap().to_rgb8();
    assert_eq!(image.dimensions(), PANEL_SIZE);
    let pixels: Vec<[u8; 3]> = image.pixels().map(|p| p.0).collect();
    let white = pixels.iter().filter(|p| **p == [255, 255, 255]).count();
    let blue = pixels.iter().filter(|p| **p == [31, 119, 180]).count();
    let dark = pixels.iter().filter(|p| p.iter().all(|c| *c < 100)).count();
    assert!(
        white > pixels.len() / 2,
        "background: {white} of {} pixels white",
        pixels.len()
    );
    // The loss line (2 px wide across the panel), and the axes, ticks and title text.
    assert!(blue > 400, "only {blue} pixels of the loss line's colour");
    assert!(dark > 500, "only {dark} dark pixels: no axes or text?");
}

#[test]
fn a_folder_without_a_run_is_an_error_not_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let err = write_curves(dir.path()).unwrap_err();
    assert!(matches!(err, PlotError::NoTrainerState { .. }), "{err}");
    assert!(
        err.to_string().contains("no trainer_state.json here"),
        "{err}"
    );
    assert!(!dir.path().join(CURVES_FILE).exists());
}
