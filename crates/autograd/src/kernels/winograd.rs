//! Winograd's minimal filtering for the 4 × 4, stride-2, padding-1 convolutions of DCGAN:
//! the same results as im2col and GEMM, with about half the multiplications.
//!
//! # Phases
//!
//! A stride-2 convolution with a 4 × 4 kernel splits into four stride-1 convolutions with
//! 2 × 2 kernels, one per phase (ry, rx) ∈ {0, 1}² of the input,
//! `x_r[i][j] = x[2i + ry][2j + rx]`.
//! Along one axis, with padding 1,
//!
//! ```text
//! y[m] = Σ_k w[k] · x[2m + k − 1] = Σ_{r, j} h_r[j] · x_r[m − r + j],   h_r[j] = w[2j + 1 − r]
//! ```
//!
//! so phase 0 takes taps 1 and 3, phase 1 taps 0 and 2, and every phase is a correlation
//! with a 2-tap filter.
//!
//! # The minimal filter F(4, 2)
//!
//! Four outputs of a 2-tap correlation, `out[u] = Σ_j d[u + j]·h[j]`, need 8 multiplications
//! directly but only 5 through the polynomial identity behind Winograd's algorithm:
//!
//! ```text
//! out = Aᵀ · ((G·h) ⊙ (Bᵀ·d))          d: 5 inputs, h: 2 taps, out: 4 outputs
//! ```
//!
//! Bᵀ evaluates, G evaluates and Aᵀ interpolates polynomials at the points 0, 1, −1, 2
//! and ∞; of the point sets tried, this one gave the smallest error in f32 (about 20× the
//! error of the direct sum at 1024 terms, 4·10⁻⁶ relative). In 2-D the transforms are
//! applied along both axes, out = Aᵀ·[(G·h·Gᵀ) ⊙ (Bᵀ·d·B)]·A, and a 4 × 4 output tile
//! costs 25 products instead of 64 per phase and channel pair.
//!
//! Over channels the elementwise product becomes a sum, one GEMM per point pair (p, q):
//!
//! ```text
//! M[pq] (tiles × C_out) = D[pq] (tiles × 4·C_in) · W[pq] (4·C_in × C_out)
//! ```
//!
//! where D holds the data transforms of every tile of every sample (rows), with the four
//! phases side by side (columns ph·C_in + c), and W the kernel transforms. The phases are
//! summed inside the GEMM. The output tile is Aᵀ·M·A.
//!
//! # The adjoint and the weight gradient
//!
//! Every step is linear, so the adjoint of the convolution (∂L/∂x, and the forward pass of
//! the transposed convolution) runs the same steps transposed and in reverse: y-side tiles
//! go through A·ȳ·Aᵀ, the GEMMs take Wᵀ, and the data-side tiles come back through B·D̄·Bᵀ,
//! added where the tiles' 10 × 10 input windows overlap. The weight gradient is
//! `∂L/∂W[pq] = Ȳ[pq]ᵀ · D[pq]`, brought back to the 2 × 2 taps of each phase by Gᵀ·∂W·G.
//!
//! # Where it applies
//!
//! [`applies`] picks this path for 4 × 4 kernels with stride 2 and padding 1 and at least
//! [`MIN_CHANNELS`] channels on both sides; below that the GEMMs are too thin to gain. The
//! environment variable `AUTOGRAD_CONV=im2col` turns it off for the whole process.

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::element::Float;
use crate::kernels::gemm::{GemmScalar, MatRef};
use crate::kernels::im2col::Conv2dGeometry;
use crate::kernels::scratch;

/// Outputs per tile along one axis.
const TILE: usize = 4;
/// Points of the transforms: TILE + taps − 1.
const PTS: usize = 5;
/// Point pairs (p, q): one GEMM each.
const PAIRS: usize = PTS * PTS;
/// Channels transformed together, one per lane, so that the loops vectorise.
pub(crate) const LANES: usize = 16;
/// Fewer channels than this on either side and the im2col path is used.
pub const MIN_CHANNELS: usize = 16;

/// Bᵀ: the data transform, row p giving D[p] from the five inputs d[0..5].
const BT: [[f64; PTS]; PTS] = [
    [1.0, -0.5, -1.0, 0.5, 0.0],
    [0.0, 1.0, 0.5, -0.5, 0.0],
    [0.0, -1.0 / 3.0, 0.5, -1.0 / 6.0, 0.0],
    [0.0, -1.0 / 6.0, 0.0, 1.0 / 6.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0],
];
/// G: the kernel transform, h(p) = h[0] + p·h[1] (and h[1] at ∞).
const G: [[f64; 2]; PTS] = [[1.0, 0.0], [1.0, 1.0], [1.0, -1.0], [1.0, 2.0], [0.0, 1.0]];
/// Aᵀ: the output transform, row u giving out[u] from the five products.
const AT: [[f64; PTS]; TILE] = [
    [1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, 1.0],
];

/// One value per lane: the same position in [`LANES`] consecutive channels.
type Lanes<T> = [T; LANES];
/// An R × C block of lanes.
type Block<T, const R: usize, const C: usize> = [[Lanes<T>; C]; R];

/// Whether a convolution with this geometry takes the Winograd path.
pub fn applies(g: &Conv2dGeometry) -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    let enabled = *ENABLED
        .get_or_init(|| std::env::var("AUTOGRAD_CONV").map_or(true, |v| v.trim() != "im2col"));
    enabled && shape_fits(g)
}

/// The geometry this module handles, whatever the environment says.
pub fn shape_fits(g: &Conv2dGeometry) -> bool {
    kernel_fits(g) && g.c_in >= MIN_CHANNELS && g.c_out >= MIN_CHANNELS
}

/// A 4 × 4 kernel, stride 2, padding 1 that fits the padded input (an output of at
/// least 1 × 1), any channel counts.
fn kernel_fits(g: &Conv2dGeometry) -> bool {
    (g.kh, g.kw, g.stride, g.padding) == (4, 4, 2, 1)
        && g.checked_out_h().is_some()
        && g.checked_out_w().is_some()
}

/// B = (Bᵀ)ᵀ, for the adjoint of the data transform.
const B: [[f64; PTS]; PTS] = transpose(&BT);
/// Gᵀ, for the adjoint of the kernel transform.
const GT: [[f64; PTS]; 2] = transpose(&G);
/// A = (Aᵀ)ᵀ, for the adjoint of the output transform.
const A: [[f64; TILE]; PTS] = transpose(&AT);

