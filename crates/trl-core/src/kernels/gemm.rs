//! Strided f32 matrix products through the `gemm` crate (the GEMM burn's flex backend uses).

/// `dst[rows x cols] = beta * lhs[rows x inner] @ rhs[inner x cols] (+ dst when accumulate)`,
/// every matrix given by its pointer and (row, column) strides, on one thread (callers
/// parallelise over independent products).
///
/// # Safety
/// Every element the dimensions and strides reach from each pointer must be inside one live
/// allocation, and no other thread may write the elements of `dst` meanwhile.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub unsafe fn small_gemm(
    dims: (usize, usize, usize),
    dst: *mut f32,
    dst_strides: (usize, usize),
    accumulate: bool,
    lhs: *const f32,
    lhs_strides: (usize, usize),
    rhs: *const f32,
    rhs_strides: (usize, usize),
    beta: f32,
) {
    let parallelism = gemm::Parallelism::None;
    let operands = (
        dst,
        dst_strides,
        accumulate,
        lhs,
        lhs_strides,
        rhs,
        rhs_strides,
    );
    // SAFETY: forwarded to the caller (see `# Safety`).
    unsafe { run(dims, operands, beta, parallelism) }
}

/// A row-major `[rows, cols]` matrix in a slice.
#[derive(Clone, Copy)]
pub struct Matrix<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
}

impl Matrix<'_> {
    /// `(rows, cols, (row stride, column stride))` of the matrix or of its transpose, read
    /// from this matrix's slice.
    pub(super) fn layout(&self, transposed: bool) -> (usize, usize, (usize, usize)) {
        assert_eq!(self.data.len(), self.rows * self.cols);
        if transposed {
            (self.cols, self.rows, (1, self.cols))
        } else {
            (self.rows, self.cols, (self.cols, 1))
        }
    }

    /// (pointer, (row stride, column stride), rows, cols) of the matrix or of its transpose.
    fn operand(&self, transposed: bool) -> (*const f32, (usize, usize), usize, usize) {
        let (rows, cols, strides) = self.layout(transposed);
        (self.data.as_ptr(), strides, rows, cols)
    }
}

/// `out = op(lhs) @ op(rhs)` (`+ out` when `accumulate`) with `op` an optional transpose,
/// `out` row-major, on every core: the large products of fused layers (in bf16 on AMX tiles
/// under [`crate::precision::cpu_bf16_matmuls`] when every side is at least
/// `gemm_bf16::MIN_SIDE`).
pub fn matmul(
    lhs: &Matrix<'_>,
    lhs_t: bool,
    rhs: &Matrix<'_>,
    rhs_t: bool,
    out: &mut [f32],
    accumulate: bool,
) {
    // SAFETY: `out` is a live, initialised slice of its length.
    unsafe {
        matmul_to(
            lhs,
            lhs_t,
            rhs,
            rhs_t,
            (out.as_mut_ptr(), out.len()),
            accumulate,
        )
    }
}

/// `op(lhs) @ op(rhs)` as a new row-major `[rows, cols]` buffer that the product writes
/// directly: no zeroing pass first, which on a LoRA step's `[tokens, inter]` outputs cost as
/// much as a tenth of the step.
pub fn product(lhs: &Matrix<'_>, lhs_t: bool, rhs: &Matrix<'_>, rhs_t: bool) -> Vec<f32> {
    let (rows, inner, _) = lhs.layout(lhs_t);
    let cols = rhs.layout(rhs_t).1;
    let len = rows * cols;
    if inner == 0 {
        return vec![0.0; len];
    }
    let mut out = Vec::with_capacity(len);
    // SAFETY: `out` has room for `len` values; a product that does not accumulate never
    // reads them.
    unsafe { matmul_to(lhs, lhs_t, rhs, rhs_t, (out.as_mut_ptr(), len), false) };
    // SAFETY: with `inner > 0` the product wrote every one of the `len` values.
    unsafe { out.set_len(len) };
    out
}

/// [`matmul`] into `len` values from a pointer.
///
/// # Safety
/// `out.0` must point at `out.1` writable f32 that no other thread touches meanwhile,
/// initialised when `accumulate`.
unsafe fn matmul_to(
    lhs: &Matrix<'_>,
    lhs_t: bool,
    rhs: &Matrix<'_>,
    rhs_t: bool,
    out: (*mut f32, usize),
    accumulate: bool,
) {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    if in_bf16(&[lhs, rhs]) {
        let packed = super::gemm_bf16::PackedRhs::new(rhs, rhs_t);
        // SAFETY: forwarded to the caller.
        unsafe { super::gemm_bf16::matmul_packed_to(lhs, lhs_t, &packed, out, accumulate) };
        return;
    }
    // SAFETY: forwarded to the caller.
    unsafe { matmul_f32_to(lhs, lhs_t, rhs, rhs_t, out, accumulate) };
}

/// [`matmul_to`] in f32 through the `gemm` crate.
///
/// # Safety
/// As [`matmul_to`].
unsafe fn matmul_f32_to(
    lhs: &Matrix<'_>,
    lhs_t: bool,
    rhs: &Matrix<'_>,
    rhs_t: bool,
    (out, len): (*mut f32, usize),
    accumulate: bool,
) {
    let (lp, ls, rows, inner) = lhs.operand(lhs_t);
    let (rp, rs, inner_r, cols) = rhs.operand(rhs_t);
    assert_eq!(inner, inner_r, "inner dimensions differ");
    assert_eq!(len, rows * cols);
    let operands = (out, (cols, 1), accumulate, lp, ls, rp, rs);
    // SAFETY: `operand` checked that each matrix fills its slice exactly and `out` holds
    // `rows * cols` values (the caller's guarantee, the length asserted), so every element
    // the strides reach is in memory we hold; the gemm crate reads `out` only to accumulate.
    unsafe {
        run(
            (rows, cols, inner),
            operands,
            1.0,
            gemm::Parallelism::Rayon(0),
        )
    };
}

