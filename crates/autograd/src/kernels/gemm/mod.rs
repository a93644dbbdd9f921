//! General matrix multiply, C ← α·A·B + β·C.
//!
//! ```text
//! C[i][j] ← α · Σₚ A[i][p] · B[p][j] + β · C[i][j]      A: m × k, B: k × n, C: m × n
//! ```
//!
//! Operands are described by [`MatRef`]: a slice plus a row and a column stride, so a
//! transposed operand is the same buffer with its strides swapped — no copy. C is row-major
//! with row stride `ldc`. When β = 0, C is only written, never read (NaN in C is ignored).
//!
//! # How it is computed
//!
//! - [`gemm_naive`]: the triple loop, the version to read first and the oracle of the tests.
//! - f32: a packed GEMM laid out like BLIS (`packed.rs`): five numbered loops copy A and B
//!   into panels that a micro-kernel reads contiguously, whatever their strides, so A·Bᵀ
//!   and Aᵀ·B cost what A·B costs. One micro-kernel per instruction set — AVX-512F 8 × 32,
//!   AVX2 + FMA 4 × 16, portable Rust 4 × 8 — written once as a macro over the vector type
//!   (`simd_tile.rs`). Products with one row or one column of C skip packing and run as
//!   matrix-vector products (`gemv.rs`).
//! - f64 (used by gradient checks only) runs on the `matrixmultiply` crate.
//!
//! [`sgemm_with`] is the one dispatch point. [`Kernel::selected`] picks the micro-kernel once
//! per process from the CPU's features; passing another [`Kernel`] is how the tests run the
//! portable kernel on machines with AVX-512, and how the benchmark compares against
//! `matrixmultiply`. Measured on one Zen 3 core at every W1 and W2 shape and layout and on
//! squares, the packed kernel matched or beat `matrixmultiply` everywhere (by 1.1–1.4× on
//! most, 1.3× on A·Bᵀ), and on an Ice Lake server core the AVX-512 kernel beat it by
//! 1.3–2.9×, so no shape is routed to `matrixmultiply`.
//!
//! # Environment
//!
//! `AUTOGRAD_GEMM_KERNEL` = `portable` | `avx2` | `avx512` | `matrixmultiply` overrides the
//! f32 kernel for the whole process (read once). A kernel the CPU lacks, or an unknown
//! name, is ignored and the detected kernel is used.
//!
//! # Threads and determinism
//!
//! [`gemm`] splits C into blocks whose sizes depend on the shape only, and runs them on rayon,
//! each block single-threaded; k is never split. [`GemmScalar::gemm_serial`] stays on the
//! calling thread, for callers that are parallel themselves (batched matmul, convolutions).
//! Every element of C is summed in the same order whatever the thread count, so results are
//! bitwise identical on 1 or many threads.

#[cfg(target_arch = "x86_64")]
#[macro_use]
mod simd_tile;

mod gemv;
#[cfg(target_arch = "x86_64")]
mod kernel_avx2;
#[cfg(target_arch = "x86_64")]
mod kernel_avx512;
mod kernel_portable;
mod packed;
pub mod profile;

use std::sync::OnceLock;

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

/// The f32 micro-kernels. Each is also a complete GEMM through [`sgemm_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Plain Rust, any CPU (vectorised by the compiler for the baseline instruction set).
    Portable,
    /// x86-64 AVX2 + FMA, 256-bit vectors.
    Avx2,
    /// x86-64 AVX-512F, 512-bit vectors.
    Avx512,
    /// The `matrixmultiply` crate, kept for comparison in benchmarks and tests.
    MatrixMultiply,
}

impl Kernel {
    /// Every kernel, fastest first.
    pub const ALL: [Kernel; 4] = [
        Kernel::Avx512,
        Kernel::Avx2,
        Kernel::Portable,
        Kernel::MatrixMultiply,
    ];