const fn transpose<const R: usize, const C: usize>(m: &[[f64; C]; R]) -> [[f64; R]; C] {
    let mut t = [[0.0; R]; C];
    let mut r = 0;
    while r < R {
        let mut c = 0;
        while c < C {
            t[c][r] = m[r][c];
            c += 1;
        }
        r += 1;
    }
    t
}

/// Σ_i coefs[i] · x(i), lane by lane, skipping zero coefficients (the transforms are a
/// third zeros).
#[inline(always)]
fn combine<'a, T: Float + 'a, const C: usize>(
    coefs: &[f64; C],
    x: impl Fn(usize) -> &'a Lanes<T>,
) -> Lanes<T> {
    let mut acc = [T::ZERO; LANES];
    for (i, &c) in coefs.iter().enumerate() {
        if c != 0.0 {
            let c = T::from_f64(c);
            acc.iter_mut().zip(x(i)).for_each(|(a, &v)| *a += c * v);
        }
    }
    acc
}

/// The buffers of one product out = m · x · mᵀ, for an R × C matrix m and a C × C block x
/// of lanes: callers fill `x` in place and read `out`, so that no block is moved or zeroed
/// per product.
struct Sandwich<T, const R: usize, const C: usize> {
    x: Block<T, C, C>,
    rows: Block<T, R, C>,
    out: Block<T, R, R>,
}

impl<T: Float, const R: usize, const C: usize> Sandwich<T, R, C> {
    #[inline(always)]
    fn new() -> Self {
        Sandwich {
            x: [[[T::ZERO; LANES]; C]; C],
            rows: [[[T::ZERO; LANES]; C]; R],
            out: [[[T::ZERO; LANES]; R]; R],
        }
    }

    /// out = m · x · mᵀ, for one of the constant transform matrices, whose zeros and ones
    /// the compiler folds away.
    #[inline(always)]
    fn run(&mut self, m: &'static [[f64; C]; R]) {
        for (r, coefs) in m.iter().enumerate() {
            for j in 0..C {
                self.rows[r][j] = combine(coefs, |i| &self.x[i][j]);
            }
        }
        for r in 0..R {
            for (q, coefs) in m.iter().enumerate() {
                self.out[r][q] = combine(coefs, |j| &self.rows[r][j]);
            }
        }
    }
}

/// Runs `body` compiled for AVX-512F when `avx512` is set, else as built. The transforms'
/// loops over lane vectors, their window gathers and their copies are written for any
/// instruction set; in here each [`Lanes`] operation becomes one 16-wide instruction.
/// Only what is inlined into [`in_avx512`] gets that build, so callers mark `body` and the
/// methods it calls `#[inline(always)]`.
#[inline(always)]
fn simd_scope<R>(avx512: bool, body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if avx512 {
        // SAFETY: `avx512` is true only where the CPU has AVX-512F (`Tiling::new` takes it
        // from `use_avx512`, which detects the feature at run time).
        return unsafe { in_avx512(body) };
    }
    body()
}

/// `body()`, with AVX-512F enabled for the code inlined into it.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn in_avx512<R>(body: impl FnOnce() -> R) -> R {
    body()
}

/// The lane vector that starts at `buf[at]`. Every buffer's rows are padded to whole lane
/// vectors, so that all copies have one fixed size.
#[inline(always)]
fn lanes_at<T>(buf: &[T], at: usize) -> &Lanes<T> {
    buf[at..at + LANES].try_into().expect("a whole lane vector")
}

/// As [`lanes_at`], to write.
#[inline(always)]
fn lanes_at_mut<T>(buf: &mut [T], at: usize) -> &mut Lanes<T> {
    (&mut buf[at..at + LANES])
        .try_into()
        .expect("a whole lane vector")
}

/// Where an image's planes lie in a slab: one lane vector per pixel (the same pixel of
/// 16 consecutive channels), the `h × w` image at row and column `at` of an
/// `sh × sw` slab whose border stays zero. Every window or tile of the transforms then lies
/// inside the slab, and reads and writes it without bounds tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Padded {
    /// Image height.
    pub h: usize,
    /// Image width.
    pub w: usize,
    /// Row and column of the slab where the image starts.
    pub at: usize,
    /// Slab height, at least `at + h`.
    pub sh: usize,
    /// Slab width, at least `at + w`.
    pub sw: usize,
}

impl Padded {
    /// A slab of zeros.
    fn slab<T: Float>(&self) -> Vec<Lanes<T>> {
        vec![[T::ZERO; LANES]; self.sh * self.sw]
    }

    /// The slab position of pixel p (row-major in the image).
    fn pos(&self, p: usize) -> usize {
        (p / self.w + self.at) * self.sw + p % self.w + self.at
    }

    /// Panics unless the image fits in the slab, `slab` is that slab, and the planes of
    /// channels `c0 .. c0 + lanes` (`lanes` ≤ [`LANES`]) lie inside `image_len` values.
    #[track_caller]
    fn check(&self, image_len: usize, (c0, lanes): (usize, usize), slab_len: usize) {
        assert!(
            self.at + self.h <= self.sh
                && self.at + self.w <= self.sw
                && slab_len == self.sh * self.sw
                && lanes <= LANES,
            "interleave: {self:?} against a slab of {slab_len} vectors and {lanes} lanes"
        );
        let plane = self.h * self.w;
        assert!(
            (c0 + lanes) * plane <= image_len,
            "interleave: channels {c0}..{} of {plane}-value planes past an image of \
             {image_len} values",
            c0 + lanes
        );
    }
}

/// The planes of channels `c0 .. c0 + lanes` of `image` (C × h·w) into the image area of
/// `slab`, one lane vector per pixel: `slab[pad.pos(p)][l] = image[(c0 + l)·h·w + p]`,
/// and 0 in lanes l ≥ lanes. The portable form of [`Float::interleave_lanes`].
///
/// # Panics
/// When the planes lie outside `image` or `slab` is not the slab `pad` describes.
pub fn interleave_portable<T: Float>(
    image: &[T],
    (c0, lanes): (usize, usize),
    pad: Padded,
    slab: &mut [[T; LANES]],
) {
    pad.check(image.len(), (c0, lanes), slab.len());
    let plane = pad.h * pad.w;
    for p in 0..plane {
        let v = &mut slab[pad.pos(p)];
        for (l, v) in v.iter_mut().enumerate() {
            *v = match l < lanes {
                true => image[(c0 + l) * plane + p],
                false => T::ZERO,
            };
        }
    }
}

