//! Bounds-checked matrix views over slices and `C ← α·A·B + β·C` on them (the `gemm` crate's
//! packed, runtime-dispatched kernels, single-threaded: callers parallelize over rows).

/// A read-only strided matrix view: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// A mutable row-major matrix view with a row stride (columns contiguous).
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
}

/// Panics unless a `rows × cols` view with these strides lies inside `len` elements (a caller
/// bug, not bad input).
fn assert_fits(len: usize, rows: usize, cols: usize, row_stride: usize, col_stride: usize) {
    let extent = if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * row_stride + (cols - 1) * col_stride + 1
    };
    assert!(
        extent <= len,
        "matrix view {rows}×{cols} (strides {row_stride}, {col_stride}) exceeds {len} elements"
    );
}

impl<'a> MatRef<'a> {
    /// A strided view; panics when it would reach past `data` (a caller bug, not bad input).
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        assert_fits(data.len(), rows, cols, row_stride, col_stride);
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// The row-major `rows × cols` matrix held in `data`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transpose of this view (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
}

impl<'a> MatMut<'a> {
    /// The row-major `rows × cols` matrix held in `data`, rows `row_stride` apart.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        assert!(
            cols <= row_stride || rows <= 1,
            "row stride {row_stride} below {cols} columns"
        );
        assert_fits(data.len(), rows, cols, row_stride, 1);
        Self {
            data,
            rows,
            cols,
            row_stride,
        }
    }

    /// The row-major `rows × cols` matrix held in `data`.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols.max(1))
    }
}

/// `c ← alpha · a · b + beta · c` (with `beta = 0`, `c`'s old contents are ignored, NaN included).
pub fn gemm(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: MatMut<'_>) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    assert_eq!((a.rows, b.cols), (c.rows, c.cols), "output shape differs");
    if c.rows == 0 || c.cols == 0 {
        return;
    }
    if a.cols == 0 {
        for i in 0..c.rows {
            for v in &mut c.data[i * c.row_stride..i * c.row_stride + c.cols] {
                *v = if beta == 0.0 { 0.0 } else { beta * *v };
            }
        }
        return;
    }
    // SAFETY: every view was checked at construction to lie inside its slice (`assert_fits`), the
    // shapes agree (asserted above), and `c` is borrowed mutably, so it aliases neither input.
    // (The crate's own names are the other way round: dst ← alpha·dst + beta·lhs·rhs.)
    unsafe {
        gemm::gemm(
            c.rows,
            c.cols,
            a.cols,
            c.data.as_mut_ptr(),
            1,
            c.row_stride as isize,
            beta != 0.0,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            beta,
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f32> {
        let mut out = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                for k in 0..a.cols {
                    out[i * b.cols + j] += a.data[i * a.row_stride + k * a.col_stride]
                        * b.data[k * b.row_stride + j * b.col_stride];
                }
            }
        }
        out
    }

    #[test]
    fn gemm_matches_the_naive_product_with_transposes_and_beta() {
        let a: Vec<f32> = (0..5 * 7).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..7 * 3).map(|i| (i as f32 * 0.11).cos()).collect();
        let (ma, mb) = (MatRef::row_major(&a, 5, 7), MatRef::row_major(&b, 7, 3));
        let expect = naive(ma, mb);
        let mut c = vec![1.0f32; 15];
        gemm(2.0, ma, mb, 0.5, MatMut::row_major(&mut c, 5, 3));
        for (got, want) in c.iter().zip(&expect) {
            assert!((got - (2.0 * want + 0.5)).abs() < 1e-5);
        }
        // (Aᵀ)ᵀ through a transposed view of a column-major copy
        let at: Vec<f32> = (0..7 * 5).map(|i| a[(i % 5) * 7 + i / 5]).collect();
        let mut c2 = vec![f32::NAN; 15];
        gemm(
            1.0,
            MatRef::row_major(&at, 7, 5).t(),
            mb,
            0.0,
            MatMut::row_major(&mut c2, 5, 3),
        );
        for (got, want) in c2.iter().zip(&expect) {
            assert!((got - want).abs() < 1e-5);
        }
    }

    #[test]
    #[should_panic(expected = "exceeds")]
    fn a_view_past_its_slice_is_refused() {
        let data = [0.0f32; 5];
        let _ = MatRef::row_major(&data, 2, 3);
    }
}