    /// Whether this CPU can run the kernel (checked at run time).
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Portable | Kernel::MatrixMultiply => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::Avx512 => false,
        }
    }

    /// The kernels this CPU can run, fastest first.
    pub fn available() -> Vec<Kernel> {
        Kernel::ALL
            .into_iter()
            .filter(|k| k.is_available())
            .collect()
    }

    /// The kernel [`gemm`] uses for f32: `AUTOGRAD_GEMM_KERNEL` when set to an available
    /// kernel, else the fastest the CPU supports. Detected once per process.
    pub fn selected() -> Kernel {
        static SELECTED: OnceLock<Kernel> = OnceLock::new();
        *SELECTED.get_or_init(|| {
            std::env::var("AUTOGRAD_GEMM_KERNEL")
                .ok()
                .and_then(|name| Kernel::from_name(&name))
                .filter(|k| k.is_available())
                .unwrap_or_else(|| Kernel::available()[0])
        })
    }

    /// Parses `portable`, `avx2`, `avx512` or `matrixmultiply`.
    pub fn from_name(name: &str) -> Option<Kernel> {
        match name.trim().to_ascii_lowercase().as_str() {
            "portable" => Some(Kernel::Portable),
            "avx2" => Some(Kernel::Avx2),
            "avx512" => Some(Kernel::Avx512),
            "matrixmultiply" => Some(Kernel::MatrixMultiply),
            _ => None,
        }
    }

    /// The micro-tile MR × NR of the kernel (None for `matrixmultiply`).
    pub fn tile(self) -> Option<(usize, usize)> {
        self.blocking().map(|(mr, nr, _)| (mr, nr))
    }

    /// The depth KC of the kernel's packed blocks (None for `matrixmultiply`): sums longer
    /// than this are split into blocks, which is where tests look for off-by-ones.
    pub fn depth_block(self) -> Option<usize> {
        self.blocking().map(|(_, _, kc)| kc)
    }

    /// (MR, NR, KC).
    fn blocking(self) -> Option<(usize, usize, usize)> {
        use packed::MicroKernel;
        fn of<K: MicroKernel>() -> Option<(usize, usize, usize)> {
            Some((K::MR, K::NR, K::KC))
        }
        match self {
            Kernel::Portable => of::<kernel_portable::Portable>(),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => of::<kernel_avx2::Avx2>(),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => of::<kernel_avx512::Avx512>(),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::Avx512 => None,
            Kernel::MatrixMultiply => None,
        }
    }
}

/// Whether a product runs on the calling thread or is split over fixed blocks of C on rayon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threading {
    /// Single-threaded, on the calling thread.
    Serial,
    /// Blocks of C (sizes fixed by the shape) on the rayon pool.
    Rayon,
}

/// Element types with a fast GEMM.
pub trait GemmScalar: Sized {
    /// C ← α·A·B + β·C for an `m × n` row-major C with row stride `ldc`, on the calling
    /// thread.
    ///
    /// # Panics
    /// When the inner sizes differ, a view reaches outside its slice or C is too small.
    fn gemm_serial(
        alpha: Self,
        a: MatRef<Self>,
        b: MatRef<Self>,
        beta: Self,
        c: &mut [Self],
        ldc: usize,
    );

    /// As [`GemmScalar::gemm_serial`] for a contiguous C (`ldc` = n), split over blocks of
    /// C on rayon.
    ///
    /// # Panics
    /// As [`GemmScalar::gemm_serial`].
    fn gemm_rayon(alpha: Self, a: MatRef<Self>, b: MatRef<Self>, beta: Self, c: &mut [Self]);
}

impl GemmScalar for f32 {
    #[track_caller]
    fn gemm_serial(
        alpha: f32,
        a: MatRef<f32>,
        b: MatRef<f32>,
        beta: f32,
        c: &mut [f32],
        ldc: usize,
    ) {
        sgemm_with(
            Kernel::selected(),
            Threading::Serial,
            alpha,
            a,
            b,
            beta,
            c,
            ldc,
        );
    }

    #[track_caller]
    fn gemm_rayon(alpha: f32, a: MatRef<f32>, b: MatRef<f32>, beta: f32, c: &mut [f32]) {
        let n = b.cols;
        sgemm_with(
            Kernel::selected(),
            Threading::Rayon,
            alpha,
            a,
            b,
            beta,
            c,
            n,
        );
    }
}

impl GemmScalar for f64 {
    #[track_caller]
    fn gemm_serial(
        alpha: f64,
        a: MatRef<f64>,
        b: MatRef<f64>,
        beta: f64,
        c: &mut [f64],
        ldc: usize,
    ) {
        check_operands(&a, &b, c.len(), ldc);
        mm_dgemm(alpha, a, b, beta, c, ldc);
    }

    #[track_caller]
    fn gemm_rayon(alpha: f64, a: MatRef<f64>, b: MatRef<f64>, beta: f64, c: &mut [f64]) {
        let n = b.cols;
        check_operands(&a, &b, c.len(), n);
        mm_threaded(true, mm_dgemm, alpha, a, b, beta, c, n);
    }
}

/// Products below this many multiply-adds run on one thread: waking the pool costs more.
const PAR_MACS: usize = 1 << 18;

/// C ← α·A·B + β·C where C is row-major `a.rows × b.cols`, split over blocks of C on rayon
/// when the product is large enough.
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
    if m * n * k < PAR_MACS {
        T::gemm_serial(alpha, a, b, beta, c, n);
    } else {
        T::gemm_rayon(alpha, a, b, beta, c);
    }
}

