//! The slice kernels of 2-D convolution: im2col, col2im and a direct convolution.
//!
//! im2col copies every receptive field of one sample into a column, so that a convolution
//! becomes one matrix product:
//!
//! ```text
//! columns[(c, i, j)][(oy, ox)] = x[c][oy·stride + i − padding][ox·stride + j − padding]
//!                                (0 where the index falls into the padding)
//! y = W · columns,   W: C_out × (C_in·kh·kw),   columns: (C_in·kh·kw) × (oh·ow)
//! ```
//!
//! col2im is its adjoint: it adds each column entry back onto the pixel it was read from, so
//! pixels covered by several windows receive the sum. The direct loops
//! [`conv2d_naive`] and [`conv_transpose2d_naive`] are the test oracles and the version to
//! read first. All buffers are row-major NCHW.

use std::ops::Range;

use rayon::prelude::*;

use crate::element::Float;
use crate::kernels::scratch;

/// The sizes of a 2-D convolution y = conv(x, W) + b, in one place.
///
/// x is `batch × c_in × h × w`, W is `c_out × c_in × kh × kw`, y is
/// `batch × c_out × out_h × out_w` with `out_h = ⌊(h + 2·padding − kh) / stride⌋ + 1`.
///
/// A transposed convolution is described by the geometry of the convolution it is the adjoint
/// of: its input has the shape of y, its output the shape of x (see [`Self::transposed_len`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dGeometry {
    /// Samples in the batch (N).
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Step between windows, the same along both axes; at least 1.
    pub stride: usize,
    /// Zeros added on every side of the input.
    pub padding: usize,
}

/// ⌊(len + 2·padding − kernel) / stride⌋ + 1, or `None` when the kernel does not fit.
fn conv_len(len: usize, kernel: usize, stride: usize, padding: usize) -> Option<usize> {
    if stride == 0 || kernel == 0 {
        return None;
    }
    let padded = padding.checked_mul(2)?.checked_add(len)?;
    Some(padded.checked_sub(kernel)? / stride + 1)
}

impl Conv2dGeometry {
    /// Output height, or `None` when stride or kernel is 0 or the kernel is taller than the
    /// padded input.
    pub fn checked_out_h(&self) -> Option<usize> {
        conv_len(self.h, self.kh, self.stride, self.padding)
    }

    /// Output width, or `None` when stride or kernel is 0 or the kernel is wider than the
    /// padded input.
    pub fn checked_out_w(&self) -> Option<usize> {
        conv_len(self.w, self.kw, self.stride, self.padding)
    }

    /// Output height, ⌊(h + 2·padding − kh) / stride⌋ + 1.
    ///
    /// # Panics
    /// When [`checked_out_h`](Self::checked_out_h) is `None`.
    #[track_caller]
    pub fn out_h(&self) -> usize {
        self.checked_out_h()
            .unwrap_or_else(|| panic!("conv2d: invalid geometry {self:?}"))
    }

    /// Output width, ⌊(w + 2·padding − kw) / stride⌋ + 1.
    ///
    /// # Panics
    /// When [`checked_out_w`](Self::checked_out_w) is `None`.
    #[track_caller]
    pub fn out_w(&self) -> usize {
        self.checked_out_w()
            .unwrap_or_else(|| panic!("conv2d: invalid geometry {self:?}"))
    }

    /// Rows of the im2col matrix: C_in·kh·kw, one per weight of an output channel.
    pub fn col_rows(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    /// Columns of the im2col matrix: oh·ow, one per output pixel.
    pub fn col_cols(&self) -> usize {
        self.out_h() * self.out_w()
    }

    /// `[batch, c_in, h, w]`
    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.c_in, self.h, self.w]
    }

    /// `[c_out, c_in, kh, kw]`
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.c_out, self.c_in, self.kh, self.kw]
    }

    /// `[batch, c_out, out_h, out_w]`
    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.c_out, self.out_h(), self.out_w()]
    }

    /// Output length of a transposed convolution along one axis:
    /// (len − 1)·stride − 2·padding + kernel + output_padding.
    ///
    /// `None` when stride or kernel is 0, `len` is 0, the result is not positive, or
    /// `output_padding ≥ stride`: only lengths up to stride − 1 past the smallest one are
    /// mapped back to `len` by the convolution, so only they make the two ops adjoint.
    pub fn transposed_len(
        len: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        output_padding: usize,
    ) -> Option<usize> {
        if stride == 0 || kernel == 0 || len == 0 || output_padding >= stride {
            return None;
        }
        let full = (len - 1)
            .checked_mul(stride)?
            .checked_add(kernel + output_padding)?;
        let out = full.checked_sub(padding.checked_mul(2)?)?;
        (out > 0).then_some(out)
    }
}