/// The inverse of [`interleave_portable`]: `image[(c0 + l)·h·w + p] = slab[pad.pos(p)][l]`
/// for l < lanes. The portable form of [`Float::deinterleave_lanes`].
///
/// # Panics
/// As [`interleave_portable`].
pub fn deinterleave_portable<T: Float>(
    slab: &[[T; LANES]],
    (c0, lanes): (usize, usize),
    pad: Padded,
    image: &mut [T],
) {
    pad.check(image.len(), (c0, lanes), slab.len());
    let plane = pad.h * pad.w;
    for l in 0..lanes {
        let dst = &mut image[(c0 + l) * plane..][..plane];
        for (p, x) in dst.iter_mut().enumerate() {
            *x = slab[pad.pos(p)][l];
        }
    }
}

/// [`Float::interleave_lanes`] for f32: 16 pixels of 16 channels at a time, transposed in
/// AVX-512 registers where the CPU has it.
pub fn interleave_f32(
    image: &[f32],
    chans: (usize, usize),
    pad: Padded,
    slab: &mut [[f32; LANES]],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::im2col::x86::use_avx512() {
        pad.check(image.len(), chans, slab.len());
        // SAFETY: the CPU has AVX-512F (`use_avx512`); `check` has checked that the planes
        // lie inside `image` and that `slab` is the whole slab of `pad`.
        return unsafe { x86::interleave(image.as_ptr(), chans, pad, slab.as_mut_ptr()) };
    }
    interleave_portable(image, chans, pad, slab)
}

/// [`Float::deinterleave_lanes`] for f32, as [`interleave_f32`].
pub fn deinterleave_f32(
    slab: &[[f32; LANES]],
    chans: (usize, usize),
    pad: Padded,
    image: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::im2col::x86::use_avx512() {
        pad.check(image.len(), chans, slab.len());
        // SAFETY: as in `interleave_f32`, with `image` written instead of read.
        return unsafe { x86::deinterleave(slab.as_ptr(), chans, pad, image.as_mut_ptr()) };
    }
    deinterleave_portable(slab, chans, pad, image)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Padded, LANES};
    use crate::kernels::im2col::x86::first;

    /// Rows r₀ … r₁₅ of a 16 × 16 block as its columns: out[j][i] = r[i][j].
    #[target_feature(enable = "avx512f")]
    fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
        // t: pairs of rows interleaved within each 128-bit block.
        let t: [__m512; 16] = std::array::from_fn(|i| {
            let (a, b) = (r[i & !1], r[i | 1]);
            match i % 2 {
                0 => _mm512_unpacklo_ps(a, b),
                _ => _mm512_unpackhi_ps(a, b),
            }
        });
        // u[4q + e], block b: column 4b + e of rows 4q .. 4q + 4.
        let u: [__m512; 16] = std::array::from_fn(|i| {
            let (q, e) = (i / 4, i % 4);
            let (a, b) = (t[4 * q + e / 2], t[4 * q + 2 + e / 2]);
            match e % 2 {
                0 => _mm512_shuffle_ps::<0x44>(a, b),
                _ => _mm512_shuffle_ps::<0xEE>(a, b),
            }
        });
        // For each e: blocks b of u[e], u[4 + e], u[8 + e], u[12 + e] gathered into column
        // 4b + e, in two rounds of 128-bit block shuffles.
        let mut out = [_mm512_setzero_ps(); 16];
        for e in 0..4 {
            let v0 = _mm512_shuffle_f32x4::<0x88>(u[e], u[4 + e]);
            let v1 = _mm512_shuffle_f32x4::<0xDD>(u[e], u[4 + e]);
            let v2 = _mm512_shuffle_f32x4::<0x88>(u[8 + e], u[12 + e]);
            let v3 = _mm512_shuffle_f32x4::<0xDD>(u[8 + e], u[12 + e]);
            out[e] = _mm512_shuffle_f32x4::<0x88>(v0, v2);
            out[4 + e] = _mm512_shuffle_f32x4::<0x88>(v1, v3);
            out[8 + e] = _mm512_shuffle_f32x4::<0xDD>(v0, v2);
            out[12 + e] = _mm512_shuffle_f32x4::<0xDD>(v1, v3);
        }
        out
    }

    /// The slab positions of pixels p0 .. p0 + 16 (past the plane: repeats of the last).
    #[inline(always)]
    fn positions(pad: &Padded, p0: usize) -> [usize; 16] {
        let plane = pad.h * pad.w;
        let (mut at, mut x) = (pad.pos(p0), p0 % pad.w);
        std::array::from_fn(|j| {
            let here = at;
            if p0 + j + 1 < plane {
                // Step right, or to the start of the next image row.
                x += 1;
                at += if x == pad.w { pad.sw - pad.w + 1 } else { 1 };
                x %= pad.w;
            }
            here
        })
    }

    /// [`super::interleave_portable`] for f32.
    ///
    /// # Safety
    /// The CPU has AVX-512F, and `pad.check` holds for `image` (read through the pointer)
    /// and the slab `slab` points to.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn interleave(
        image: *const f32,
        (c0, lanes): (usize, usize),
        pad: Padded,
        slab: *mut [f32; LANES],
    ) {
        let plane = pad.h * pad.w;
        for p0 in (0..plane).step_by(16) {
            let (n, pos) = ((plane - p0).min(16), positions(&pad, p0));
            let rows: [__m512; 16] = std::array::from_fn(|l| match l < lanes {
                // SAFETY: pixels p0 .. p0 + n of channel c0 + l < c0 + lanes lie inside
                // the image (`check`); masked lanes are not read.
                true => unsafe {
                    _mm512_maskz_loadu_ps(first(n), image.add((c0 + l) * plane + p0))
                },
                false => _mm512_setzero_ps(),
            });
            for (col, &at) in transpose16(rows).iter().zip(&pos).take(n) {
                // SAFETY: `at` is a slab position of a pixel of the image (`check`).
                unsafe { _mm512_storeu_ps(slab.add(at).cast(), *col) };
            }
        }
    }

    /// [`super::deinterleave_portable`] for f32.
    ///
    /// # Safety
    /// As [`interleave`], with `image` writable.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn deinterleave(
        slab: *const [f32; LANES],
        (c0, lanes): (usize, usize),
        pad: Padded,
        image: *mut f32,
    ) {
        let plane = pad.h * pad.w;
        for p0 in (0..plane).step_by(16) {
            let (n, pos) = ((plane - p0).min(16), positions(&pad, p0));
            // SAFETY: every position is a pixel's in the slab (`check`).
            let cols = pos.map(|at| unsafe { _mm512_loadu_ps(slab.add(at).cast()) });
            for (l, row) in transpose16(cols).into_iter().enumerate().take(lanes) {
                // SAFETY: pixels p0 .. p0 + n of channel c0 + l < c0 + lanes lie inside
                // the image (`check`); masked lanes are not written.
                unsafe { _mm512_mask_storeu_ps(image.add((c0 + l) * plane + p0), first(n), row) };
            }
        }
    }
}

