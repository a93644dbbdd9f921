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
//! M = Bᵀ, x = A's row and y = C's row. A product of depth 1, C = α·a·bᵀ + β·C, is an
//! outer product and has its own loop, [`rank1`], for the same reason.
//!
//! The AVX-512 and AVX2 versions read the contiguous axis a vector at a time: four rows at
//! once against one load of x when rows are contiguous, or eight vectors of y held in
//! registers down the columns when columns are. They add in a different order from the
//! portable loops (more partial sums), so their results may differ in the last bits; the
//! tests compare both with the naive product on values whose sums are exact.

use super::packed::update;
use super::{Kernel, MatRef};

/// y ← α·M·x + β·y, where x(p) = `x[p·inc_x]` and y(i) = `y[i·inc_y]`, with `kernel`'s
/// SIMD loops where it has them and the matrix has a contiguous axis; otherwise the
/// portable loops. β = 0 ignores y's old values.
///
/// # Panics
/// When an index falls outside `M`'s, `x`'s or `y`'s slice.
pub(super) fn gemv_with(
    kernel: Kernel,
    alpha: f32,
    mat: MatRef<f32>,
    (x, inc_x): (&[f32], usize),
    beta: f32,
    y: (&mut [f32], usize),
) {
    let (len, depth) = (mat.rows, mat.cols);
    let copy: Vec<f32>;
    let xs = if inc_x == 1 {
        &x[..depth]
    } else {
        copy = (0..depth).map(|p| x[p * inc_x]).collect();
        &copy
    };
    // The last elements of M and y that the loops touch, to check once.
    let last = (len.max(1) - 1) * mat.rs + (depth.max(1) - 1) * mat.cs;
    assert!(
        len == 0 || depth == 0 || last < mat.data.len(),
        "gemv: matrix view reaches outside its slice"
    );
    assert!(
        len == 0 || (len - 1) * y.1 < y.0.len(),
        "gemv: y is too short"
    );
    let mut out = Out { y, alpha, beta };
    #[cfg(target_arch = "x86_64")]
    if matches!(kernel, Kernel::Avx512 | Kernel::Avx2) && (mat.cs == 1 || mat.rs == 1) {
        if depth == 0 {
            (0..len).for_each(|i| out.put(i, 0.0));
            return;
        }
        // SAFETY: the CPU runs `kernel` (the caller checked `is_available`); every element
        // read, (i, p) for i < len and p < depth, lies at or before `last`, which is inside
        // the slice, and `xs` holds depth values.
        unsafe {
            match (kernel, mat.cs == 1) {
                (Kernel::Avx512, true) => x86::rows_avx512(mat, xs, &mut out),
                (Kernel::Avx512, false) => x86::columns_avx512(mat, xs, &mut out),
                (_, true) => x86::rows_avx2(mat, xs, &mut out),
                (_, false) => x86::columns_avx2(mat, xs, &mut out),
            }
        }
        return;
    }
    let _ = kernel;
    if mat.rs == 1 && len > 1 {
        by_columns(mat, xs, &mut out);
    } else {
        (0..len).for_each(|i| out.put(i, dot_row(mat, i, xs)));
    }
}

/// Where the loops put each finished dot product t(i): y(i) ← α·t(i) + β·y(i).
struct Out<'a> {
    y: (&'a mut [f32], usize),
    alpha: f32,
    beta: f32,
}

impl Out<'_> {
    #[inline(always)]
    fn put(&mut self, i: usize, t: f32) {
        let y_i = &mut self.y.0[i * self.y.1];
        *y_i = update(self.beta, *y_i, self.alpha * t);
    }
}

/// C ← α·a·bᵀ + β·C for a product of depth 1: c(i, j) = α·(a(i)·b(j)) + β·c(i, j), with
/// a(i) = `a.0[i·a.1]`, b(j) = `b.0[j·b.1]` and C row-major `m × n` with row stride `ldc`.
/// The same arithmetic as a packed tile of depth 1, so the result matches it to the bit.
///
/// # Panics
/// When an index falls outside a slice.
pub(super) fn rank1(
    kernel: Kernel,
    alpha: f32,
    (a, inc_a): (&[f32], usize),
    (b, inc_b): (&[f32], usize),
    beta: f32,
    (c, ldc): (&mut [f32], usize),
    (m, n): (usize, usize),
) {
    let copy: Vec<f32>;
    let b = if inc_b == 1 {
        &b[..n]
    } else {
        copy = (0..n).map(|j| b[j * inc_b]).collect();
        &copy
    };
    for i in 0..m {
        let (a_i, row) = (a[i * inc_a], &mut c[i * ldc..i * ldc + n]);
        #[cfg(target_arch = "x86_64")]
        if kernel == Kernel::Avx512 || kernel == Kernel::Avx2 {
            // SAFETY: the CPU runs `kernel`, so it has AVX2 and FMA (the caller checked
            // `is_available`); the function only reads and writes the slices it is given.
            unsafe { x86::rank1_row_fma(alpha, a_i, b, beta, row) };
            continue;
        }
        rank1_row(alpha, a_i, b, beta, row);
    }
    let _ = kernel;
}

/// One row of [`rank1`]: row(j) ← α·(a_i·b(j)) + β·row(j).
#[inline(always)]
fn rank1_row(alpha: f32, a_i: f32, b: &[f32], beta: f32, row: &mut [f32]) {
    if beta == 0.0 {
        for (c, &b_j) in row.iter_mut().zip(b) {
            *c = alpha * (a_i * b_j);
        }
    } else {
        for (c, &b_j) in row.iter_mut().zip(b) {
            *c = beta.mul_add(*c, alpha * (a_i * b_j));
        }
    }
}

/// Partial sums per dot product: enough independent chains for the vector units, and a
/// fixed number, so the order of additions depends on the shape only.
const LANES: usize = 8;

