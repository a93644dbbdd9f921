//! Matrix-vector products: the GEMMs with one row or one column of C.
//!
//! With n = 1 (or m = 1) every element of A (or B) is used once, so packing it would cost
//! as much as the product. These read the matrix in place instead, along whichever of its
//! axes is contiguous:
//!
//! ```text
//! y ← α·M·x + β·y        M: len × depth, x: depth, y: len
//! ```
//!
//! where for C = A·B with n = 1, M = A, x = B's column and y = C's column; with m = 1,
//! M = Bᵀ, x = A's row and y = C's row.

use super::packed::update;
use super::MatRef;

/// Partial sums per dot product: enough independent chains for the vector units, and a
/// fixed number, so the order of additions depends on the shape only.
const LANES: usize = 8;

/// y ← α·M·x + β·y, where x(p) = `x[p·inc_x]` and y(i) = `y[i·inc_y]`. β = 0 ignores y's
/// old values.
///
/// # Panics
/// When an index falls outside `M`'s, `x`'s or `y`'s slice.
pub(super) fn gemv(
    alpha: f32,
    mat: MatRef<f32>,
    (x, inc_x): (&[f32], usize),
    beta: f32,
    (y, inc_y): (&mut [f32], usize),
) {
    let (len, depth) = (mat.rows, mat.cols);
    let x: Vec<f32> = (0..depth).map(|p| x[p * inc_x]).collect();
    let products = if mat.rs == 1 && len > 1 {
        by_columns(mat, &x)
    } else {
        (0..len).map(|i| dot_row(mat, i, &x)).collect()
    };
    for (i, t) in products.into_iter().enumerate() {
        let y_i = &mut y[i * inc_y];
        *y_i = update(beta, *y_i, alpha * t);
    }
}

/// M·x for column-major M (contiguous columns): the columns scaled by x(p) and summed, p
/// ascending, so that the inner loop runs down a contiguous column.
fn by_columns(mat: MatRef<f32>, x: &[f32]) -> Vec<f32> {
    let len = mat.rows;
    let mut acc = vec![0.0f32; len];
    for (p, &x_p) in x.iter().enumerate() {
        let col = &mat.data[p * mat.cs..p * mat.cs + len];
        for (a, &m) in acc.iter_mut().zip(col) {
            *a += m * x_p;
        }
    }
    acc
}

/// Row i of M times x, in [`LANES`] partial sums (p mod LANES), added pairwise at the end.
fn dot_row(mat: MatRef<f32>, i: usize, x: &[f32]) -> f32 {
    let mut part = [0.0f32; LANES];
    let start = i * mat.rs;
    if mat.cs == 1 {
        let row = &mat.data[start..start + x.len()];
        let (rows, xs) = (row.chunks_exact(LANES), x.chunks_exact(LANES));
        let (row_tail, x_tail) = (rows.remainder(), xs.remainder());
        for (r, v) in rows.zip(xs) {
            for l in 0..LANES {
                part[l] += r[l] * v[l];
            }
        }
        for (l, (&r, &v)) in row_tail.iter().zip(x_tail).enumerate() {
            part[l] += r * v;
        }
    } else {
        for (p, &x_p) in x.iter().enumerate() {
            part[p % LANES] += mat.data[start + p * mat.cs] * x_p;
        }
    }
    let [p0, p1, p2, p3, p4, p5, p6, p7] = part;
    ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7))
}
