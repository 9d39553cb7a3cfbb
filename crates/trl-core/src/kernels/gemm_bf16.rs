//! `out = op(lhs) @ op(rhs)` with bf16 operands and f32 accumulation on AMX tiles: the
//! products of `--bf16 true` on the CPU backend ([`crate::precision::cpu_bf16_matmuls`]), as
//! `torch.autocast("cpu", dtype=torch.bfloat16)` runs a Trainer's linears (oneDNN's AMX
//! kernels) — except that the product stays f32 instead of being rounded to bf16 again.
//!
//! Each call packs its operands (f32 rounded to nearest-even bf16): `lhs` row by row, padded
//! to 32 rows and a multiple of 32 inner values; `rhs` in the VNNI order `tdpbf16ps` reads
//! (pairs of inner rows interleaved per column, 16 columns a block). Packing is `O(rows *
//! inner + inner * cols)` against the product's `O(rows * inner * cols)`, so weights are
//! packed at every call rather than cached across calls (the training step changes them);
//! an operand of many products in one pass (the LM head's weight, once per chunk of tokens)
//! is packed once for all of them ([`PackedRhs`]). The output is computed in tasks of 8 x 8
//! blocks of 32 x 32 (see [`GROUP`]), each block from 2 x 2 tiles ([`amx::block_32x32`]).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::amx::{self, TILE_K};
use super::buffer::written;
use super::gemm::Matrix;

/// f32 to bf16 bits, rounding to nearest even (torch's `.to(torch.bfloat16)`; NaNs stay NaN).
#[inline(always)]
pub fn to_bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// `dst[i] = to_bf16_bits(src[i])` with AVX512-BF16's conversion where the CPU has it (every
/// AMX CPU does): 16 values an instruction instead of a branchy scalar loop. `dst` may be
/// uninitialised (a packed operand's fresh buffer): every value of it is written.
fn convert_into(src: &[f32], dst: &mut [MaybeUninit<u16>]) {
    assert_eq!(src.len(), dst.len());
    if std::arch::is_x86_feature_detected!("avx512bf16") {
        // SAFETY: the feature was detected; the lengths are equal.
        unsafe { convert_avx512(src, dst) };
    } else {
        dst.iter_mut()
            .zip(src)
            .for_each(|(d, &x)| _ = d.write(to_bf16_bits(x)));
    }
}

#[target_feature(enable = "avx512f,avx512bf16")]
fn convert_avx512(src: &[f32], dst: &mut [MaybeUninit<u16>]) {
    use std::arch::x86_64::{__m256i, _mm256_storeu_si256, _mm512_cvtneps_pbh, _mm512_loadu_ps};
    let whole = src.len() / 16 * 16;
    for i in (0..whole).step_by(16) {
        // SAFETY: `i + 16 <= len` for both slices; unaligned loads and stores.
        unsafe {
            let values = _mm512_loadu_ps(src.as_ptr().add(i));
            let halves: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(values));
            _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast(), halves);
        }
    }
    for i in whole..src.len() {
        dst[i].write(to_bf16_bits(src[i]));
    }
}

/// `x` rounded to the nearest bf16, as an f32 (the tests' reference).
#[cfg(test)]
fn round_to_bf16(x: f32) -> f32 {
    f32::from_bits((to_bf16_bits(x) as u32) << 16)
}

/// Whether this CPU runs these products (AMX-BF16, granted by the kernel).
pub fn supported() -> bool {
    amx::available()
}

/// The smallest side (rows, columns or inner) worth a bf16 product: below it packing both
/// operands costs more than the tiles save (LoRA's rank-16 products stay f32).
pub const MIN_SIDE: usize = 64;

/// Whether products of `operands` are large enough for [`matmul`] (see [`MIN_SIDE`]).
pub fn worth_it(operands: &[&Matrix<'_>]) -> bool {
    operands
        .iter()
        .all(|m| m.rows >= MIN_SIDE && m.cols >= MIN_SIDE)
}

/// A matrix or its transpose: element `(r, c)` at `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    fn of(matrix: &Matrix<'a>, transposed: bool) -> Self {
        let (rows, cols, (row_stride, col_stride)) = matrix.layout(transposed);
        View {
            data: matrix.data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }
}

/// Rows and columns of the output blocks one [`amx::block_32x32`] call computes.
const BLOCK: usize = 32;

/// The padding value of a packed operand, as the packers write it.
const ZERO: MaybeUninit<u16> = MaybeUninit::new(0);

