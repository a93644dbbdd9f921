//! The AVX-512F micro-kernel: MR × NR = 8 × 32 (two 16-lane vectors per row).
//!
//! 16 accumulators, 2 vectors of B̃ and a broadcast use 19 of the 32 zmm registers; each
//! depth step is 2 loads, 8 broadcasts and 16 FMAs, enough independent chains to cover the
//! FMA latency on two 512-bit ports. MR = 8 divides the m = 32 of every W1 product and
//! NR = 32 most of their n. KC = 256 keeps a B̃ panel (32 KiB) within L1.
//!
//! Measured on an Ice Lake server core (two 512-bit FMA ports): about 150 GFLOP/s, 73% of
//! the FMA ceiling, on a product whose operands sit in L2, and 1.1–1.75× the AVX2 kernel on
//! every W1 and W2 shape. A 12 × 32 tile and KC ∈ {128, 192} were tried against 8 × 32 with
//! KC = 256 and differed by less than the noise of that shared machine (±20% between runs),
//! so the sizes stay. On a Zen 4 core (512-bit instructions on two 256-bit FMA pipes, 118
//! GFLOP/s ceiling) it reaches 90–93% on the W1 forward products and on 512³, and KC = 128
//! again made no difference. On an Intel server core with two 512-bit FMA ports (a burst
//! ceiling of 217–224 GFLOP/s) it reaches 65–71% of that on 512³ and 1024³, where
//! PyTorch's own products reach 74–76%; a 12 × 32 tile for products with many rows ran 8%
//! faster alone on packed operands there, but no faster in the real product and slower in
//! whole training iterations, so it was taken out again. The loop is the same macro as the
//! AVX2 tile, and the tests run this kernel wherever the CPU has AVX-512.

use std::arch::x86_64::*;

use super::kernel_avx2::pack_panel_avx2;
use super::packed::{pack_panels, tile_part, Ahead, MicroKernel};

/// Rows of the micro-tile.
const MR: usize = 8;
/// 16-lane vectors per row of the micro-tile.
const NV: usize = 2;

simd_tile! {
    /// The 8 × 32 AVX-512 tile.
    fn tile_8x32;
    features = "avx512f,avx2,fma",
    mr = MR,
    nv = NV,
    width = 16,
    zero = _mm512_setzero_ps,
    splat = _mm512_set1_ps,
    load = _mm512_loadu_ps,
    store = _mm512_storeu_ps,
    mul = _mm512_mul_ps,
    fma = _mm512_fmadd_ps,
}

/// The AVX-512F kernel.
pub(super) struct Avx512;

impl MicroKernel for Avx512 {
    const MR: usize = MR;
    const NR: usize = NV * 16;
    const KC: usize = 256;
    const MC: usize = 192;
    const NC: usize = 512;

    unsafe fn tile(
        k: usize,
        alpha: f32,
        a: *const f32,
        b: *const f32,
        beta: f32,
        (c, rsc): (*mut f32, usize),
        ahead: Option<Ahead>,
    ) {
        let no_copy = std::ptr::null_mut();
        tile_8x32::<false>(k, a, (b, NV * 16), no_copy, (c, rsc), (alpha, beta), ahead)
    }

    // Packing is memory-bound; the AVX2 transposes serve here too.
    unsafe fn tile_packing_b(
        k: usize,
        a: *const f32,
        b: (*const f32, usize),
        b_copy: *mut f32,
        c: *mut f32,
        rsc: usize,
        scalars: (f32, f32),
    ) {
        tile_8x32::<true>(k, a, b, b_copy, (c, rsc), scalars, None)
    }

    unsafe fn tile_part(
        k: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        scalars: (f32, f32),
        strides: (usize, usize),
        size: (usize, usize),
    ) {
        tile_part_avx512(k, a, b, c, scalars, strides, size)
    }

    unsafe fn pack_a(
        dst: *mut f32,
        src: *const f32,
        len: usize,
        depth: usize,
        sr: usize,
        sp: usize,
    ) {
        pack_panels::<MR>(dst, src, (len, depth), (sr, sp), pack_panel_avx2::<MR>)
    }

    unsafe fn pack_b(
        dst: *mut f32,
        src: *const f32,
        len: usize,
        depth: usize,
        sr: usize,
        sp: usize,
    ) {
        pack_panels::<{ NV * 16 }>(
            dst,
            src,
            (len, depth),
            (sr, sp),
            pack_panel_avx2::<{ NV * 16 }>,
        )
    }
}

/// [`tile_part`] compiled for AVX-512, so that its merge runs fused multiply-adds.
///
/// # Safety
/// As `MicroKernel::tile_part`, and the CPU supports the features above.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn tile_part_avx512(
    k: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    scalars: (f32, f32),
    strides: (usize, usize),
    size: (usize, usize),
) {
    tile_part::<Avx512>(k, a, b, c, scalars, strides, size)
}
