//! The AVX2 + FMA micro-kernel: MR × NR = 4 × 16 (two 8-lane vectors per row).
//!
//! Each depth step is 2 loads, 4 broadcasts and 8 FMAs into 8 accumulators. Chosen by
//! measurement on a Zen 3 core (two FMA ports, 4-cycle latency, 16 ymm registers), with the
//! tile alone on packed data in L1, as a share of the FMA ceiling:
//!
//! | tile   | accumulators | alone in L1 | why not                                       |
//! |--------|--------------|-------------|-----------------------------------------------|
//! | 6 × 16 | 12           | ≈ 98 %      | m = 32 needs six tiles, the last one 2/6 full |
//! | 4 × 16 | 8            | ≈ 96 %      | (chosen) 4 divides every m of W1              |
//! | 4 × 24 | 12           | ≈ 50–65 %   | needs all 16 registers; the compiler spills   |
//! | 8 × 8  | 8            | ≈ 47 %      | 9 loads per 8 FMAs                            |
//!
//! On the W1 products (m = 32) 4 × 16 beat 6 × 16 by 5–10 % of the ceiling and matched it on
//! squares. Blocking (KC, MC, NC) = (256, 192, 512): a sweep over KC ∈ {128, 256, 384, 512},
//! MC ∈ {96, 192}, NC ∈ {64 … 1024} on the square products first chose KC = 512, but then a
//! B̃ panel (KC × 16 floats = 32 KiB) fills all of L1 with the A panel still to come, and the
//! batch-wide convolution products (k = 2048, n = 3136) ran at 38 GFLOP/s against
//! matrixmultiply's 59; with KC = 256 they run level with it or better, and the W1 products
//! gained or held (`cargo bench --bench gemm`, `examples/perf`).

use std::arch::x86_64::*;

use super::packed::{pack_panel, pack_panels, tile_part, Ahead, MicroKernel};

/// Rows of the micro-tile.
const MR: usize = 4;
/// 8-lane vectors per row of the micro-tile.
const NV: usize = 2;

simd_tile! {
    /// The 4 × 16 AVX2 tile.
    fn tile_4x16;
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
        tile_4x16::<false>(k, a, (b, NV * 8), no_copy, (c, rsc), (alpha, beta), ahead)
    }

    unsafe fn tile_packing_b(
        k: usize,
        a: *const f32,
        b: (*const f32, usize),
        b_copy: *mut f32,
        c: *mut f32,
        rsc: usize,
        scalars: (f32, f32),
    ) {
        tile_4x16::<true>(k, a, b, b_copy, (c, rsc), scalars, None)
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
        tile_part_avx2(k, a, b, c, scalars, strides, size)
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
        pack_panels::<{ NV * 8 }>(
            dst,
            src,
            (len, depth),
            (sr, sp),
            pack_panel_avx2::<{ NV * 8 }>,
        )
    }
}

/// [`pack_panel`] with the transposing case (contiguous depth, sp = 1) done in 8 × 8
/// blocks in registers, for full panels whose R is a multiple of 8. That case is the
/// input-gradient layout G·Wᵀ, where every element of W must move.
///
/// # Safety
/// As [`pack_panel`], and the CPU supports AVX2.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn pack_panel_avx2<const R: usize>(
    dst: *mut f32,
    src: *const f32,
    rows: usize,
    depth: usize,
    sr: usize,
    sp: usize,
) {
    if rows != R || sp != 1 || !(R == 4 || R.is_multiple_of(8)) {
        return pack_panel::<R>(dst, src, rows, depth, sr, sp);
    }
    let whole = depth - depth % 8;
    if R == 4 {
        for p0 in (0..whole).step_by(8) {
            // Four rows at depths p0..p0 + 8 become 8 depths of 4 rows: 32 floats in a row.
            let s = src.add(p0);
            let rows4 = std::array::from_fn(|i| _mm256_loadu_ps(s.add(i * sr)));
            for (t, v) in transpose4x8(rows4).into_iter().enumerate() {
                _mm256_storeu_ps(dst.add(p0 * 4 + t * 8), v);
            }
        }
    }
    // Eight rows at a time, front to back: with a power-of-two row stride all the rows fall
    // in one L1 set, and eight of them fit where sixteen would evict each other.
    for r0 in (0..R).step_by(8).filter(|_| R != 4) {
        for p0 in (0..whole).step_by(8) {
            // Rows r0..r0 + 8 of S at depths p0..p0 + 8, turned into depths of 8 rows.
            let s = src.add(r0 * sr + p0);
            let rows8 = std::array::from_fn(|i| _mm256_loadu_ps(s.add(i * sr)));
            let cols8 = transpose8(rows8);
            for (t, col) in cols8.into_iter().enumerate() {
                _mm256_storeu_ps(dst.add((p0 + t) * R + r0), col);
            }
        }
    }
    for p in whole..depth {
        for i in 0..R {
            *dst.add(p * R + i) = *src.add(i * sr + p);
        }
    }
}

