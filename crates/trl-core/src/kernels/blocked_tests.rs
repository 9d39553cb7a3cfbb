//! The blocked ops against the composed reference on autodiff over flex, through the same
//! extension node wgpu and cuda record (comparisons in `blocked_check.rs`).

use burn::tensor::Device;

use super::blocked_attention::{BLOCK_SCORE_ELEMENTS, rows_per_block};
use super::blocked_check::{ATTENTION_CASES, HEAD_CASES, attention_differences, head_differences};

const WHAT: [&str; 4] = ["out", "grad q", "grad k", "grad v"];

#[test]
fn blocked_attention_matches_the_composed_values_and_gradients() {
    let device = Device::flex().autodiff();
    for case in ATTENTION_CASES {
        let diffs = attention_differences(case, &device);
        for (what, diff) in WHAT.iter().zip(diffs) {
            assert!(diff < 2e-5, "{what}: {diff} ({case:?})");
        }
    }
}

#[test]
fn rows_per_block_bounds_the_score_block() {
    assert_eq!(rows_per_block(4, 14, 512), 512);
    let rows = rows_per_block(4, 14, 8192);
    assert!(
        rows < 8192 && 4 * 14 * rows * 8192 <= BLOCK_SCORE_ELEMENTS,
        "{rows}"
    );
    assert_eq!(rows_per_block(64, 64, 1 << 20), 1);
}

#[test]
fn chunked_head_matches_the_composed_values_and_gradients() {
    let device = Device::flex().autodiff();
    for case in HEAD_CASES {
        let diffs = head_differences(case, &device);
        for (i, diff) in diffs.into_iter().enumerate() {
            assert!(diff < 2e-5, "column {i}: {diff} ({case:?})");
        }
    }
}