/// `lhs` `[rows, inner]` as bf16 `[rows_padded, inner_padded]`, row-major, zero padding; one
/// task per panel of [`BLOCK`] rows.
fn pack_lhs(lhs: View<'_>, rows_padded: usize, inner_padded: usize) -> Vec<u16> {
    // SAFETY: `pack_lhs_panel` writes all of its panel, padding included.
    unsafe {
        written(
            rows_padded * inner_padded,
            BLOCK * inner_padded,
            |panel, dst| {
                let first = panel * BLOCK;
                let rows = BLOCK.min(lhs.rows.saturating_sub(first));
                pack_lhs_panel(lhs, first, rows, inner_padded, dst);
            },
        )
    }
}

/// Rows `first..first + rows` of `lhs` into `dst` (a panel of [`BLOCK`] rows of
/// `inner_padded`, written in full: padding rows and columns are zeros), reading the source
/// in its own order (rows, or columns of a transposed operand).
#[inline(never)]
fn pack_lhs_panel(
    lhs: View<'_>,
    first: usize,
    rows: usize,
    inner_padded: usize,
    dst: &mut [MaybeUninit<u16>],
) {
    if rows < BLOCK || lhs.cols < inner_padded {
        dst.fill(ZERO);
    }
    if rows == 0 {
        // A padding panel: zeros.
    } else if lhs.col_stride == 1 {
        for r in 0..rows {
            let start = (first + r) * lhs.row_stride;
            let source = &lhs.data[start..start + lhs.cols];
            convert_into(source, &mut dst[r * inner_padded..][..lhs.cols]);
        }
    } else {
        // Transposed: element (r, c) at `first + r + c * col_stride`, rows contiguous.
        for c in 0..lhs.cols {
            let start = c * lhs.col_stride + first;
            let source = &lhs.data[start..start + rows];
            for (r, &x) in source.iter().enumerate() {
                dst[r * inner_padded + c].write(to_bf16_bits(x));
            }
        }
    }
}

/// `rhs` `[inner, cols]` as bf16 blocks of 16 columns, each `[inner_padded / 2][16][2]`
/// (VNNI: the two inner rows of a pair side by side per column), zero padding.
fn pack_rhs(rhs: View<'_>, cols_padded: usize, inner_padded: usize) -> Vec<u16> {
    // SAFETY: `pack_rhs_block` writes all of its block, padding included.
    unsafe {
        written(
            cols_padded * inner_padded,
            inner_padded * 16,
            |block, dst| {
                let first = block * 16;
                let cols = 16.min(rhs.cols.saturating_sub(first));
                pack_rhs_block(rhs, first, cols, dst);
            },
        )
    }
}

/// Columns `first..first + cols` (at most 16) of `rhs` into one VNNI block `dst`, written in
/// full (padding columns and inner rows are zeros).
#[inline(never)]
fn pack_rhs_block(rhs: View<'_>, first: usize, cols: usize, dst: &mut [MaybeUninit<u16>]) {
    if cols < 16 || rhs.rows * 16 < dst.len() {
        dst.fill(ZERO);
    }
    if cols == 0 {
        return; // a padding block: zeros
    }
    if rhs.col_stride == 1 && cols == 16 && pairs_supported() {
        // Whole pairs of rows, 32 values an instruction pair; an odd last row below.
        for p in 0..rhs.rows / 2 {
            let start = 2 * p * rhs.row_stride + first;
            let (upper, lower) = (
                &rhs.data[start..][..16],
                &rhs.data[start + rhs.row_stride..][..16],
            );
            // SAFETY: checked by `pairs_supported`; 16 values each, 32 slots from `p * 32`.
            unsafe { pack_pair_avx512(upper, lower, &mut dst[p * 32..][..32]) };
        }
        if rhs.rows % 2 == 1 {
            let k = rhs.rows - 1;
            let mut row = [ZERO; 16];
            convert_into(&rhs.data[k * rhs.row_stride + first..][..16], &mut row);
            for (c, &value) in row.iter().enumerate() {
                dst[(k / 2) * 32 + c * 2] = value;
            }
        }
    } else if rhs.col_stride == 1 {
        // Row `k`'s values go to the even (`k` even) or odd slots of pair row `k / 2`.
        let mut row = [ZERO; 16];
        for k in 0..rhs.rows {
            let start = k * rhs.row_stride + first;
            convert_into(&rhs.data[start..start + cols], &mut row[..cols]);
            let pair = &mut dst[(k / 2) * 32 + k % 2..];
            for (c, &value) in row[..cols].iter().enumerate() {
                pair[c * 2] = value;
            }
        }
    } else {
        // Transposed: column `c` is contiguous; its consecutive pairs are pair rows' slots.
        let mut column = vec![ZERO; rhs.rows.next_multiple_of(2)];
        for c in 0..cols {
            let start = (first + c) * rhs.col_stride;
            convert_into(&rhs.data[start..start + rhs.rows], &mut column[..rhs.rows]);
            for (p, pair) in column.chunks_exact(2).enumerate() {
                dst[p * 32 + c * 2..][..2].copy_from_slice(pair);
            }
        }
    }
}