/// The kernel tap of phase r and filter index j along one axis: 2j + 1 − r.
fn tap(r: usize, j: usize) -> usize {
    2 * j + 1 - r
}

/// How a convolution's output is cut into 4 × 4 tiles, and the sizes of the transformed
/// buffers. Data-side buffers (D) are PAIRS × rows × 4·C_in, y-side buffers (M, Ȳ) are
/// PAIRS × rows × C_out, transformed kernels are C_out × PAIRS × 4·C_in, with the channel
/// counts rounded up to whole lane vectors; rows are sample-major, then tile row, then
/// tile column.
#[derive(Clone, Copy, Debug)]
pub struct Tiling {
    /// The convolution (for a transposed convolution, the one it is the adjoint of).
    pub g: Conv2dGeometry,
    oh: usize,
    ow: usize,
    tiles_y: usize,
    tiles_x: usize,
    /// C_in and C_out rounded up to whole lane vectors: the widths of the buffers, whose
    /// extra channels hold zeros.
    c_in_pad: usize,
    c_out_pad: usize,
    /// Whether the transforms run in [`simd_scope`]'s AVX-512 build.
    avx512: bool,
}

impl Tiling {
    /// # Panics
    /// When the kernel is not 4 × 4 with stride 2 and padding 1 (any channel counts).
    pub fn new(g: Conv2dGeometry) -> Self {
        assert!(kernel_fits(&g), "winograd: unsupported geometry {g:?}");
        let (oh, ow) = (g.out_h(), g.out_w());
        Tiling {
            g,
            oh,
            ow,
            tiles_y: oh.div_ceil(TILE),
            tiles_x: ow.div_ceil(TILE),
            c_in_pad: g.c_in.next_multiple_of(LANES),
            c_out_pad: g.c_out.next_multiple_of(LANES),
            #[cfg(target_arch = "x86_64")]
            avx512: crate::kernels::im2col::x86::use_avx512(),
            #[cfg(not(target_arch = "x86_64"))]
            avx512: false,
        }
    }

    fn tiles(&self) -> usize {
        self.tiles_y * self.tiles_x
    }

    fn rows(&self) -> usize {
        self.g.batch * self.tiles()
    }

    /// Columns of D: the four phases' (padded) input channels side by side.
    fn depth(&self) -> usize {
        4 * self.c_in_pad
    }