/// f32 GEMM with a chosen kernel and threading: C ← α·A·B + β·C for an `m × n` row-major
/// C with row stride `ldc`. Elements of C past column n in each row are never touched.
///
/// This is the one dispatch point of the f32 GEMM: [`gemm`] and
/// [`GemmScalar::gemm_serial`] come here with [`Kernel::selected`].
///
/// # Panics
/// When the inner sizes differ, a view reaches outside its slice, C is too small, `ldc < n`,
/// or the CPU cannot run `kernel`.
#[allow(clippy::too_many_arguments)]
#[track_caller]
pub fn sgemm_with(
    kernel: Kernel,
    threading: Threading,
    alpha: f32,
    a: MatRef<f32>,
    b: MatRef<f32>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    check_operands(&a, &b, c.len(), ldc);
    assert!(
        kernel.is_available(),
        "gemm: this CPU cannot run the {kernel:?} kernel"
    );
    let t0 = profile::start();
    let shape = (a.rows, a.cols, b.cols, a.cs != 1, b.cs != 1);
    dispatch(kernel, threading, alpha, a, b, beta, c, ldc);
    profile::stop(t0, shape);
}

/// GFLOP/s of `kernel`'s micro-kernel alone, on one thread, the best of repeated bursts for
/// about `millis` ms: one micro-tile of depth KC computed again and again on panels that
/// stay in L1, with no packing and no edges. It is the most that a product on this kernel
/// can reach on one core, to set beside the FMA ceiling. `None` for `matrixmultiply` and
/// for a kernel this CPU cannot run.
pub fn micro_kernel_gflops(kernel: Kernel, millis: u64) -> Option<f64> {
    if !kernel.is_available() {
        return None;
    }
    // SAFETY: `is_available` proved that the CPU runs the kernel.
    unsafe {
        match kernel {
            Kernel::Portable => Some(packed::tile_gflops::<kernel_portable::Portable>(millis)),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => Some(packed::tile_gflops::<kernel_avx2::Avx2>(millis)),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => Some(packed::tile_gflops::<kernel_avx512::Avx512>(millis)),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::Avx512 => None,
            Kernel::MatrixMultiply => None,
        }
    }
}