/// The output positions o in `0..out_len` whose input index o·stride + k − padding lies
/// inside `0..in_len`, for the kernel offset k; the others read padding.
fn valid_range(
    out_len: usize,
    in_len: usize,
    k: usize,
    stride: usize,
    padding: usize,
) -> Range<usize> {
    // o·stride + k ≥ padding
    let lo = padding.saturating_sub(k).div_ceil(stride);
    // o·stride + k − padding < in_len
    let hi = (in_len + padding)
        .checked_sub(k)
        .map_or(0, |room| room.div_ceil(stride));
    let hi = hi.min(out_len);
    lo.min(hi)..hi
}

/// For each kernel row i and column j, the output rows `ys[i]` and columns `xs[j]` that read
/// inside the image (see [`valid_range`]): worked out once per call, not once per plane.
struct Windows {
    ys: Vec<Range<usize>>,
    xs: Vec<Range<usize>>,
}

impl Windows {
    fn new(g: &Conv2dGeometry) -> Windows {
        let (s, p) = (g.stride, g.padding);
        Windows {
            ys: (0..g.kh)
                .map(|i| valid_range(g.out_h(), g.h, i, s, p))
                .collect(),
            xs: (0..g.kw)
                .map(|j| valid_range(g.out_w(), g.w, j, s, p))
                .collect(),
        }
    }
}

/// Unfolds one channel `plane` (h × w) of one sample into the kh·kw rows of the columns
/// that belong to that channel: row (i, j) starts at `rows[(i·kw + j)·ld]`, and the
/// sample's oh·ow values sit at offset `off` within it. Padding reads as zero:
///
/// ```text
/// row(i, j)[oy·ow + ox] = plane[oy·s + i − p][ox·s + j − p]   (0 outside the plane)
/// ```
///
/// Inside the window each output row is one strided walk along an input row.
fn unfold_plane<T: Float>(
    g: &Conv2dGeometry,
    win: &Windows,
    plane: &[T],
    rows: &mut [T],
    (ld, off): (usize, usize),
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let (s, p) = (g.stride, g.padding);
    for (i, ys) in win.ys.iter().enumerate() {
        for (j, xs) in win.xs.iter().enumerate() {
            let start = (i * g.kw + j) * ld + off;
            let row = &mut rows[start..start + oh * ow];
            row[..ys.start * ow].fill(T::ZERO);
            row[ys.end * ow..].fill(T::ZERO);
            for oy in ys.clone() {
                let dst = &mut row[oy * ow..(oy + 1) * ow];
                dst[..xs.start].fill(T::ZERO);
                dst[xs.end..].fill(T::ZERO);
                if xs.is_empty() {
                    continue;
                }
                // The first pixel read: (oy·s + i − p, xs.start·s + j − p), both ≥ 0 here.
                let first = (oy * s + i - p) * g.w + xs.start * s + j - p;
                let src = plane[first..].iter().step_by(s);
                dst[xs.clone()]
                    .iter_mut()
                    .zip(src)
                    .for_each(|(d, &v)| *d = v);
            }
        }
    }
}

/// The adjoint of [`unfold_plane`]: adds each entry of the channel's rows back onto the
/// pixel of `plane` it was read from; entries read from the padding are dropped.
fn fold_plane<T: Float>(
    g: &Conv2dGeometry,
    win: &Windows,
    rows: &[T],
    (ld, off): (usize, usize),
    plane: &mut [T],
) {
    let ow = g.out_w();
    let (s, p) = (g.stride, g.padding);
    for (i, ys) in win.ys.iter().enumerate() {
        for (j, xs) in win.xs.iter().enumerate() {
            if xs.is_empty() {
                continue;
            }
            let start = (i * g.kw + j) * ld + off;
            for oy in ys.clone() {
                let src = &rows[start + oy * ow + xs.start..start + oy * ow + xs.end];
                let first = (oy * s + i - p) * g.w + xs.start * s + j - p;
                plane[first..]
                    .iter_mut()
                    .step_by(s)
                    .zip(src)
                    .for_each(|(d, &v)| *d += v);
            }
        }
    }
}

/// Unfolds one sample x (c_in × h × w) into `cols` ((c_in·kh·kw) × (oh·ow)), overwriting
/// every element of `cols`; see the module docs for the index map.
///
/// # Panics
/// When a buffer length does not match the geometry.
#[track_caller]
pub fn im2col<T: Float>(g: &Conv2dGeometry, x: &[T], cols: &mut [T]) {
    let l = g.col_cols();
    assert_eq!(x.len(), g.c_in * g.h * g.w, "im2col: x is not c_in × h × w");
    assert_eq!(cols.len(), g.col_rows() * l, "im2col: wrong columns size");
    let (per_channel, win) = (g.kh * g.kw * l, Windows::new(g));
    for (c, rows) in cols.chunks_exact_mut(per_channel.max(1)).enumerate() {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        unfold_plane(g, &win, plane, rows, (l, 0));
    }
}