/// Whether [`pack_pair_avx512`] runs here (every AMX CPU has these).
fn pairs_supported() -> bool {
    std::arch::is_x86_feature_detected!("avx512bf16")
        && std::arch::is_x86_feature_detected!("avx512bw")
}

/// One VNNI pair row: `dst[2c] = bf16(upper[c])`, `dst[2c + 1] = bf16(lower[c])` for 16
/// columns, by one two-vector conversion and one 16-bit permutation instead of 32 scalar
/// stores (the scalar interleave made packing a `[2048, 1024]` weight cost more than
/// multiplying by it).
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
fn pack_pair_avx512(upper: &[f32], lower: &[f32], dst: &mut [MaybeUninit<u16>]) {
    use std::arch::x86_64::{
        __m512i, _mm512_cvtne2ps_pbh, _mm512_loadu_ps, _mm512_loadu_si512,
        _mm512_permutexvar_epi16, _mm512_storeu_si512,
    };
    assert!(upper.len() == 16 && lower.len() == 16 && dst.len() == 32);
    // Lane 2c takes `upper[c]` (lane c of the conversion), lane 2c + 1 `lower[c]` (lane 16 + c).
    const INTERLEAVE: [u16; 32] = {
        let mut index = [0u16; 32];
        let mut c = 0;
        while c < 16 {
            index[2 * c] = c as u16;
            index[2 * c + 1] = 16 + c as u16;
            c += 1;
        }
        index
    };
    // SAFETY: the lengths are asserted; unaligned loads and stores.
    unsafe {
        // lanes 0..16: `upper`, lanes 16..32: `lower`
        let both: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(
            _mm512_loadu_ps(lower.as_ptr()),
            _mm512_loadu_ps(upper.as_ptr()),
        ));
        let index = _mm512_loadu_si512(INTERLEAVE.as_ptr().cast());
        _mm512_storeu_si512(
            dst.as_mut_ptr().cast(),
            _mm512_permutexvar_epi16(index, both),
        );
    }
}

/// A right-hand operand packed once for many products (the LM head's weight, used once per
/// chunk of tokens).
pub struct PackedRhs {
    data: Vec<u16>,
    inner: usize,
    cols: usize,
}

impl PackedRhs {
    /// Packs `op(rhs)` `[inner, cols]`. Needs [`supported`] before it is multiplied by.
    pub fn new(rhs: &Matrix<'_>, rhs_t: bool) -> Self {
        let rhs = View::of(rhs, rhs_t);
        let inner_padded = rhs.rows.div_ceil(TILE_K) * TILE_K;
        let cols_padded = rhs.cols.div_ceil(BLOCK) * BLOCK;
        PackedRhs {
            data: pack_rhs(rhs, cols_padded, inner_padded),
            inner: rhs.rows,
            cols: rhs.cols,
        }
    }
}

/// `out = op(lhs) @ op(rhs)` (`+ out` when `accumulate`), `out` row-major, on every core, the
/// operands rounded to bf16. Needs [`supported`].
#[cfg(test)]
pub fn matmul(
    lhs: &Matrix<'_>,
    lhs_t: bool,
    rhs: &Matrix<'_>,
    rhs_t: bool,
    out: &mut [f32],
    accumulate: bool,
) {
    matmul_packed(lhs, lhs_t, &PackedRhs::new(rhs, rhs_t), out, accumulate);
}

/// [`matmul`] with the right-hand operand packed already.
pub fn matmul_packed(
    lhs: &Matrix<'_>,
    lhs_t: bool,
    rhs: &PackedRhs,
    out: &mut [f32],
    accumulate: bool,
) {
    // SAFETY: `out` is a live, initialised slice of its length.
    unsafe { matmul_packed_to(lhs, lhs_t, rhs, (out.as_mut_ptr(), out.len()), accumulate) }
}