/// The body of [`sgemm_with`], after its checks.
#[allow(clippy::too_many_arguments)]
fn dispatch(
    kernel: Kernel,
    threading: Threading,
    alpha: f32,
    a: MatRef<f32>,
    b: MatRef<f32>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    let par = threading == Threading::Rayon;
    let (m, n) = (a.rows, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    // One column or one row of C: a matrix-vector product, which packing would only slow.
    if kernel != Kernel::MatrixMultiply && (n == 1 || m == 1) {
        if n == 1 {
            gemv::gemv_with(kernel, alpha, a, (b.data, b.rs), beta, (c, ldc));
        } else {
            gemv::gemv_with(kernel, alpha, b.t(), (a.data, a.cs), beta, (c, 1));
        }
        return;
    }
    // Depth 1: an outer product, where packing would cost as much as the product.
    if kernel != Kernel::MatrixMultiply && a.cols == 1 {
        let (a_col, b_row) = ((a.data, a.rs), (b.data, b.cs));
        gemv::rank1(kernel, alpha, a_col, b_row, beta, (c, ldc), (m, n));
        return;
    }
    let packed: PackedGemm = match kernel {
        Kernel::Portable => packed::gemm::<kernel_portable::Portable>,
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => packed::gemm::<kernel_avx2::Avx2>,
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => packed::gemm::<kernel_avx512::Avx512>,
        #[cfg(not(target_arch = "x86_64"))]
        Kernel::Avx2 | Kernel::Avx512 => unreachable!("checked by is_available"),
        Kernel::MatrixMultiply => return mm_threaded(par, mm_sgemm, alpha, a, b, beta, c, ldc),
    };
    // SAFETY: `check_operands` proved that every element of A and B the product reads, and
    // every element of C it writes, lies inside its slice, and that A's columns match B's
    // rows; C is borrowed mutably, so nothing else aliases it, and A and B are borrowed,
    // so nothing writes them; `is_available` proved that the CPU runs the kernel.
    unsafe { packed(par, alpha, a.into(), b.into(), beta, c, ldc) }
}

/// [`packed::gemm`] for one micro-kernel.
type PackedGemm = unsafe fn(bool, f32, packed::RawMat, packed::RawMat, f32, &mut [f32], usize);

/// A `matrixmultiply` product, `mm` being [`mm_sgemm`] or [`mm_dgemm`].
type MmGemm<T> = fn(T, MatRef<T>, MatRef<T>, T, &mut [T], usize);

/// The `matrixmultiply` path (after [`check_operands`]), over blocks of
/// [`MM_ROW_BLOCK`] rows on rayon when `par`.
#[allow(clippy::too_many_arguments)]
fn mm_threaded<T: Copy + Send + Sync>(
    par: bool,
    mm: MmGemm<T>,
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    c: &mut [T],
    ldc: usize,
) {
    let (m, n) = (a.rows, b.cols);
    if !par || m <= MM_ROW_BLOCK || n == 0 {
        return mm(alpha, a, b, beta, c, ldc);
    }
    // Trimmed to the last element of C, so that every chunk ends on a row of C.
    c[..(m - 1) * ldc + n]
        .par_chunks_mut(MM_ROW_BLOCK * ldc)
        .enumerate()
        .for_each(|(blk, c_blk)| {
            let rows = (c_blk.len() + ldc - n) / ldc;
            let a_blk = a.rows_range(blk * MM_ROW_BLOCK, rows);
            mm(alpha, a_blk, b, beta, c_blk, ldc);
        });
}

/// Rows of C per rayon task on the `matrixmultiply` path.
const MM_ROW_BLOCK: usize = 64;

/// Panics unless A is m × k, B is k × n, both views lie inside their slices, and a C of
/// `c_len` elements with row stride `ldc ≥ n` holds m × n.
#[track_caller]
fn check_operands<T>(a: &MatRef<T>, b: &MatRef<T>, c_len: usize, ldc: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if k != b.rows {
        crate::shape::shape_panic("gemm", &[m, k], &[b.rows, n], "inner sizes differ");
    }
    assert!(
        a.in_bounds(),
        "gemm: lhs view {m} × {k} reaches outside its slice"
    );
    assert!(
        b.in_bounds(),
        "gemm: rhs view {k} × {n} reaches outside its slice"
    );
    assert!(ldc >= n, "gemm: ldc = {ldc} is less than n = {n}");
    assert!(
        m == 0 || n == 0 || (m - 1) * ldc + n <= c_len,
        "gemm: C holds {c_len} elements, too few for {m} × {n} with row stride {ldc}"
    );
}

macro_rules! mm_call {
    ($name:ident, $t:ty, $f:path) => {
        /// C ← α·A·B + β·C through `matrixmultiply`, after [`check_operands`].
        fn $name(alpha: $t, a: MatRef<$t>, b: MatRef<$t>, beta: $t, c: &mut [$t], ldc: usize) {
            let (m, k, n) = (a.rows, a.cols, b.cols);
            if m == 0 || n == 0 {
                return;
            }
            // SAFETY: the caller ran `check_operands`, so every (i, j) read from A and B and
            // every element written to C lies inside its slice; C is borrowed mutably, so
            // nothing aliases it; strides fit in isize because they index existing slices.
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
    };
}

mm_call!(mm_sgemm, f32, matrixmultiply::sgemm);
mm_call!(mm_dgemm, f64, matrixmultiply::dgemm);

/// The naive triple loop, kept as the test oracle and as the version to read first, for a
/// contiguous row-major C (ldc = n):
///
/// ```text
/// C[i][j] ← α·Σₚ A[i][p]·B[p][j] + β·C[i][j]
/// ```
pub fn gemm_naive<T: Float>(alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: &mut [T]) {
    gemm_naive_ldc(alpha, a, b, beta, c, b.cols);
}

/// [`gemm_naive`] for a row-major C with row stride `ldc`.
pub fn gemm_naive_ldc<T: Float>(
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    c: &mut [T],
    ldc: usize,
) {
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
                beta * c[i * ldc + j]
            };
            c[i * ldc + j] = alpha * acc + old;
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
    fn f64_matches_naive_in_every_layout() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 2),
            (17, 9, 33),
            (130, 7, 65),
            (200, 64, 90),
        ] {
            let a = ints(m * k, 1);
            let b = ints(k * n, 2);
            let cases = [
                (MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n)),
                (MatRef::row_major(&a, k, m).t(), MatRef::row_major(&b, k, n)),
                (MatRef::row_major(&a, m, k), MatRef::row_major(&b, n, k).t()),
                (
                    MatRef::row_major(&a, k, m).t(),
                    MatRef::row_major(&b, n, k).t(),
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

    #[test]
    fn selected_kernel_is_available() {
        assert!(Kernel::selected().is_available());
        assert!(Kernel::available().contains(&Kernel::Portable));
    }
}