/// Folds `cols` ((c_in·kh·kw) × (oh·ow)) back onto one sample x (c_in × h × w), *adding*
/// each entry to the pixel [`im2col`] read it from: x += im2colᵀ(cols). Entries that
/// im2col read from the padding are dropped.
///
/// # Panics
/// When a buffer length does not match the geometry.
#[track_caller]
pub fn col2im<T: Float>(g: &Conv2dGeometry, cols: &[T], x: &mut [T]) {
    let l = g.col_cols();
    assert_eq!(x.len(), g.c_in * g.h * g.w, "col2im: x is not c_in × h × w");
    assert_eq!(cols.len(), g.col_rows() * l, "col2im: wrong columns size");
    let (per_channel, win) = (g.kh * g.kw * l, Windows::new(g));
    for (c, plane) in x.chunks_exact_mut((g.h * g.w).max(1)).enumerate() {
        fold_plane(g, &win, &cols[c * per_channel..], (l, 0), plane);
    }
}

/// The planes of one channel for every sample of the batch, each with `padding` zeros on
/// every side ((h + 2p) × (w + 2p)), so that every window of the convolution lies inside
/// its plane and the batch kernels below need no bounds logic. Holding the whole batch of
/// one channel (64 KB for the DCGAN) lets them walk each row of the columns from start to
/// end, so the large columns matrix is read or written as a stream.
///
/// Window (oy, ox) with kernel offset (i, j) reads `plane[(oy·s + i)·pw + ox·s + j]`, which
/// is `plane[i·pw + j + base[oy·ow + ox]]` with `base[oy·ow + ox] = oy·s·pw + ox·s`: one
/// table for every (i, j), so each sample's part of a row is a single gather. With f32 and
/// stride 2 (every convolution of the DCGAN), an output row of up to 16 windows is instead
/// two masked vector loads and one permutation ([`gather_windows_f32`]), and its adjoint
/// adds into the even lanes only ([`scatter_add_windows_f32`]).
struct PaddedPlanes<'a, T> {
    /// batch × (h + 2p) × (w + 2p)
    buf: &'a mut [T],
    /// Offset of each window's top-left corner, oh·ow entries.
    base: &'a [usize],
    /// How those offsets run, the padded row length w + 2p (`pw`) and the padded plane
    /// length (h + 2p)·(w + 2p) (`plane`).
    rows: WindowRows,
}

/// The shape of a window table: `base[oy·ow + ox] = oy·stride·pw + ox·stride`, so each row
/// of `ow` windows lies along one padded row of length `pw`; the same windows of sample n
/// lie `n·plane` further on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowRows {
    /// Length of a padded row.
    pub pw: usize,
    /// Step between windows, along both axes.
    pub stride: usize,
    /// Windows per row (the output width).
    pub ow: usize,
    /// Step between the planes of consecutive samples.
    pub plane: usize,
}

/// `dst[n·l + o] = src[n·plane + base[o]]` for every sample n and window o < l = base.len()
/// (dst holds whole samples): the portable gather.
///
/// # Panics
/// When an offset falls outside `src`.
pub fn gather_table<T: Copy>(src: &[T], base: &[usize], plane: usize, dst: &mut [T]) {
    for (n, dst) in dst.chunks_mut(base.len().max(1)).enumerate() {
        let src = &src[n * plane..];
        dst.iter_mut().zip(base).for_each(|(d, &b)| *d = src[b]);
    }
}

/// `dst[n·plane + base[o]] += src[n·l + o]`: the portable adjoint of [`gather_table`].
///
/// # Panics
/// When an offset falls outside `dst`.
pub fn scatter_add_table<T: Float>(src: &[T], base: &[usize], plane: usize, dst: &mut [T]) {
    for (n, src) in src.chunks(base.len().max(1)).enumerate() {
        let dst = &mut dst[n * plane..];
        src.iter().zip(base).for_each(|(&v, &b)| dst[b] += v);
    }
}

/// Whether the stride-2 SIMD rows apply to `n` values (whole samples) laid out as `rows`
/// in a buffer of `buf_len` values, and if so (samples, rows of windows per sample).
/// Checks that the table is the one [`WindowRows`] describes at its last entry, the
/// farthest read of a sample, and that the last sample's lies inside the buffer, so that
/// every row's reads and writes do.
#[cfg(target_arch = "x86_64")]
fn stride2_rows(
    base: &[usize],
    rows: WindowRows,
    n: usize,
    buf_len: usize,
) -> Option<(usize, usize)> {
    let WindowRows {
        pw,
        stride,
        ow,
        plane,
    } = rows;
    let l = base.len();
    if stride != 2 || ow == 0 || ow > 16 || n == 0 || l == 0 || !x86::use_avx512() {
        return None;
    }
    let (oh, samples) = (l / ow, n / l);
    let last = (oh.max(1) - 1) * 2 * pw + 2 * (ow - 1);
    assert!(
        l.is_multiple_of(ow)
            && n.is_multiple_of(l)
            && base[l - 1] == last
            && (samples - 1) * plane + last < buf_len,
        "im2col: window table does not match its rows {rows:?}"
    );
    Some((samples, oh))
}