/// [`matmul_packed`] into `len` values from a pointer (a new buffer the product fills).
///
/// # Safety
/// `out.0` must point at `out.1` writable f32 that no other thread touches meanwhile,
/// initialised when `accumulate`.
pub unsafe fn matmul_packed_to(
    lhs: &Matrix<'_>,
    lhs_t: bool,
    rhs: &PackedRhs,
    (out, len): (*mut f32, usize),
    accumulate: bool,
) {
    assert!(supported(), "bf16 products need AMX-BF16");
    let lhs = View::of(lhs, lhs_t);
    assert_eq!(lhs.cols, rhs.inner, "inner dimensions differ");
    let (rows, cols, inner) = (lhs.rows, rhs.cols, lhs.cols);
    assert_eq!(len, rows * cols);
    if rows == 0 || cols == 0 {
        return;
    }
    let inner_padded = inner.div_ceil(TILE_K) * TILE_K;
    let packed_lhs = pack_lhs(lhs, rows.div_ceil(BLOCK) * BLOCK, inner_padded);
    let shape = ProductShape {
        rows,
        cols,
        inner_padded,
    };
    let (panels, blocks) = (rows.div_ceil(BLOCK), cols.div_ceil(BLOCK));
    let col_groups = blocks.div_ceil(GROUP);
    let out = OutPtr(out);
    (0..panels.div_ceil(GROUP) * col_groups)
        .into_par_iter()
        .for_each(|task| {
            let (row_group, col_group) = (task / col_groups, task % col_groups);
            let task = Task {
                panels: row_group * GROUP..((row_group + 1) * GROUP).min(panels),
                blocks: col_group * GROUP..((col_group + 1) * GROUP).min(blocks),
            };
            // SAFETY: the tasks' blocks of the output are disjoint and inside `out` (the
            // caller's guarantee, its length asserted).
            unsafe { run_task(&packed_lhs, &rhs.data, shape, task, out, accumulate) };
        });
}

/// Row panels and column blocks (of 32) per task: 256 x 256 outputs, whose packed operands
/// (about 0.9 MB at an inner size of 896) stay in L2 while the task runs, so that a weight
/// as large as a 151k-vocabulary LM head is read from memory once per product, not once per
/// row panel.
const GROUP: usize = 8;

/// The product's sizes: `rows x cols` outputs over `inner_padded` packed inner values.
#[derive(Clone, Copy)]
struct ProductShape {
    rows: usize,
    cols: usize,
    inner_padded: usize,
}

/// The row panels and column blocks of the output one task computes.
struct Task {
    panels: std::ops::Range<usize>,
    blocks: std::ops::Range<usize>,
}

/// The output `[rows, cols]`, shared by tasks that write disjoint blocks of it.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);

// SAFETY: only `run_task` writes through it, each task to its own blocks.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

/// One task's blocks, column block by column block, on this thread's tiles.
///
/// # Safety
/// `out` holds `rows * cols` f32 (initialised when `accumulate`) and no other thread touches
/// this task's blocks meanwhile.
#[inline(never)]
unsafe fn run_task(
    lhs: &[u16],
    rhs: &[u16],
    s: ProductShape,
    task: Task,
    out: OutPtr,
    accumulate: bool,
) {
    let block_elems = s.inner_padded * 16;
    let panel_elems = BLOCK * s.inner_padded;
    let mut tile = [0.0f32; BLOCK * BLOCK];
    // SAFETY: `supported()` was asserted by `matmul_packed`; the configuration is this thread's.
    unsafe { amx::configure() };
    for block in task.blocks {
        let b = &rhs[2 * block * block_elems..][..2 * block_elems];
        let first_col = block * BLOCK;
        let width = BLOCK.min(s.cols - first_col);
        for panel in task.panels.clone() {
            let a = &lhs[panel * panel_elems..][..panel_elems];
            let first_row = panel * BLOCK;
            let height = BLOCK.min(s.rows - first_row);
            let corner = first_row * s.cols + first_col;
            // A whole block is read and written in `out` itself; an edge block goes through
            // `tile`, then its rows inside the output are copied or added.
            let whole = height == BLOCK && width == BLOCK;
            let c = if whole {
                amx::BlockOut {
                    // SAFETY: (first_row, first_col) is inside `out` (see `# Safety`).
                    ptr: unsafe { out.0.add(corner) },
                    row_bytes: s.cols * 4,
                    accumulate,
                }
            } else {
                amx::BlockOut {
                    ptr: tile.as_mut_ptr(),
                    row_bytes: BLOCK * 4,
                    accumulate: false,
                }
            };
            // SAFETY: `a` holds 32 rows of `inner_padded` values, `b` two column blocks of
            // `block_elems`; `c` is 32 x 32 f32 of `tile`, or of this task's block of `out`
            // (all 32 rows and columns inside it, initialised when `accumulate`).
            unsafe {
                amx::block_32x32(
                    a.as_ptr(),
                    s.inner_padded * 2,
                    b.as_ptr(),
                    block_elems,
                    s.inner_padded,
                    c,
                )
            };
            if whole {
                continue;
            }
            for r in 0..height {
                let src = &tile[r * BLOCK..][..width];
                // SAFETY: row `first_row + r < rows`, columns up to `first_col + width <= cols`:
                // inside `out`, and this task's block (see `# Safety`); its values are
                // initialised when `accumulate`, and only written otherwise.
                unsafe {
                    let dst = out.0.add(corner + r * s.cols);
                    if accumulate {
                        std::slice::from_raw_parts_mut(dst, width)
                            .iter_mut()
                            .zip(src)
                            .for_each(|(d, s)| *d += s);
                    } else {
                        std::ptr::copy_nonoverlapping(src.as_ptr(), dst, width);
                    }
                }
            }
        }
    }
    // SAFETY: as `configure` above.
    unsafe { amx::release() };
}

