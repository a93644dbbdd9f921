//! The AVX2 + FMA micro-kernel: MR × NR = 4 × 24 (three 8-lane vectors per row).
//!
//! 12 accumulators + 3 vectors of B̃ + 1 broadcast use all 16 ymm registers. Each depth
//! step is 3 loads, 4 broadcasts and 12 FMAs, so the two FMA ports stay busy while the
//! load ports have slack. MR = 4 divides the m = 32 of every W1 product.

use std::arch::x86_64::*;

use super::packed::MicroKernel;

/// Rows of the micro-tile.
const MR: usize = 4;
/// 8-lane vectors per row of the micro-tile.
const NV: usize = 3;

simd_tile! {
    /// The 4 × 24 AVX2 tile.
    fn tile_4x24;
    features = "avx2,fma",
    mr = MR,
    nv = NV,
    width = 8,
    zero = _mm256_setzero_ps,
    splat = _mm256_set1_ps,
    load = _mm256_loadu_ps,
    store = _mm256_storeu_ps,
    mul = _mm256_mul_ps,
    fma = _mm256_fmadd_ps,
}

/// The AVX2 + FMA kernel.
pub(super) struct Avx2;

impl MicroKernel for Avx2 {
    const MR: usize = MR;
    const NR: usize = NV * 8;
    const KC: usize = 256;
    const MC: usize = 96;
    const NC: usize = 1920;

    unsafe fn tile(
        k: usize,
        alpha: f32,
        a: *const f32,
        b: *const f32,
        beta: f32,
        c: *mut f32,
        rsc: usize,
    ) {
        tile_4x24(k, alpha, a, b, beta, c, rsc)
    }
}