/// [`gather_table`] for f32: with AVX-512 and stride 2, each row of up to 16 windows is
/// two masked loads and one permutation that keeps every other value.
pub fn gather_windows_f32(src: &[f32], base: &[usize], rows: WindowRows, dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(shape) = stride2_rows(base, rows, dst.len(), src.len()) {
        // SAFETY: the CPU has AVX-512F (checked in `stride2_rows`), which also proved that
        // every row's reads, 2·ow − 1 values from its start, end inside src; dst holds
        // samples·oh·ow values.
        unsafe { x86::gather_stride2(src.as_ptr(), rows, shape, dst) };
        return;
    }
    gather_table(src, base, rows.plane, dst)
}

/// [`scatter_add_table`] for f32, with the stride-2 rows of [`gather_windows_f32`].
pub fn scatter_add_windows_f32(src: &[f32], base: &[usize], rows: WindowRows, dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(shape) = stride2_rows(base, rows, src.len(), dst.len()) {
        // SAFETY: as in `gather_windows_f32`, with the roles of src and dst swapped.
        unsafe { x86::scatter_add_stride2(src, rows, shape, dst.as_mut_ptr()) };
        return;
    }
    scatter_add_table(src, base, rows.plane, dst)
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use super::WindowRows;

    /// Whether the f32 window rows take the AVX-512 path: the CPU has AVX-512F and
    /// `AUTOGRAD_GEMM_KERNEL` does not ask for the portable kernels.
    pub(crate) fn use_avx512() -> bool {
        use std::sync::OnceLock;
        static AVX512: OnceLock<bool> = OnceLock::new();
        *AVX512.get_or_init(|| {
            let portable = std::env::var("AUTOGRAD_GEMM_KERNEL").is_ok_and(|k| k == "portable");
            !portable && is_x86_feature_detected!("avx512f")
        })
    }

    /// The first `n` of 16 lanes (all of them for n ≥ 16).
    pub(crate) fn first(n: usize) -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }

    /// Row oy of sample n: dst[(n·oh + oy)·ow + ox] = src[n·plane + oy·2·pw + 2·ox], for
    /// ox < ow ≤ 16. The row's 2·ow − 1 values come in as two masked loads, and the even
    /// lanes of the pair are kept.
    ///
    /// # Safety
    /// The CPU has AVX-512F; for n < samples and oy < oh, `src + n·plane + oy·2·pw + t` is
    /// readable for t < 2·ow − 1; `dst` holds samples·oh·ow values; 1 ≤ ow ≤ 16.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gather_stride2(
        src: *const f32,
        r: WindowRows,
        (samples, oh): (usize, usize),
        dst: &mut [f32],
    ) {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let span = 2 * r.ow - 1;
        let (lo, hi, out) = (first(span), first(span.saturating_sub(16)), first(r.ow));
        let mut d = dst.as_mut_ptr();
        for n in 0..samples {
            for oy in 0..oh {
                let s = src.add(n * r.plane + oy * 2 * r.pw);
                let a = _mm512_maskz_loadu_ps(lo, s);
                // A second vector only when the row reaches past 16 values, so that
                // s + 16 is never formed outside the buffer.
                let b = if hi != 0 {
                    _mm512_maskz_loadu_ps(hi, s.add(16))
                } else {
                    _mm512_setzero_ps()
                };
                _mm512_mask_storeu_ps(d, out, _mm512_permutex2var_ps(a, even, b));
                d = d.add(r.ow);
            }
        }
    }

    /// The adjoint of [`gather_stride2`]: dst[n·plane + oy·2·pw + 2·ox] +=
    /// src[(n·oh + oy)·ow + ox]. Each row's values are spread to the even lanes of two
    /// vectors and added there only; the odd lanes of dst are neither changed nor written.
    ///
    /// # Safety
    /// The CPU has AVX-512F; for n < samples and oy < oh, `dst + n·plane + oy·2·pw + t` is
    /// readable and writable for t < 2·ow − 1, and nothing else writes it during the call;
    /// `src` holds samples·oh·ow values; 1 ≤ ow ≤ 16.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn scatter_add_stride2(
        src: &[f32],
        r: WindowRows,
        (samples, oh): (usize, usize),
        dst: *mut f32,
    ) {
        // Lane 2t of the low vector takes value t, of the high one value 8 + t.
        let spread_lo = _mm512_setr_epi32(0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0);
        let spread_hi = _mm512_setr_epi32(8, 0, 9, 0, 10, 0, 11, 0, 12, 0, 13, 0, 14, 0, 15, 0);
        const EVEN: __mmask16 = 0x5555;
        let span = 2 * r.ow - 1;
        let (lo, hi) = (first(span) & EVEN, first(span.saturating_sub(16)) & EVEN);
        let (mut s, row) = (src.as_ptr(), first(r.ow));
        for n in 0..samples {
            for oy in 0..oh {
                let v = _mm512_maskz_loadu_ps(row, s);
                s = s.add(r.ow);
                let d = dst.add(n * r.plane + oy * 2 * r.pw);
                let a = _mm512_maskz_loadu_ps(lo, d);
                let a = _mm512_mask_add_ps(a, lo, a, _mm512_permutexvar_ps(spread_lo, v));
                _mm512_mask_storeu_ps(d, lo, a);
                if hi != 0 {
                    let b = _mm512_maskz_loadu_ps(hi, d.add(16));
                    let b = _mm512_mask_add_ps(b, hi, b, _mm512_permutexvar_ps(spread_hi, v));
                    _mm512_mask_storeu_ps(d.add(16), hi, b);
                }
            }
        }
    }
}

