//! End-to-end: a training run leaves `curves.png` in its output folder, and `trl plot` redraws
//! chosen curves or says clearly why it cannot.

mod common;

use std::path::Path;

use common::{text, trl};

/// `(width, height)` from the PNG signature and IHDR chunk of `path`; panics when no PNG.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is no PNG",
        path.display()
    );
    assert_eq!(&bytes[12..16], b"IHDR");
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

#[test]
fn a_training_run_draws_its_curves_and_trl_plot_redraws_chosen_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let out_str = out.to_str().unwrap();
    let run = trl(&[
        "sft",
        "--model_name_or_path",
        "fixtures/models/tiny-qwen2",
        "--dataset_name",
        "datasets/messages.jsonl",
        "--output_dir",
        out_str,
        "--per_device_train_batch_size",
        "4",
        "--learning_rate",
        "1e-3",
        "--max_steps",
        "4",
        "--logging_steps",
        "1",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(
        !text(&run).contains("warning: no curves.png"),
        "{}",
        text(&run)
    );
    // SFT's default panels: loss, learning_rate, grad_norm, mean_token_accuracy, entropy.
    let curves = out.join("curves.png");
    assert_eq!(png_size(&curves), (3 * 520, 2 * 340));

    std::fs::remove_file(&curves).unwrap();
    let plot = trl(&["plot", out_str, "--metrics", "loss"]);
    assert!(plot.status.success(), "{}", text(&plot));
    assert!(text(&plot).contains("(loss)"), "{}", text(&plot));
    assert_eq!(png_size(&curves), (520, 340));

    let chosen = tmp.path().join("two.png");
    let plot = trl(&[
        "plot",
        out_str,
        "--metrics",
        "grad_norm,num_tokens",
        "--output",
        chosen.to_str().unwrap(),
    ]);
    assert!(plot.status.success(), "{}", text(&plot));
    assert_eq!(png_size(&chosen), (2 * 520, 340));

    let unknown = trl(&["plot", out_str, "--metrics", "loss,rewards/margins"]);
    assert!(!unknown.status.success());
    let message = text(&unknown);
    assert!(
        message.contains("never logged a metric named `rewards/margins`")
            && message.contains("it logged: ")
            && message.contains("grad_norm")
            && message.contains("mean_token_accuracy"),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
}

#[test]
fn plot_of_a_folder_without_a_run_fails_with_a_message() {
    let empty = tempfile::tempdir().unwrap();
    let out = trl(&["plot", empty.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let message = text(&out);
    assert!(
        message.contains("error: ") && message.contains("no trainer_state.json here"),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
    assert!(!empty.path().join("curves.png").exists());

    let missing = trl(&["plot", "no/such/run"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("no trainer_state.json here"),
        "{}",
        text(&missing)
    );
}

#[test]
fn plot_of_a_history_with_only_the_summary_says_to_log_steps() {
    let dir = tempfile::tempdir().unwrap();
    let state = r#"{"log_history": [{"train_runtime": 1.0, "train_loss": 2.0, "step": 4}]}"#;
    std::fs::write(dir.path().join("trainer_state.json"), state).unwrap();
    let out = trl(&["plot", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no logged step to draw"),
        "{}",
        text(&out)
    );
}
