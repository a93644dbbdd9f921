//! The portable micro-kernel: plain Rust, MR × NR = 4 × 8, for CPUs without a SIMD kernel
//! here (and as the reference the SIMD kernels are tested beside).
//!
//! The loops have constant trip counts, so the compiler unrolls them and vectorises the
//! NR columns for the baseline instruction set (SSE2 on x86-64, NEON on aarch64).

use super::packed::{pack_panel, pack_panels, tile_part, update, Ahead, MicroKernel};

/// The portable kernel.
pub(super) struct Portable;

const MR: usize = 4;
const NR: usize = 8;

impl MicroKernel for Portable {
    const MR: usize = MR;
    const NR: usize = NR;
    const KC: usize = 256;
    const MC: usize = 128;
    const NC: usize = 512;

    unsafe fn tile(
        k: usize,
        alpha: f32,
        a: *const f32,
        b: *const f32,
        beta: f32,
        (c, rsc): (*mut f32, usize),
        _ahead: Option<Ahead>,
    ) {
        // SAFETY: the caller guarantees `a` holds MR·k and `b` k·NR readable f32.
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts(a, MR * k),
                std::slice::from_raw_parts(b, k * NR),
            )
        };

        // acc(i, j) = Σₚ Ã(i, p)·B̃(p, j), one depth step at a time.
        let mut acc = [[0.0f32; NR]; MR];
        for (a_p, b_p) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
            for i in 0..MR {
                for j in 0..NR {
                    acc[i][j] += a_p[i] * b_p[j];
                }
            }
        }

        for i in 0..MR {
            for j in 0..NR {
                // SAFETY: the caller guarantees the MR × NR tile at `c` is writable (and
                // readable when β ≠ 0, the only case in which `update` uses the old value).
                unsafe {
                    let c_ij = c.add(i * rsc + j);
                    *c_ij = update(beta, *c_ij, alpha * acc[i][j]);
                }
            }
        }
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
        tile_part::<Self>(k, a, b, c, scalars, strides, size)
    }

    unsafe fn pack_a(
        dst: *mut f32,
        src: *const f32,
        len: usize,
        depth: usize,
        sr: usize,
        sp: usize,
    ) {
        pack_panels::<MR>(dst, src, (len, depth), (sr, sp), pack_panel::<MR>)
    }

    unsafe fn pack_b(
        dst: *mut f32,
        src: *const f32,
        len: usize,
        depth: usize,
        sr: usize,
        sp: usize,
    ) {
        pack_panels::<NR>(dst, src, (len, depth), (sr, sp), pack_panel::<NR>)
    }
}