/// Four rows of 8 as 8 columns of 4, laid end to end in four vectors: (c0 c1), (c2 c3),
/// (c4 c5), (c6 c7), where cⱼ holds element j of each row.
#[target_feature(enable = "avx2,fma")]
fn transpose4x8(r: [__m256; 4]) -> [__m256; 4] {
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    // u0 = c0 | c4, u1 = c1 | c5, u2 = c2 | c6, u3 = c3 | c7
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u1),
        _mm256_permute2f128_ps::<0x20>(u2, u3),
        _mm256_permute2f128_ps::<0x31>(u0, u1),
        _mm256_permute2f128_ps::<0x31>(u2, u3),
    ]
}

/// The transpose of an 8 × 8 block held as 8 row vectors: unpack pairs of rows, shuffle
/// pairs of pairs, then swap 128-bit halves.
#[target_feature(enable = "avx2,fma")]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    // t: rows (0,1), (2,3), ... interleaved: t0 = r0₀ r1₀ r0₁ r1₁ | r0₄ r1₄ r0₅ r1₅
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    // u: columns c and c + 4 of four rows: u0 = r0₀ r1₀ r2₀ r3₀ | r0₄ r1₄ r2₄ r3₄
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    // Low halves give columns 0–3, high halves columns 4–7.
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

/// [`tile_part`] compiled for AVX2, so that its merge runs fused multiply-adds.
///
/// # Safety
/// As `MicroKernel::tile_part`, and the CPU supports the features above.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_part_avx2(
    k: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    scalars: (f32, f32),
    strides: (usize, usize),
    size: (usize, usize),
) {
    tile_part::<Avx2>(k, a, b, c, scalars, strides, size)
}

#[cfg(test)]
mod tests {
    use super::super::Kernel;
    use super::*;

    /// Packs a slab with `panel` into a buffer that starts NaN-filled, so that any element
    /// the packer forgets shows.
    fn packed_with(
        panel: unsafe fn(*mut f32, *const f32, usize, usize, usize, usize),
        r: usize,
        src: &[f32],
        (rows, depth, sr, sp): (usize, usize, usize, usize),
    ) -> Vec<f32> {
        let mut dst = vec![f32::NAN; r * depth];
        // SAFETY: the callers size `src` to hold every (i, p) with i < rows, p < depth, and
        // `dst` holds r·depth values; `panel` is only an AVX2 packer when the CPU has AVX2.
        unsafe { panel(dst.as_mut_ptr(), src.as_ptr(), rows, depth, sr, sp) };
        dst
    }

    fn check_panel<const R: usize>() {
        // Full panels in both layouts, ragged depths (the scalar tail after whole 8s) and a
        // short panel (the portable fallback).
        for (rows, depth) in [(R, 8), (R, 21), (R, 1), (R.saturating_sub(1).max(1), 13)] {
            for (sr, sp) in [(depth + 3, 1), (1, R + 2)] {
                let len = (rows - 1) * sr + (depth - 1) * sp + 1;
                let src: Vec<f32> = (0..len).map(|v| v as f32).collect();
                let shape = (rows, depth, sr, sp);
                let want = packed_with(pack_panel::<R>, R, &src, shape);
                let got = packed_with(pack_panel_avx2::<R>, R, &src, shape);
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "R = {R}, rows {rows}, depth {depth}, strides ({sr}, {sp})"
                );
            }
        }
    }

    /// The SIMD packer against the portable one for every panel height any kernel uses
    /// (4 and 16 here, 8 and 32 for AVX-512, which this machine may lack).
    #[test]
    fn simd_packing_matches_portable_packing() {
        if !Kernel::Avx2.is_available() {
            return;
        }
        check_panel::<4>();
        check_panel::<8>();
        check_panel::<16>();
        check_panel::<32>();
    }
}