/// The layout of [`PaddedPlanes`] and its `base` table.
fn padded_layout(g: &Conv2dGeometry) -> (WindowRows, Vec<usize>) {
    let (pw, s) = (g.w + 2 * g.padding, g.stride);
    let base = (0..g.out_h())
        .flat_map(|oy| (0..g.out_w()).map(move |ox| oy * s * pw + ox * s))
        .collect();
    let rows = WindowRows {
        pw,
        stride: s,
        ow: g.out_w(),
        plane: (g.h + 2 * g.padding) * pw,
    };
    (rows, base)
}

impl<T: Float> PaddedPlanes<'_, T> {
    /// Pixel row y of sample n: row y + p, columns p .. p + w of its padded plane.
    fn interior_row(&mut self, g: &Conv2dGeometry, n: usize, y: usize) -> &mut [T] {
        let p = g.padding;
        &mut self.buf[n * self.rows.plane + (y + p) * self.rows.pw + p..][..g.w]
    }

    /// dst[o] = the value window o of sample n reads at kernel offset (i, j).
    fn gather(&self, (i, j): (usize, usize), dst: &mut [T]) {
        let src = &self.buf[i * self.rows.pw + j..];
        T::gather_windows(src, self.base, self.rows, dst);
    }

    /// The adjoint of [`Self::gather`]: adds src[o] onto the value window o of sample n
    /// reads at kernel offset (i, j).
    fn scatter_add(&mut self, (i, j): (usize, usize), src: &[T]) {
        let dst = &mut self.buf[i * self.rows.pw + j..];
        T::scatter_add_windows(src, self.base, self.rows, dst);
    }
}

/// im2col of the whole batch, the samples side by side: `cols` is
/// (c_in·kh·kw) × (batch·oh·ow), and sample n's columns are n·oh·ow .. (n + 1)·oh·ow, so
/// that one GEMM convolves the whole batch. Every element is overwritten. Parallel over
/// input channels (each owns a contiguous band of rows).
///
/// The same map as [`im2col`], computed differently: a channel's planes are first copied
/// into zero-bordered [`PaddedPlanes`], and then each row of the columns is written from
/// start to end, one gather per sample, with no padding cases. The single-sample version
/// is the reference it is tested against.
///
/// # Panics
/// When a buffer length does not match the geometry.
#[track_caller]
pub fn im2col_batch<T: Float>(g: &Conv2dGeometry, x: &[T], cols: &mut [T]) {
    let nl = g.batch * g.col_cols();
    let plane = g.h * g.w;
    assert_eq!(x.len(), g.batch * g.c_in * plane, "im2col_batch: x size");
    assert_eq!(cols.len(), g.col_rows() * nl, "im2col_batch: columns size");
    let (windows, base) = padded_layout(g);
    cols.par_chunks_mut((g.kh * g.kw * nl).max(1))
        .enumerate()
        .for_each(|(c, rows)| {
            let mut buf = vec![T::ZERO; g.batch * windows.plane];
            let mut planes = PaddedPlanes {
                buf: &mut buf,
                base: &base,
                rows: windows,
            };
            for n in 0..g.batch {
                let x_nc = &x[(n * g.c_in + c) * plane..][..plane];
                for (y, src) in x_nc.chunks_exact(g.w.max(1)).enumerate() {
                    planes.interior_row(g, n, y).copy_from_slice(src);
                }
            }
            for (ij, row) in rows.chunks_exact_mut(nl.max(1)).enumerate() {
                planes.gather((ij / g.kw, ij % g.kw), row);
            }
        });
}