    /// Splits a PAIRS × rows × width buffer into each sample's rows of every plane:
    /// `views[s][pq]` is sample s's tiles × width block of plane pq.
    fn per_sample<'a, T>(&self, buf: &'a mut [T], width: usize) -> Vec<Vec<&'a mut [T]>> {
        let block = self.tiles() * width;
        let mut views: Vec<Vec<&mut [T]>> = (0..self.g.batch)
            .map(|_| Vec::with_capacity(PAIRS))
            .collect();
        for plane in buf.chunks_exact_mut(self.rows() * width) {
            for (view, rows) in views.iter_mut().zip(plane.chunks_exact_mut(block)) {
                view.push(rows);
            }
        }
        views
    }

    /// The data-side slab: x's H × W planes at (1, 1), with room for every tile's 10 × 10
    /// input window, which for tile (ty, tx) starts at slab row 8·ty, column 8·tx.
    fn data_slab(&self) -> Padded {
        let (h, w) = (self.g.h, self.g.w);
        let (sh, sw) = (2 * TILE * self.tiles_y + 2, 2 * TILE * self.tiles_x + 2);
        Padded {
            h,
            w,
            at: 1,
            sh,
            sw,
        }
    }

    /// The y-side slab: y's oh × ow planes at (0, 0), cut into whole 4 × 4 tiles.
    fn y_slab(&self) -> Padded {
        let (sh, sw) = (TILE * self.tiles_y, TILE * self.tiles_x);
        Padded {
            h: self.oh,
            w: self.ow,
            at: 0,
            sh,
            sw,
        }
    }

    /// Where tile `tile` starts in a slab of row length `sw`, for tiles `side` pixels apart.
    fn corner(&self, tile: usize, side: usize, sw: usize) -> usize {
        side * (tile / self.tiles_x) * sw + side * (tile % self.tiles_x)
    }

    /// D = Bᵀ·d·B for every tile, phase and input channel of x (N × C_in × H × W).
    pub fn transform_data<T: Float>(&self, x: &[T]) -> Vec<T> {
        let sample = self.g.c_in * self.g.h * self.g.w;
        let mut d = scratch::take(PAIRS * self.rows() * self.depth());
        let views = self.per_sample(&mut d, self.depth());
        views.into_par_iter().enumerate().for_each(|(s, mut out)| {
            let xs = &x[s * sample..][..sample];
            simd_scope(
                self.avx512,
                #[inline(always)]
                || self.data_sample(xs, &mut out),
            );
        });
        d
    }

    /// [`Self::transform_data`] of one sample `xs` (C_in × H × W) into its rows of every
    /// plane.
    #[inline(always)]
    fn data_sample<T: Float>(&self, xs: &[T], out: &mut [&mut [T]]) {
        let (c_in, k, pad) = (self.g.c_in, self.depth(), self.data_slab());
        let mut slab = pad.slab();
        let mut t = Sandwich::<T, PTS, PTS>::new();
        for c0 in (0..c_in).step_by(LANES) {
            T::interleave_lanes(xs, (c0, LANES.min(c_in - c0)), pad, &mut slab);
            for tile in 0..self.tiles() {
                let corner = self.corner(tile, 2 * TILE, pad.sw);
                for ph in 0..4 {
                    let (ry, rx) = (ph / 2, ph % 2);
                    // Phase (ry, rx) reads window rows 2a + 1 − ry, columns 2b + 1 − rx.
                    for (a, x_row) in t.x.iter_mut().enumerate() {
                        let row = &slab[corner + (2 * a + 1 - ry) * pad.sw + 1 - rx..];
                        for (b, x) in x_row.iter_mut().enumerate() {
                            *x = row[2 * b];
                        }
                    }
                    t.run(&BT);
                    let col = tile * k + ph * self.c_in_pad + c0;
                    for (pq, dst) in out.iter_mut().enumerate() {
                        *lanes_at_mut(dst, col) = t.out[pq / PTS][pq % PTS];
                    }
                }
            }
        }
    }

    /// The adjoint of [`Self::transform_data`]: every tile's B·D̄·Bᵀ, added back into an
    /// N × C_in × H × W image where the windows overlap.
    pub fn inverse_data<T: Float>(&self, dbar: &[T]) -> Vec<T> {
        let sample = self.g.c_in * self.g.h * self.g.w;
        let mut x = scratch::take(self.g.batch * sample);
        x.par_chunks_mut(sample).enumerate().for_each(|(s, xs)| {
            simd_scope(
                self.avx512,
                #[inline(always)]
                || self.inverse_data_sample(dbar, s, xs),
            );
        });
        x
    }

    /// [`Self::inverse_data`] of sample `s` into `xs` (C_in × H × W).
    #[inline(always)]
    fn inverse_data_sample<T: Float>(&self, dbar: &[T], s: usize, xs: &mut [T]) {
        let (c_in, k, rows, pad) = (self.g.c_in, self.depth(), self.rows(), self.data_slab());
        let mut slab = pad.slab();
        let mut t = Sandwich::<T, PTS, PTS>::new();
        for c0 in (0..c_in).step_by(LANES) {
            slab.fill([T::ZERO; LANES]);
            for tile in 0..self.tiles() {
                let corner = self.corner(tile, 2 * TILE, pad.sw);
                let row = s * self.tiles() + tile;
                for ph in 0..4 {
                    let (ry, rx) = (ph / 2, ph % 2);
                    let col = row * k + ph * self.c_in_pad + c0;
                    for (pq, x) in t.x.as_flattened_mut().iter_mut().enumerate() {
                        *x = *lanes_at(dbar, pq * rows * k + col);
                    }
                    t.run(&B);
                    // Window positions in the slab's border are padding: their sums are
                    // dropped with it.
                    for (a, patch_row) in t.out.iter().enumerate() {
                        let at = corner + (2 * a + 1 - ry) * pad.sw + 1 - rx;
                        for (b, v) in patch_row.iter().enumerate() {
                            let acc = &mut slab[at + 2 * b];
                            acc.iter_mut().zip(v).for_each(|(acc, &v)| *acc += v);
                        }
                    }
                }
            }
            T::deinterleave_lanes(&slab, (c0, LANES.min(c_in - c0)), pad, xs);
        }
    }

    /// Ȳ = A·ȳ·Aᵀ for every 4 × 4 tile of y (N × C_out × oh × ow), zeros past its edges:
    /// the adjoint of [`Self::inverse_y`].
    pub fn transform_y<T: Float>(&self, y: &[T]) -> Vec<T> {
        let sample = self.g.c_out * self.oh * self.ow;
        let mut ybar = scratch::take(PAIRS * self.rows() * self.c_out_pad);
        let views = self.per_sample(&mut ybar, self.c_out_pad);
        views.into_par_iter().enumerate().for_each(|(s, mut out)| {
            let ys = &y[s * sample..][..sample];
            simd_scope(
                self.avx512,
                #[inline(always)]
                || self.y_sample(ys, &mut out),
            );
        });
        ybar
    }

    /// [`Self::transform_y`] of one sample `ys` (C_out × oh × ow) into its rows of every
    /// plane.
    #[inline(always)]
    fn y_sample<T: Float>(&self, ys: &[T], out: &mut [&mut [T]]) {
        let (c_out, width, pad) = (self.g.c_out, self.c_out_pad, self.y_slab());
        let mut slab = pad.slab();
        let mut t = Sandwich::<T, PTS, TILE>::new();
        for c0 in (0..c_out).step_by(LANES) {
            T::interleave_lanes(ys, (c0, LANES.min(c_out - c0)), pad, &mut slab);
            for tile in 0..self.tiles() {
                let corner = self.corner(tile, TILE, pad.sw);
                for (u, x_row) in t.x.iter_mut().enumerate() {
                    x_row.copy_from_slice(&slab[corner + u * pad.sw..][..TILE]);
                }
                t.run(&A);
                let col = tile * width + c0;
                for (pq, dst) in out.iter_mut().enumerate() {
                    *lanes_at_mut(dst, col) = t.out[pq / PTS][pq % PTS];
                }
            }
        }
    }

    /// y = Aᵀ·M·A for every tile, cut to N × C_out × oh × ow.
    pub fn inverse_y<T: Float>(&self, m: &[T]) -> Vec<T> {
        let sample = self.g.c_out * self.oh * self.ow;
        let mut y = scratch::take(self.g.batch * sample);
        y.par_chunks_mut(sample).enumerate().for_each(|(s, ys)| {
            simd_scope(
                self.avx512,
                #[inline(always)]
                || self.inverse_y_sample(m, s, ys),
            );
        });
        y
    }

    /// [`Self::inverse_y`] of sample `s` into `ys` (C_out × oh × ow).
    #[inline(always)]
    fn inverse_y_sample<T: Float>(&self, m: &[T], s: usize, ys: &mut [T]) {
        let (c_out, width, rows, pad) = (self.g.c_out, self.c_out_pad, self.rows(), self.y_slab());
        let mut slab = pad.slab();
        let mut t = Sandwich::<T, TILE, PTS>::new();
        for c0 in (0..c_out).step_by(LANES) {
            for tile in 0..self.tiles() {
                let corner = self.corner(tile, TILE, pad.sw);
                let col = (s * self.tiles() + tile) * width + c0;
                for (pq, x) in t.x.as_flattened_mut().iter_mut().enumerate() {
                    *x = *lanes_at(m, pq * rows * width + col);
                }
                t.run(&AT);
                // Every tile lies inside the slab; what falls past y's edges is dropped.
                for (u, t_row) in t.out.iter().enumerate() {
                    slab[corner + u * pad.sw..][..TILE].copy_from_slice(t_row);
                }
            }
            T::deinterleave_lanes(&slab, (c0, LANES.min(c_out - c0)), pad, ys);
        }
    }

    /// W = G·h·Gᵀ for every phase of every kernel (C_out × C_in × 4 × 4), laid out
    /// C_out × PAIRS × 4·C_in.
    pub fn transform_weight<T: Float>(&self, w: &[T]) -> Vec<T> {
        let per_kernel = self.g.c_in * 16;
        let mut wt = scratch::take(self.c_out_pad * PAIRS * self.depth());
        wt.par_chunks_mut(PAIRS * self.depth())
            .enumerate()
            .for_each(|(co, out)| match co < self.g.c_out {
                true => {
                    let wc = &w[co * per_kernel..][..per_kernel];
                    simd_scope(
                        self.avx512,
                        #[inline(always)]
                        || self.weight_kernel(wc, out),
                    )
                }
                // Output channels added to fill a lane vector have zero kernels.
                false => out.fill(T::ZERO),
            });
        wt
    }

    /// [`Self::transform_weight`] of one output channel's kernels `wc` (C_in × 4 × 4) into
    /// its row `out` (PAIRS × 4·C_in).
    #[inline(always)]
    fn weight_kernel<T: Float>(&self, wc: &[T], out: &mut [T]) {
        let (c_in, k) = (self.g.c_in, self.depth());
        let mut t = Sandwich::<T, PTS, 2>::new();
        for c0 in (0..c_in).step_by(LANES) {
            let lanes = LANES.min(c_in - c0);
            for ph in 0..4 {
                let (ry, rx) = (ph / 2, ph % 2);
                for (j, h_row) in t.x.iter_mut().enumerate() {
                    for (l, h) in h_row.iter_mut().enumerate() {
                        let t = tap(ry, j) * 4 + tap(rx, l);
                        for (lane, h) in h.iter_mut().enumerate() {
                            *h = match lane < lanes {
                                true => wc[(c0 + lane) * 16 + t],
                                false => T::ZERO,
                            };
                        }
                    }
                }
                t.run(&G);
                let col = ph * self.c_in_pad + c0;
                for (pq, dst) in out.chunks_exact_mut(k).enumerate() {
                    *lanes_at_mut(dst, col) = t.out[pq / PTS][pq % PTS];
                }
            }
        }
    }

    /// The adjoint of [`Self::transform_weight`]: ∂L/∂w (C_out × C_in × 4 × 4) from the
    /// gradient of the transformed kernels, laid out PAIRS × C_out × 4·C_in.
    pub fn inverse_weight<T: Float>(&self, gwt: &[T]) -> Vec<T> {
        let per_kernel = self.g.c_in * 16;
        let mut gw = scratch::take(self.g.c_out * per_kernel);
        gw.par_chunks_mut(per_kernel)
            .enumerate()
            .for_each(|(co, out)| {
                simd_scope(
                    self.avx512,
                    #[inline(always)]
                    || self.inverse_weight_kernel(gwt, co, out),
                )
            });
        gw
    }

    /// [`Self::inverse_weight`] of output channel `co` into its kernels `out`
    /// (C_in × 4 × 4).
    #[inline(always)]
    fn inverse_weight_kernel<T: Float>(&self, gwt: &[T], co: usize, out: &mut [T]) {
        let (c_in, k, width) = (self.g.c_in, self.depth(), self.c_out_pad);
        let mut t = Sandwich::<T, 2, PTS>::new();
        for c0 in (0..c_in).step_by(LANES) {
            let lanes = LANES.min(c_in - c0);
            for ph in 0..4 {
                let (ry, rx) = (ph / 2, ph % 2);
                let col = co * k + ph * self.c_in_pad + c0;
                for (pq, x) in t.x.as_flattened_mut().iter_mut().enumerate() {
                    *x = *lanes_at(gwt, pq * width * k + col);
                }
                t.run(&GT);
                for (j, h_row) in t.out.iter().enumerate() {
                    for (l, h) in h_row.iter().enumerate() {
                        let t = tap(ry, j) * 4 + tap(rx, l);
                        for (lane, &h) in h[..lanes].iter().enumerate() {
                            out[(c0 + lane) * 16 + t] = h;
                        }
                    }
                }
            }
        }
    }

    /// Plane pq of the transformed kernels as a 4·C_in × C_out matrix.
    fn weight_plane<'a, T>(&self, wt: &'a [T], pq: usize) -> MatRef<'a, T> {
        let k = self.depth();
        MatRef {
            data: &wt[pq * k..],
            rows: k,
            cols: self.c_out_pad,
            rs: 1,
            cs: PAIRS * k,
        }
    }

    /// `M[pq] = D[pq] · W[pq]`: the convolution's products, PAIRS × rows × C_out.
    pub fn forward_products<T: Float + GemmScalar>(&self, d: &[T], wt: &[T]) -> Vec<T> {
        let (rows, k, c_out) = (self.rows(), self.depth(), self.c_out_pad);
        let mut m = scratch::take(PAIRS * rows * c_out);
        m.par_chunks_exact_mut(rows * c_out)
            .zip(d.par_chunks_exact(rows * k))
            .enumerate()
            .for_each(|(pq, (m, d))| {
                let a = MatRef::row_major(d, rows, k);
                T::gemm_serial(T::ONE, a, self.weight_plane(wt, pq), T::ZERO, m, c_out);
            });
        m
    }

    /// `D̄[pq] = Ȳ[pq] · W[pq]ᵀ`: the adjoint's products, PAIRS × rows × 4·C_in.
    pub fn adjoint_products<T: Float + GemmScalar>(&self, ybar: &[T], wt: &[T]) -> Vec<T> {
        let (rows, k, c_out) = (self.rows(), self.depth(), self.c_out_pad);
        let mut dbar = scratch::take(PAIRS * rows * k);
        dbar.par_chunks_exact_mut(rows * k)
            .zip(ybar.par_chunks_exact(rows * c_out))
            .enumerate()
            .for_each(|(pq, (dbar, ybar))| {
                let a = MatRef::row_major(ybar, rows, c_out);
                let b = self.weight_plane(wt, pq).t();
                T::gemm_serial(T::ONE, a, b, T::ZERO, dbar, k);
            });
        dbar
    }

    /// `∂L/∂W[pq] = Ȳ[pq]ᵀ · D[pq]`, summed over every tile of the batch: PAIRS × C_out ×
    /// 4·C_in.
    pub fn weight_products<T: Float + GemmScalar>(&self, ybar: &[T], d: &[T]) -> Vec<T> {
        let (rows, k, c_out) = (self.rows(), self.depth(), self.c_out_pad);
        let mut gwt = scratch::take(PAIRS * c_out * k);
        gwt.par_chunks_exact_mut(c_out * k)
            .zip(ybar.par_chunks_exact(rows * c_out))
            .zip(d.par_chunks_exact(rows * k))
            .for_each(|((gwt, ybar), d)| {
                let a = MatRef::row_major(ybar, rows, c_out).t();
                let b = MatRef::row_major(d, rows, k);
                T::gemm_serial(T::ONE, a, b, T::ZERO, gwt, k);
            });
        gwt
    }

    /// The convolution y (N × C_out × oh × ow) of x with w.
    pub fn conv<T: Float + GemmScalar>(&self, x: &[T], w: &[T]) -> Vec<T> {
        let (d, wt) = (self.transform_data(x), self.transform_weight(w));
        let m = self.forward_products(&d, &wt);
        let y = self.inverse_y(&m);
        [d, wt, m].into_iter().for_each(scratch::give);
        y
    }

    /// The adjoint of the convolution, x (N × C_in × H × W) from y: the transposed
    /// convolution, and ∂L/∂x of the convolution.
    pub fn adjoint<T: Float + GemmScalar>(&self, y: &[T], w: &[T]) -> Vec<T> {
        let (ybar, wt) = (self.transform_y(y), self.transform_weight(w));
        let dbar = self.adjoint_products(&ybar, &wt);
        let x = self.inverse_data(&dbar);
        [ybar, wt, dbar].into_iter().for_each(scratch::give);
        x
    }

    /// Σ over the batch of the weight gradient of the convolution of x with y's gradient.
    pub fn weight_grad<T: Float + GemmScalar>(&self, x: &[T], gy: &[T]) -> Vec<T> {
        let (d, ybar) = (self.transform_data(x), self.transform_y(gy));
        let gwt = self.weight_products(&ybar, &d);
        let gw = self.inverse_weight(&gwt);
        [d, ybar, gwt].into_iter().for_each(scratch::give);
        gw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::im2col::{conv2d_naive, conv_transpose2d_naive};

    /// Values in [−1, 1) from a small linear congruential generator.
    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    fn geometry(batch: usize, c_in: usize, c_out: usize, h: usize, w: usize) -> Conv2dGeometry {
        Conv2dGeometry {
            batch,
            c_in,
            c_out,
            h,
            w,
            kh: 4,
            kw: 4,
            stride: 2,
            padding: 1,
        }
    }

    /// Odd and even sizes, one tile and several, part tiles, and channel counts on both
    /// sides of a lane block.
    fn geometries() -> Vec<Conv2dGeometry> {
        vec![
            geometry(2, 3, 5, 4, 4),
            geometry(1, 2, 1, 2, 3),
            geometry(2, 17, 18, 14, 14),
            geometry(3, 16, 4, 7, 5),
            geometry(1, 5, 33, 9, 12),
            geometry(2, 1, 2, 28, 17),
        ]
    }

    /// ∂L/∂W[o][c][i][j] = Σ_{n, oy, ox} gy[n][o][oy][ox] · x[n][c][2·oy + i − 1][2·ox + j − 1].
    fn weight_grad_naive(g: &Conv2dGeometry, x: &[f64], gy: &[f64]) -> Vec<f64> {
        let (oh, ow) = (g.out_h(), g.out_w());
        let mut gw = vec![0.0; g.c_out * g.c_in * 16];
        for n in 0..g.batch {
            for o in 0..g.c_out {
                for c in 0..g.c_in {
                    for (t, gw) in gw[(o * g.c_in + c) * 16..][..16].iter_mut().enumerate() {
                        let (i, j) = (t / 4, t % 4);
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let (iy, ix) = (2 * oy + i, 2 * ox + j);
                                if iy == 0 || ix == 0 || iy > g.h || ix > g.w {
                                    continue;
                                }
                                let xv = x[((n * g.c_in + c) * g.h + iy - 1) * g.w + ix - 1];
                                *gw += gy[((n * g.c_out + o) * oh + oy) * ow + ox] * xv;
                            }
                        }
                    }
                }
            }
        }
        gw
    }

    #[track_caller]
    fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol * scale,
                "{what}[{i}]: {g} against {w} (scale {scale})"
            );
        }
    }

    #[test]
    fn the_one_dimensional_transforms_compute_a_two_tap_correlation() {
        let (d, h) = (values(PTS, 1), values(2, 2));
        let dt: Vec<f64> = BT
            .iter()
            .map(|r| r.iter().zip(&d).map(|(c, v)| c * v).sum())
            .collect();
        let ht: Vec<f64> = G.iter().map(|r| r[0] * h[0] + r[1] * h[1]).collect();
        for (u, row) in AT.iter().enumerate() {
            let got: f64 = row
                .iter()
                .zip(dt.iter().zip(&ht))
                .map(|(a, (d, h))| a * d * h)
                .sum();
            let want = d[u] * h[0] + d[u + 1] * h[1];
            assert!(
                (got - want).abs() < 1e-14,
                "output {u}: {got} against {want}"
            );
        }
    }

    #[test]
    fn convolution_adjoint_and_weight_gradient_match_the_direct_sums_in_f64() {
        for (i, g) in geometries().into_iter().enumerate() {
            let t = Tiling::new(g);
            let x = values(g.input_shape().iter().product(), 10 + i as u64);
            let w = values(g.weight_shape().iter().product(), 20 + i as u64);
            let gy = values(g.output_shape().iter().product(), 30 + i as u64);
            let what = format!("{g:?}");
            assert_close(
                &what,
                &t.conv(&x, &w),
                &conv2d_naive(&g, &x, &w, None),
                1e-13,
            );
            let adj = conv_transpose2d_naive(&g, &gy, &w, None);
            assert_close(&what, &t.adjoint(&gy, &w), &adj, 1e-13);
            let gw = weight_grad_naive(&g, &x, &gy);
            assert_close(&what, &t.weight_grad(&x, &gy), &gw, 1e-13);
        }
    }

    #[test]
    fn f32_results_stay_within_a_few_millionths_of_the_direct_sums() {
        let g = geometry(4, 64, 32, 14, 14);
        let t = Tiling::new(g);
        let x = values(g.input_shape().iter().product(), 3);
        let w = values(g.weight_shape().iter().product(), 4);
        let gy = values(g.output_shape().iter().product(), 5);
        let f = |v: &[f64]| v.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let back = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
        // The oracle sees the same rounded inputs.
        let (x, w, gy) = (back(f(&x)), back(f(&w)), back(f(&gy)));
        let conv = back(t.conv(&f(&x), &f(&w)));
        assert_close("conv", &conv, &conv2d_naive(&g, &x, &w, None), 2e-5);
        let adj = back(t.adjoint(&f(&gy), &f(&w)));
        assert_close(
            "adjoint",
            &adj,
            &conv_transpose2d_naive(&g, &gy, &w, None),
            2e-5,
        );
        let gw = back(t.weight_grad(&f(&x), &f(&gy)));
        assert_close("weight", &gw, &weight_grad_naive(&g, &x, &gy), 2e-5);
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let g = geometry(8, 32, 48, 14, 14);
        let t = Tiling::new(g);
        let x: Vec<f32> = values(g.input_shape().iter().product(), 6)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let w: Vec<f32> = values(g.weight_shape().iter().product(), 7)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let y = t.conv(&x, &w);
                (t.adjoint(&y, &w), t.weight_grad(&x, &y), y)
            })
        };
        assert!(run(1) == run(3), "1 and 3 threads differ");
    }

    /// The transforms' AVX-512 build gives the bits of the baseline build, which runs here
    /// too, in all six transforms.
    #[test]
    fn transforms_agree_on_both_instruction_sets() {
        let g = geometry(2, 17, 18, 14, 14);
        let (oh, ow) = (g.out_h(), g.out_w());
        let x: Vec<f32> = values(g.batch * g.c_in * g.h * g.w, 11)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let y: Vec<f32> = values(g.batch * g.c_out * oh * ow, 12)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let w: Vec<f32> = values(g.c_out * g.c_in * 16, 13)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let all = |t: &Tiling| {
            let (d, ybar, wt) = (
                t.transform_data(&x),
                t.transform_y(&y),
                t.transform_weight(&w),
            );
            let x_back = t.inverse_data(&d);
            let y_back = t.inverse_y(&ybar);
            let w_back = t.inverse_weight(&t.weight_products(&ybar, &d));
            [d, ybar, wt, x_back, y_back, w_back]
        };
        let mut t = Tiling::new(g);
        t.avx512 = false;
        let baseline = all(&t);
        assert!(baseline.iter().all(|v| v.iter().any(|&v| v != 0.0)));
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::im2col::x86::use_avx512() {
            t.avx512 = true;
            assert!(all(&t) == baseline, "the AVX-512 build differs");
        }
    }

    /// The f32 interleave and its inverse (AVX-512 transposes where the CPU has them)
    /// against the portable loops, to the bit: planes of 1 to 40 pixels (a partial block of
    /// 16 and several), 1 to 16 lanes, images at the slab's corner and inside a border.
    #[test]
    fn interleave_kernels_match_the_portable_loops() {
        for (h, w, at) in [
            (1, 1, 0),
            (3, 5, 1),
            (4, 4, 0),
            (7, 7, 0),
            (5, 8, 1),
            (14, 3, 1),
        ] {
            let pad = Padded {
                h,
                w,
                at,
                sh: h + 2 * at + 1,
                sw: w + 2 * at + 2,
            };
            for (c0, lanes) in [(0, 16), (2, 16), (1, 7), (0, 1), (3, 0)] {
                let channels = c0 + lanes + 1;
                let image: Vec<f32> = values(channels * h * w, (h * 31 + lanes) as u64)
                    .into_iter()
                    .map(|v| v as f32)
                    .collect();
                let (mut fast, mut portable) = (pad.slab::<f32>(), pad.slab::<f32>());
                interleave_f32(&image, (c0, lanes), pad, &mut fast);
                interleave_portable(&image, (c0, lanes), pad, &mut portable);
                let what = format!("{pad:?}, lanes {c0}..{}", c0 + lanes);
                assert!(fast == portable, "interleave {what}");
                if lanes > 0 {
                    assert!(portable.iter().flatten().any(|&v| v != 0.0), "{what}");
                }
                let (mut back_fast, mut back_portable) =
                    (vec![9.0; image.len()], vec![9.0; image.len()]);
                deinterleave_f32(&fast, (c0, lanes), pad, &mut back_fast);
                deinterleave_portable(&portable, (c0, lanes), pad, &mut back_portable);
                assert!(back_fast == back_portable, "deinterleave {what}");
                // The channels moved come back; the others are left alone.
                let plane = h * w;
                let moved = c0 * plane..(c0 + lanes) * plane;
                assert_eq!(back_fast[moved.clone()], image[moved.clone()], "{what}");
                assert!(back_fast[..moved.start].iter().all(|&v| v == 9.0), "{what}");
                assert!(back_fast[moved.end..].iter().all(|&v| v == 9.0), "{what}");
            }
        }
    }

    #[test]
    fn only_dcgan_kernels_with_enough_channels_take_this_path() {
        assert!(shape_fits(&geometry(1, 16, 16, 14, 14)));
        assert!(!shape_fits(&geometry(1, 1, 64, 28, 28)));
        assert!(!shape_fits(&geometry(1, 64, 15, 28, 28)));
        assert!(!shape_fits(&Conv2dGeometry {
            stride: 1,
            ..geometry(1, 16, 16, 8, 8)
        }));
        assert!(!shape_fits(&Conv2dGeometry {
            padding: 0,
            ..geometry(1, 16, 16, 8, 8)
        }));
        assert!(!shape_fits(&Conv2dGeometry {
            kh: 3,
            ..geometry(1, 16, 16, 8, 8)
        }));
    }
}
