//! General matrix multiply, C ← α·A·B + β·C, on the `matrixmultiply` crate.
//!
//! Operands are described by [`MatRef`]: a slice plus row and column strides, so a transposed
//! operand is the same buffer with its strides swapped — no copy. Large products are split
//! into fixed blocks of rows of C and run on rayon, each block a single-threaded GEMM.

use rayon::prelude::*;

use crate::element::Float;

/// A read-only matrix view: element (i, j) is `data[i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    /// The underlying buffer.
    pub data: &'a [T],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Row stride, in elements.
    pub rs: usize,
    /// Column stride, in elements.
    pub cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A row-major `rows × cols` view.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose, as a view (strides swapped, nothing moved).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Rows `start..start + len` of this view.
    fn rows_range(self, start: usize, len: usize) -> Self {
        let off = start * self.rs;
        MatRef {
            data: &self.data[off.min(self.data.len())..],
            rows: len,
            ..self
        }
    }

    /// True when every element index lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// Element types with a SIMD GEMM kernel.
pub trait GemmScalar: Sized {
    /// C ← α·A·B + β·C for an `m × n` row-major C with row stride `ldc`.
    fn gemm_serial(
        alpha: Self,
        a: MatRef<Self>,
        b: MatRef<Self>,
        beta: Self,
        c: &mut [Self],
        ldc: usize,
    );
}

macro_rules! impl_gemm {
    ($t:ty, $f:path) => {
        impl GemmScalar for $t {
            fn gemm_serial(
                alpha: Self,
                a: MatRef<Self>,
                b: MatRef<Self>,
                beta: Self,
                c: &mut [Self],
                ldc: usize,
            ) {
                let (m, k, n) = (a.rows, a.cols, b.cols);
                assert!(
                    a.in_bounds() && b.in_bounds(),
                    "gemm: operand view out of bounds"
                );
                assert!(
                    m == 0 || n == 0 || (m - 1) * ldc + n <= c.len(),
                    "gemm: C too small"
                );
                if m == 0 || n == 0 {
                    return;
                }
                // SAFETY: the asserts above prove that every (i, j) read from A and B and every
                // element written to C lies inside its slice; C is borrowed mutably, so no other
                // view aliases it; strides fit in isize because they index existing slices.
                unsafe {
                    $f(
                        m,
                        k,
                        n,
                        alpha,
                        a.data.as_ptr(),
                        a.rs as isize,
                        a.cs as isize,
                        b.data.as_ptr(),
                        b.rs as isize,
                        b.cs as isize,
                        beta,
                        c.as_mut_ptr(),
                        ldc as isize,
                        1,
                    )
                }
            }
        }
    };
}

impl_gemm!(f32, matrixmultiply::sgemm);
impl_gemm!(f64, matrixmultiply::dgemm);

/// Rows of C per parallel task. Fixed, so the split (and the result) does not depend on the
/// number of threads.
const ROW_BLOCK: usize = 64;
/// Products smaller than this many multiply-adds run on one thread.
const PAR_FLOPS: usize = 1 << 22;

/// C ← α·A·B + β·C where C is row-major `a.rows × b.cols`.
///
/// # Panics
/// When the inner sizes differ or C has the wrong length.
#[track_caller]
pub fn gemm<T: Float + GemmScalar>(alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: &mut [T]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if k != b.rows {
        crate::shape::shape_panic("gemm", &[m, k], &[b.rows, n], "inner sizes differ");
    }
    assert_eq!(c.len(), m * n, "gemm: C must be {m} × {n}");
    if m * n * k < PAR_FLOPS || m <= ROW_BLOCK {
        T::gemm_serial(alpha, a, b, beta, c, n);
        return;
    }
    c.par_chunks_mut(ROW_BLOCK * n)
        .enumerate()
        .for_each(|(blk, c_blk)| {
            let rows = c_blk.len() / n;
            T::gemm_serial(
                alpha,
                a.rows_range(blk * ROW_BLOCK, rows),
                b,
                beta,
                c_blk,
                n,
            );
        });
}

/// The naive triple loop, kept as the test oracle and as the version to read first:
/// C[i][j] ← α·Σₖ A[i][k]·B[k][j] + β·C[i][j].
pub fn gemm_naive<T: Float>(alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: &mut [T]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    for i in 0..m {
        for j in 0..n {
            let mut acc = T::ZERO;
            for p in 0..k {
                acc += a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs];
            }
            let old = if beta == T::ZERO {
                T::ZERO
            } else {
                beta * c[i * n + j]
            };
            c[i * n + j] = alpha * acc + old;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(n: usize, seed: usize) -> Vec<f64> {
        (0..n)
            .map(|i| ((i * 7 + seed * 13) % 11) as f64 - 5.0)
            .collect()
    }

    #[test]
    fn matches_naive_in_every_layout() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 2),
            (17, 9, 33),
            (130, 7, 65),
            (200, 64, 90),
        ] {
            let a = ints(m * k, 1);
            let b = ints(k * n, 2);
            let at = ints(m * k, 1); // read as k × m then transposed
            let bt = ints(k * n, 2);
            let cases = [
                (MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n)),
                (
                    MatRef::row_major(&at, k, m).t(),
                    MatRef::row_major(&b, k, n),
                ),
                (
                    MatRef::row_major(&a, m, k),
                    MatRef::row_major(&bt, n, k).t(),
                ),
                (
                    MatRef::row_major(&at, k, m).t(),
                    MatRef::row_major(&bt, n, k).t(),
                ),
            ];
            for (av, bv) in cases {
                let mut fast = vec![1.0; m * n];
                let mut slow = vec![1.0; m * n];
                gemm(2.0, av, bv, 0.5, &mut fast);
                gemm_naive(2.0, av, bv, 0.5, &mut slow);
                assert_eq!(fast, slow, "m={m} k={k} n={n}");
            }
        }
    }
}