/// M·x for column-major M (contiguous columns): the columns scaled by x(p) and summed, p
/// ascending, so that the inner loop runs down a contiguous column.
fn by_columns(mat: MatRef<f32>, x: &[f32], out: &mut Out) {
    let len = mat.rows;
    let mut acc = vec![0.0f32; len];
    for (p, &x_p) in x.iter().enumerate() {
        let col = &mat.data[p * mat.cs..p * mat.cs + len];
        for (a, &m) in acc.iter_mut().zip(col) {
            *a += m * x_p;
        }
    }
    acc.into_iter().enumerate().for_each(|(i, t)| out.put(i, t));
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
    crate::kernels::pairwise_sum(part)
}

/// Defines `rows_$w` and `columns_$w`, the matrix-vector loops for one vector width, with
/// that width's intrinsics (the AVX-512 and AVX2 versions are the same loops).
#[cfg(target_arch = "x86_64")]
macro_rules! simd_gemv {
    (
        $rows:ident, $columns:ident;
        features = $feat:literal,
        width = $w:expr,
        zero = $zero:path,
        splat = $splat:path,
        load = $load:path,
        store = $store:path,
        add = $add:path,
        fma = $fma:path $(,)?
    ) => {
        /// t(i) = Σₚ M(i, p)·x(p) for M with contiguous rows (cs = 1): four rows at a time
        /// against one load of x, two vector partial sums per row, then the rest of each row
        /// one value at a time; each t(i) goes to `out`.
        ///
        /// # Safety
        /// The CPU has the features above; M's elements (i, p) for i < mat.rows,
        /// p < x.len() lie inside `mat.data`.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $rows(mat: MatRef<f32>, x: &[f32], out: &mut Out) {
            const W: usize = $w;
            let (len, depth, rs) = (mat.rows, x.len(), mat.rs);
            let (m, xp) = (mat.data.as_ptr(), x.as_ptr());
            let whole = depth / (2 * W) * (2 * W);
            for i0 in (0..len).step_by(4) {
                let rows = (len - i0).min(4);
                let mut acc = [[$zero(); 2]; 4];
                for p in (0..whole).step_by(2 * W) {
                    let xv = [$load(xp.add(p)), $load(xp.add(p + W))];
                    for (r, acc) in acc.iter_mut().enumerate().take(rows) {
                        let row = m.add((i0 + r) * rs + p);
                        acc[0] = $fma($load(row), xv[0], acc[0]);
                        acc[1] = $fma($load(row.add(W)), xv[1], acc[1]);
                    }
                }
                for (r, acc) in acc.iter().enumerate().take(rows) {
                    let row = m.add((i0 + r) * rs);
                    let mut lanes = [0.0f32; W];
                    $store(lanes.as_mut_ptr(), $add(acc[0], acc[1]));
                    let mut sum = crate::kernels::pairwise_sum(lanes);
                    for p in whole..depth {
                        sum = (*row.add(p)).mul_add(x[p], sum);
                    }
                    out.put(i0 + r, sum);
                }
            }
        }

        /// t = Σₚ x(p)·M(·, p) for M with contiguous columns (rs = 1): blocks of eight
        /// vectors of t held in registers while the loop runs down the columns, p
        /// ascending; the rows past the last whole vector one at a time.
        ///
        /// # Safety
        /// As the rows version.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $columns(mat: MatRef<f32>, x: &[f32], out: &mut Out) {
            const W: usize = $w;
            let (len, cs) = (mat.rows, mat.cs);
            let m = mat.data.as_ptr();
            let whole = len / W * W;
            for i0 in (0..whole).step_by(8 * W) {
                let vecs = ((whole - i0) / W).min(8);
                let mut acc = [$zero(); 8];
                for (p, &x_p) in x.iter().enumerate() {
                    let (xv, col) = ($splat(x_p), m.add(p * cs + i0));
                    for (v, acc) in acc.iter_mut().enumerate().take(vecs) {
                        *acc = $fma($load(col.add(v * W)), xv, *acc);
                    }
                }
                let mut t = [0.0f32; 8 * W];
                for (v, acc) in acc.iter().enumerate().take(vecs) {
                    $store(t.as_mut_ptr().add(v * W), *acc);
                }
                for (o, &t) in t.iter().enumerate().take(vecs * W) {
                    out.put(i0 + o, t);
                }
            }
            for i in whole..len {
                let t = x
                    .iter()
                    .enumerate()
                    .fold(0.0, |s, (p, &x_p)| (*m.add(p * cs + i)).mul_add(x_p, s));
                out.put(i, t);
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::MatRef;
    use super::Out;

    /// [`super::rank1_row`] compiled with FMA, so that the compiler vectorises it and its
    /// `mul_add` is one instruction.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rank1_row_fma(
        alpha: f32,
        a_i: f32,
        b: &[f32],
        beta: f32,
        row: &mut [f32],
    ) {
        super::rank1_row(alpha, a_i, b, beta, row)
    }

    simd_gemv! {
        rows_avx512, columns_avx512;
        features = "avx512f,avx2,fma",
        width = 16,
        zero = _mm512_setzero_ps,
        splat = _mm512_set1_ps,
        load = _mm512_loadu_ps,
        store = _mm512_storeu_ps,
        add = _mm512_add_ps,
        fma = _mm512_fmadd_ps,
    }

    simd_gemv! {
        rows_avx2, columns_avx2;
        features = "avx2,fma",
        width = 8,
        zero = _mm256_setzero_ps,
        splat = _mm256_set1_ps,
        load = _mm256_loadu_ps,
        store = _mm256_storeu_ps,
        add = _mm256_add_ps,
        fma = _mm256_fmadd_ps,
    }
}