/// The adjoint of [`im2col_batch`]: x = im2col_batchᵀ(cols), for x of
/// batch × c_in × h × w. Every element of x is overwritten.
///
/// Parallel over channels: each folds its rows of the columns, read from start to end,
/// into zeroed [`PaddedPlanes`] of its own; entries that im2col read from the padding land
/// in the border and are dropped. A second pass, parallel over samples, copies the
/// interiors into x.
///
/// # Panics
/// When a buffer length does not match the geometry.
#[track_caller]
pub fn col2im_batch<T: Float>(g: &Conv2dGeometry, cols: &[T], x: &mut [T]) {
    let nl = g.batch * g.col_cols();
    let plane = g.h * g.w;
    assert_eq!(x.len(), g.batch * g.c_in * plane, "col2im_batch: x size");
    assert_eq!(cols.len(), g.col_rows() * nl, "col2im_batch: columns size");
    let (rows, base) = padded_layout(g);
    let (pw, len) = (rows.pw, rows.plane);
    let kk = g.kh * g.kw;
    // c_in × batch × padded plane
    let mut folded = scratch::take(g.c_in * g.batch * len);
    folded
        .par_chunks_mut((g.batch * len).max(1))
        .enumerate()
        .for_each(|(c, buf)| {
            buf.fill(T::ZERO);
            let mut planes = PaddedPlanes {
                buf,
                base: &base,
                rows,
            };
            let rows = &cols[c * kk * nl..][..kk * nl];
            for (ij, row) in rows.chunks_exact(nl.max(1)).enumerate() {
                planes.scatter_add((ij / g.kw, ij % g.kw), row);
            }
        });
    x.par_chunks_mut((g.c_in * plane).max(1))
        .enumerate()
        .for_each(|(n, x_n)| {
            for (c, x_nc) in x_n.chunks_exact_mut(plane.max(1)).enumerate() {
                let padded = &folded[(c * g.batch + n) * len..][..len];
                for (y, dst) in x_nc.chunks_exact_mut(g.w.max(1)).enumerate() {
                    let src = &padded[(y + g.padding) * pw + g.padding..][..g.w];
                    dst.copy_from_slice(src);
                }
            }
        });
    scratch::give(folded);
}

/// The input index o·stride + k − padding, or `None` when it falls into the padding.
fn input_index(o: usize, k: usize, g: &Conv2dGeometry, len: usize) -> Option<usize> {
    (o * g.stride + k)
        .checked_sub(g.padding)
        .filter(|&i| i < len)
}

/// Direct convolution, the oracle for the im2col path:
/// y[n][o][oy][ox] = b[o] + Σ_{c,i,j} W[o][c][i][j] · x[n][c][oy·s + i − p][ox·s + j − p].
///
/// x is `batch × c_in × h × w`, `weight` is `c_out × c_in × kh × kw`, `bias` has `c_out`
/// values; the result is `batch × c_out × oh × ow`.
///
/// # Panics
/// When a buffer length does not match the geometry.
#[track_caller]
pub fn conv2d_naive<T: Float>(
    g: &Conv2dGeometry,
    x: &[T],
    weight: &[T],
    bias: Option<&[T]>,
) -> Vec<T> {
    let [n, co, oh, ow] = g.output_shape();
    assert_eq!(
        x.len(),
        g.input_shape().iter().product(),
        "conv2d_naive: x size"
    );
    assert_eq!(
        weight.len(),
        g.weight_shape().iter().product(),
        "conv2d_naive: weight size"
    );
    let xi = |b: usize, c: usize, y: usize, xx: usize| ((b * g.c_in + c) * g.h + y) * g.w + xx;
    let wi = |o: usize, c: usize, i: usize, j: usize| ((o * g.c_in + c) * g.kh + i) * g.kw + j;
    let mut y = vec![T::ZERO; n * co * oh * ow];
    for b in 0..n {
        for o in 0..co {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias.map_or(T::ZERO, |bias| bias[o]);
                    for c in 0..g.c_in {
                        for i in 0..g.kh {
                            let Some(iy) = input_index(oy, i, g, g.h) else {
                                continue;
                            };
                            for j in 0..g.kw {
                                if let Some(ix) = input_index(ox, j, g, g.w) {
                                    acc += weight[wi(o, c, i, j)] * x[xi(b, c, iy, ix)];
                                }
                            }
                        }
                    }
                    y[((b * co + o) * oh + oy) * ow + ox] = acc;
                }
            }
        }
    }
    y
}