#[cfg(test)]
mod tests {
    use super::super::gemm::{TestOperands, test_values};
    use super::*;

    #[test]
    fn rounding_to_bf16_is_to_nearest_even() {
        // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to the even one.
        assert_eq!(round_to_bf16(1.0 + 2f32.powi(-8)), 1.0);
        assert_eq!(
            round_to_bf16(1.0 + 3.0 * 2f32.powi(-8)),
            1.0 + 2.0 * 2f32.powi(-7)
        );
        assert_eq!(
            round_to_bf16(1.0 + 2f32.powi(-8) + 2f32.powi(-20)),
            1.0 + 2f32.powi(-7)
        );
        assert_eq!(round_to_bf16(-2.5), -2.5);
        assert!(round_to_bf16(f32::NAN).is_nan());
        assert_eq!(round_to_bf16(f32::INFINITY), f32::INFINITY);
        assert_eq!(to_bf16_bits(1.0), half::bf16::from_f32(1.0).to_bits());
        for x in [0.1f32, -3.7e-5, 65504.0, 1e30, -7.25] {
            assert_eq!(to_bf16_bits(x), half::bf16::from_f32(x).to_bits(), "{x}");
        }
    }

    /// The same product in f64 over operands rounded to bf16 first.
    fn reference(lhs: View<'_>, rhs: View<'_>) -> Vec<f32> {
        let at = |v: View<'_>, r: usize, c: usize| {
            round_to_bf16(v.data[r * v.row_stride + c * v.col_stride]) as f64
        };
        let mut out = vec![0.0f32; lhs.rows * rhs.cols];
        for r in 0..lhs.rows {
            for c in 0..rhs.cols {
                let sum: f64 = (0..lhs.cols).map(|k| at(lhs, r, k) * at(rhs, k, c)).sum();
                out[r * rhs.cols + c] = sum as f32;
            }
        }
        out
    }

    /// Shapes off every tile size, and one of several tasks each way (2 x 2 groups of blocks).
    #[test]
    fn amx_products_match_the_rounded_operands_product_for_every_shape_and_transpose() {
        if !supported() {
            eprintln!("skipped: this CPU has no AMX-BF16 (or Linux did not grant it)");
            return;
        }
        for &(rows, inner, cols) in &[
            (1, 1, 1),
            (33, 47, 65),
            (64, 256, 32),
            (70, 31, 17),
            (300, 40, 280),
        ] {
            for (lhs_t, rhs_t) in [(false, false), (true, false), (false, true), (true, true)] {
                let operands = TestOperands::new((rows, inner, cols), lhs_t, rhs_t);
                let (lhs, rhs) = operands.matrices();
                let expected = reference(View::of(&lhs, lhs_t), View::of(&rhs, rhs_t));
                let mut out = test_values(rows * cols, 3);
                let before = out.clone();
                matmul(&lhs, lhs_t, &rhs, rhs_t, &mut out, true);
                for (i, ((o, e), b)) in out.iter().zip(&expected).zip(&before).enumerate() {
                    let want = e + b;
                    assert!(
                        (o - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{rows}x{inner}x{cols} {lhs_t} {rhs_t} [{i}]: {o} vs {want}"
                    );
                }
                matmul(&lhs, lhs_t, &rhs, rhs_t, &mut out, false);
                let worst = out
                    .iter()
                    .zip(&expected)
                    .map(|(o, e)| (o - e).abs())
                    .fold(0.0, f32::max);
                assert!(
                    worst <= 1e-5 * inner as f32,
                    "{rows}x{inner}x{cols}: {worst}"
                );
            }
        }
    }
}