/// Whether products of `operands` run in bf16 on AMX tiles: `--bf16` on such a CPU, and every
/// side at least `gemm_bf16::MIN_SIDE`.
fn in_bf16(operands: &[&Matrix<'_>]) -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    return crate::precision::cpu_bf16_matmuls()
        && super::gemm_bf16::supported()
        && super::gemm_bf16::worth_it(operands);
    #[allow(unreachable_code)]
    {
        let _ = operands;
        false
    }
}

/// A right-hand operand of many products with different left-hand sides (the LM head's weight,
/// once per chunk of tokens): packed for bf16 tiles once, when they run.
pub struct PreparedRhs<'a> {
    matrix: Matrix<'a>,
    transposed: bool,
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    packed: Option<super::gemm_bf16::PackedRhs>,
}

impl<'a> PreparedRhs<'a> {
    /// `op(matrix)`, packed when a product of at least `gemm_bf16::MIN_SIDE` rows would run in
    /// bf16.
    pub fn new(matrix: Matrix<'a>, transposed: bool) -> Self {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        let packed =
            in_bf16(&[&matrix]).then(|| super::gemm_bf16::PackedRhs::new(&matrix, transposed));
        PreparedRhs {
            matrix,
            transposed,
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            packed,
        }
    }
}

/// [`matmul`] with a [`PreparedRhs`].
pub fn matmul_prepared(
    lhs: &Matrix<'_>,
    lhs_t: bool,
    rhs: &PreparedRhs<'_>,
    out: &mut [f32],
    accumulate: bool,
) {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    if let Some(packed) = &rhs.packed
        && in_bf16(&[lhs, &rhs.matrix])
    {
        super::gemm_bf16::matmul_packed(lhs, lhs_t, packed, out, accumulate);
        return;
    }
    // f32: `rhs` was not packed because it is too small for bf16, or `lhs` is.
    matmul(lhs, lhs_t, &rhs.matrix, rhs.transposed, out, accumulate);
}

type Operands = (
    *mut f32,
    (usize, usize),
    bool,
    *const f32,
    (usize, usize),
    *const f32,
    (usize, usize),
);

/// # Safety
/// As [`small_gemm`].
#[inline(always)]
unsafe fn run(
    (rows, cols, inner): (usize, usize, usize),
    (dst, ds, accumulate, lhs, ls, rhs, rs): Operands,
    beta: f32,
    parallelism: gemm::Parallelism,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    // SAFETY: the caller guarantees every element the strides reach is in bounds.
    unsafe {
        gemm::gemm(
            rows,
            cols,
            inner,
            dst,
            ds.1 as isize,
            ds.0 as isize,
            accumulate,
            lhs,
            ls.1 as isize,
            ls.0 as isize,
            rhs,
            rs.1 as isize,
            rs.0 as isize,
            1.0,
            beta,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// Test operands shared by this module's and `gemm_bf16`'s tests: `op(lhs)` `[rows, inner]` and
/// `op(rhs)` `[inner, cols]` stored transposed where asked, with values in [-1, 1).
#[cfg(test)]
pub(super) struct TestOperands {
    a: Vec<f32>,
    b: Vec<f32>,
    lhs_dims: (usize, usize),
    rhs_dims: (usize, usize),
}

#[cfg(test)]
impl TestOperands {
    pub fn new((rows, inner, cols): (usize, usize, usize), lhs_t: bool, rhs_t: bool) -> Self {
        TestOperands {
            a: test_values(rows * inner, 1),
            b: test_values(inner * cols, 2),
            lhs_dims: if lhs_t { (inner, rows) } else { (rows, inner) },
            rhs_dims: if rhs_t { (cols, inner) } else { (inner, cols) },
        }
    }

    /// The stored left and right matrices.
    pub fn matrices(&self) -> (Matrix<'_>, Matrix<'_>) {
        let matrix = |data, (rows, cols)| Matrix { data, rows, cols };
        (
            matrix(&self.a, self.lhs_dims),
            matrix(&self.b, self.rhs_dims),
        )
    }
}

/// `len` deterministic values in [-1, 1).
#[cfg(test)]
pub(super) fn test_values(len: usize, salt: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 7919 + salt * 104_729) % 2003) as f32 / 1001.0) - 1.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{TestOperands, matmul, product};

    /// `product`'s fresh buffer holds what `matmul` writes over zeros, for every transpose and
    /// an empty inner dimension (whose product is all zeros, not whatever the memory held).
    #[test]
    fn a_product_into_a_new_buffer_equals_matmul_over_zeros() {
        for (rows, inner, cols) in [(7, 5, 3), (70, 33, 65), (4, 0, 6)] {
            for (lhs_t, rhs_t) in [(false, false), (true, false), (false, true), (true, true)] {
                let operands = TestOperands::new((rows, inner, cols), lhs_t, rhs_t);
                let (lhs, rhs) = operands.matrices();
                let mut expected = vec![0.0f32; rows * cols];
                matmul(&lhs, lhs_t, &rhs, rhs_t, &mut expected, false);
                let got = product(&lhs, lhs_t, &rhs, rhs_t);
                assert_eq!(got, expected, "{rows}x{inner}x{cols} {lhs_t} {rhs_t}");
            }
        }
    }
}