/// Direct transposed convolution, the adjoint of [`conv2d_naive`] plus a bias: every input
/// value is scattered through the kernel onto the output,
/// y[n][c][oy·s + i − p][ox·s + j − p] += W[o][c][i][j] · x[n][o][oy][ox].
///
/// In the geometry `g` of the convolution this is the adjoint of, x is
/// `batch × c_out × oh × ow`, `weight` is `c_out × c_in × kh × kw`, `bias` has `c_in` values
/// and the result is `batch × c_in × h × w`.
///
/// # Panics
/// When a buffer length does not match the geometry.
#[track_caller]
pub fn conv_transpose2d_naive<T: Float>(
    g: &Conv2dGeometry,
    x: &[T],
    weight: &[T],
    bias: Option<&[T]>,
) -> Vec<T> {
    let [n, co, oh, ow] = g.output_shape();
    assert_eq!(x.len(), n * co * oh * ow, "conv_transpose2d_naive: x size");
    assert_eq!(
        weight.len(),
        g.weight_shape().iter().product(),
        "conv_transpose2d_naive: weight"
    );
    let yi = |b: usize, c: usize, y: usize, xx: usize| ((b * g.c_in + c) * g.h + y) * g.w + xx;
    let wi = |o: usize, c: usize, i: usize, j: usize| ((o * g.c_in + c) * g.kh + i) * g.kw + j;
    let mut y = vec![T::ZERO; n * g.c_in * g.h * g.w];
    for b in 0..n {
        for c in 0..g.c_in {
            let b_c = bias.map_or(T::ZERO, |bias| bias[c]);
            y[yi(b, c, 0, 0)..yi(b, c + 1, 0, 0)].fill(b_c);
        }
        for o in 0..co {
            for oy in 0..oh {
                for ox in 0..ow {
                    let v = x[((b * co + o) * oh + oy) * ow + ox];
                    for c in 0..g.c_in {
                        for i in 0..g.kh {
                            let Some(iy) = input_index(oy, i, g, g.h) else {
                                continue;
                            };
                            for j in 0..g.kw {
                                if let Some(ix) = input_index(ox, j, g, g.w) {
                                    y[yi(b, c, iy, ix)] += weight[wi(o, c, i, j)] * v;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small integers, so that every sum below is exact in f64.
    fn ints(n: usize, seed: usize) -> Vec<f64> {
        (0..n)
            .map(|i| ((i * 7 + seed * 13) % 11) as f64 - 5.0)
            .collect()
    }

    /// Every valid single-sample geometry over odd and even sizes, kernels 1 to 3 (and one
    /// non-square), stride 1 to 3, padding 0 to 2.
    fn geometries() -> Vec<Conv2dGeometry> {
        let mut all = vec![];
        for (h, w) in [(1, 1), (3, 3), (4, 5), (6, 4), (7, 7)] {
            for (kh, kw) in [(1, 1), (2, 2), (3, 3), (3, 2)] {
                for stride in 1..=3 {
                    for padding in 0..=2 {
                        let g = Conv2dGeometry {
                            batch: 1,
                            c_in: 2,
                            c_out: 1,
                            h,
                            w,
                            kh,
                            kw,
                            stride,
                            padding,
                        };
                        if g.checked_out_h().is_some() && g.checked_out_w().is_some() {
                            all.push(g);
                        }
                    }
                }
            }
        }
        all
    }

    /// im2col by its definition, with signed indices.
    fn im2col_by_definition(g: &Conv2dGeometry, x: &[f64]) -> Vec<f64> {
        let (oh, ow) = (g.out_h(), g.out_w());
        let mut cols = vec![];
        for c in 0..g.c_in {
            for i in 0..g.kh {
                for j in 0..g.kw {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let iy = (oy * g.stride + i) as isize - g.padding as isize;
                            let ix = (ox * g.stride + j) as isize - g.padding as isize;
                            let inside =
                                (0..g.h as isize).contains(&iy) && (0..g.w as isize).contains(&ix);
                            cols.push(if inside {
                                x[(c * g.h + iy as usize) * g.w + ix as usize]
                            } else {
                                0.0
                            });
                        }
                    }
                }
            }
        }
        cols
    }

    #[test]
    fn im2col_matches_definition_and_writes_every_element() {
        for g in geometries() {
            let x = ints(g.c_in * g.h * g.w, 1);
            // NaN-filled, so an element the kernel forgets to write fails the comparison.
            let mut cols = vec![f64::NAN; g.col_rows() * g.col_cols()];
            im2col(&g, &x, &mut cols);
            assert_eq!(cols, im2col_by_definition(&g, &x), "{g:?}");
        }
    }

    #[test]
    fn col2im_adds_the_transpose_of_im2col() {
        for g in geometries() {
            let cols = ints(g.col_rows() * g.col_cols(), 2);
            let start = ints(g.c_in * g.h * g.w, 3);

            // Expected: start + Mᵀ·cols, with M the 0/1 matrix of im2col built column by column.
            let mut expected = start.clone();
            for (k, e) in expected.iter_mut().enumerate() {
                let mut unit = vec![0.0; start.len()];
                unit[k] = 1.0;
                let m_col = im2col_by_definition(&g, &unit);
                *e += m_col.iter().zip(&cols).map(|(m, c)| m * c).sum::<f64>();
            }

            let mut x = start;
            col2im(&g, &cols, &mut x);
            assert_eq!(x, expected, "{g:?}");
        }
    }

    /// The batch columns are the per-sample columns side by side, and col2im_batch folds
    /// each sample's band back exactly as col2im does into zeros.
    #[test]
    fn batch_columns_are_the_samples_side_by_side() {
        for g in geometries() {
            let g = Conv2dGeometry { batch: 3, ..g };
            let (k, l, per) = (g.col_rows(), g.col_cols(), g.c_in * g.h * g.w);
            let x = ints(g.batch * per, 4);
            let mut cols = vec![f64::NAN; k * g.batch * l];
            im2col_batch(&g, &x, &mut cols);
            let nl = g.batch * l;
            for n in 0..g.batch {
                let mut one = vec![f64::NAN; k * l];
                im2col(&g, &x[n * per..(n + 1) * per], &mut one);
                for r in 0..k {
                    let band = &cols[r * nl + n * l..r * nl + (n + 1) * l];
                    assert_eq!(band, &one[r * l..(r + 1) * l], "{g:?}, sample {n}, row {r}");
                }
            }

            let folded_cols = ints(k * nl, 5);
            // col2im_batch overwrites x (whatever it held); col2im adds onto zeros.
            let mut x_batch = vec![f64::NAN; g.batch * per];
            let mut x_each = vec![0.0; g.batch * per];
            col2im_batch(&g, &folded_cols, &mut x_batch);
            for n in 0..g.batch {
                let mut one = vec![0.0; k * l];
                for r in 0..k {
                    one[r * l..(r + 1) * l]
                        .copy_from_slice(&folded_cols[r * nl + n * l..r * nl + (n + 1) * l]);
                }
                col2im(&g, &one, &mut x_each[n * per..(n + 1) * per]);
            }
            assert_eq!(x_batch, x_each, "{g:?}");
        }
    }

    /// Stride 2 takes the f32 SIMD rows (where the CPU has AVX-512) for outputs up to 16
    /// wide and the table beyond: f32 im2col_batch and col2im_batch against the f64 ones,
    /// which always take the table, on small integers where both are exact.
    #[test]
    fn f32_stride_two_rows_match_the_table_path() {
        let sides = [
            (1, 1),
            (2, 3),
            (5, 5),
            (7, 7),
            (14, 14),
            (28, 28),
            (30, 33),
            (33, 30),
        ];
        for (h, w) in sides {
            for (kh, kw) in [(1, 1), (2, 2), (3, 3), (4, 4), (4, 3)] {
                for padding in 0..=2 {
                    let g = Conv2dGeometry {
                        batch: 3,
                        c_in: 2,
                        c_out: 1,
                        h,
                        w,
                        kh,
                        kw,
                        stride: 2,
                        padding,
                    };
                    if g.checked_out_h().is_none() || g.checked_out_w().is_none() {
                        continue;
                    }
                    let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
                    let n_cols = g.col_rows() * g.batch * g.col_cols();
                    let x = ints(g.batch * g.c_in * h * w, 7);
                    let (mut c64, mut c32) = (vec![f64::NAN; n_cols], vec![f32::NAN; n_cols]);
                    im2col_batch(&g, &x, &mut c64);
                    im2col_batch(&g, &to32(&x), &mut c32);
                    assert_eq!(c32, to32(&c64), "im2col {g:?}");

                    let cols = ints(n_cols, 8);
                    let (mut x64, mut x32) = (vec![f64::NAN; x.len()], vec![f32::NAN; x.len()]);
                    col2im_batch(&g, &cols, &mut x64);
                    col2im_batch(&g, &to32(&cols), &mut x32);
                    assert_eq!(x32, to32(&x64), "col2im {g:?}");
                }
            }
        }
    }

    #[test]
    fn naive_conv_by_hand() {
        // x = [[1 2 3] [4 5 6] [7 8 9]], a 2 × 2 kernel of ones, bias 0.5: each output is the
        // sum of a 2 × 2 window plus 0.5 (computed by hand).
        let g = Conv2dGeometry {
            batch: 1,
            c_in: 1,
            c_out: 1,
            h: 3,
            w: 3,
            kh: 2,
            kw: 2,
            stride: 1,
            padding: 0,
        };
        let x: Vec<f64> = (1..=9).map(f64::from).collect();
        let y = conv2d_naive(&g, &x, &[1.0; 4], Some(&[0.5]));
        assert_eq!(y, vec![12.5, 16.5, 24.5, 28.5]);
    }

    #[test]
    fn naive_transpose_is_the_adjoint_of_naive_conv() {
        for mut g in geometries() {
            g.batch = 2;
            g.c_out = 3;
            let x = ints(g.input_shape().iter().product(), 4);
            let w = ints(g.weight_shape().iter().product(), 5);
            let y = ints(g.output_shape().iter().product(), 6);
            let conv = conv2d_naive(&g, &x, &w, None);
            let adj = conv_transpose2d_naive(&g, &y, &w, None);
            let lhs: f64 = conv.iter().zip(&y).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(&adj).map(|(a, b)| a * b).sum();
            assert_eq!(lhs, rhs, "{g:?}");
        }
    }

    #[test]
    fn transposed_len_inverts_out_len() {
        for len in 1..6 {
            for (k, s, p) in [(3, 1, 1), (4, 2, 1), (3, 2, 0), (5, 2, 2), (2, 3, 0)] {
                for op in 0..s {
                    let Some(t) = Conv2dGeometry::transposed_len(len, k, s, p, op) else {
                        continue;
                    };
                    assert_eq!(
                        conv_len(t, k, s, p),
                        Some(len),
                        "len {len} k {k} s {s} p {p}"
                    );
                }
                assert_eq!(Conv2dGeometry::transposed_len(len, k, s, p, s), None);
            }
        }
    }
}
