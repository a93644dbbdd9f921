//! The SIMD micro-kernel, written once for every vector width.
//!
//! The AVX2 and AVX-512 kernels are the same loop over different vector types, so the loop
//! lives in one macro and each kernel file instantiates it with its intrinsics; a fix made
//! here (and tested on the AVX2 machine) reaches the AVX-512 kernel too.
//!
//! The tile is MR rows × NV vectors of W lanes. For each p, NV vectors of B̃'s row p are
//! loaded, and each of the MR values Ã(i, p) is broadcast and multiplied into row i's NV
//! accumulators with a fused multiply-add:
//!
//! ```text
//! acc[i][v] += splat(Ã(i, p)) · B̃(p, v·W .. v·W + W)        i < MR, v < NV
//! ```
//!
//! MR·NV accumulators stay in registers for the whole depth; C is read and written once,
//! at the end: C ← α·acc + β·C, as one multiply and one fused multiply-add per vector.

/// Defines `unsafe fn $name::<COPY_B>(k, a, (b, ldb), b_copy, (c, rsc), (α, β), ahead)`, the
/// MR × NV·W micro-kernel compiled for target features `$feat`. B̃'s row p is read at
/// `b + p·ldb`; with `COPY_B` each row is also stored to `b_copy + p·NR` as it is used,
/// which packs a panel of row-major B during the tile that first needs it. With `ahead`,
/// each depth step also asks L2 for the next two lines of the
/// [`Ahead`](super::packed::Ahead) region: the source of the next panel, fetched while this
/// one computes.
macro_rules! simd_tile {
    (
        $(#[$doc:meta])*
        fn $name:ident;
        features = $feat:literal,
        mr = $mr:expr,
        nv = $nv:expr,
        width = $w:expr,
        zero = $zero:path,
        splat = $splat:path,
        load = $load:path,
        store = $store:path,
        mul = $mul:path,
        fma = $fma:path $(,)?
    ) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// The CPU has the features above; `a` holds MR·k readable f32; `b + p·ldb + j` is
        /// readable for p < k, j < NR; with `COPY_B`, `b_copy` is writable for k·NR f32;
        /// the MR × NR tile at `c` (row stride `rsc`) is writable, and readable when β ≠ 0.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $name<const COPY_B: bool>(
            k: usize,
            a: *const f32,
            (b, ldb): (*const f32, usize),
            b_copy: *mut f32,
            (c, rsc): (*mut f32, usize),
            (alpha, beta): (f32, f32),
            ahead: Option<super::packed::Ahead>,
        ) {
            const ROWS: usize = $mr;
            const VECS: usize = $nv;
            const LANES: usize = $w;
            const PREFETCH: usize = 16;

            // Ask for the tile of C now, so that its lines have arrived by the end.
            for i in 0..ROWS {
                _mm_prefetch::<_MM_HINT_T0>(c.add(i * rsc).cast());
                _mm_prefetch::<_MM_HINT_T0>(c.add(i * rsc + VECS * LANES - 1).cast());
            }
            // The depth loop: VECS loads and ROWS broadcasts feed ROWS·VECS independent FMAs.
            let mut acc = [[$zero(); VECS]; ROWS];
            let mut ahead = ahead.map(super::packed::Ahead::cursor);
            for p in 0..k {
                let (a_p, b_p) = (a.add(p * ROWS), b.add(p * ldb));
                if COPY_B {
                    // Row-major B comes from memory a row per step, each row in another
                    // page: ask for the row PREFETCH steps ahead (a hint; it never faults,
                    // and the address is only formed, with wrapping arithmetic).
                    let ahead = b_p.wrapping_add(PREFETCH * ldb);
                    _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(VECS * LANES - 1).cast());
                }
                if let Some(ahead) = &mut ahead {
                    ahead.prefetch_next();
                    ahead.prefetch_next();
                }
                let mut b_v = [$zero(); VECS];
                for v in 0..VECS {
                    b_v[v] = $load(b_p.add(v * LANES));
                    if COPY_B {
                        $store(b_copy.add(p * VECS * LANES + v * LANES), b_v[v]);
                    }
                }
                for i in 0..ROWS {
                    let a_i = $splat(*a_p.add(i));
                    for v in 0..VECS {
                        acc[i][v] = $fma(a_i, b_v[v], acc[i][v]);
                    }
                }
            }

            // C ← α·acc (+ β·C): β = 0 must not read C, which may hold NaN.
            let alpha_v = $splat(alpha);
            if beta == 0.0 {
                for i in 0..ROWS {
                    for v in 0..VECS {
                        $store(c.add(i * rsc + v * LANES), $mul(alpha_v, acc[i][v]));
                    }
                }
            } else {
                let beta_v = $splat(beta);
                for i in 0..ROWS {
                    for v in 0..VECS {
                        let c_iv = c.add(i * rsc + v * LANES);
                        let t = $mul(alpha_v, acc[i][v]);
                        $store(c_iv, $fma(beta_v, $load(c_iv), t));
                    }
                }
            }
        }
    };
}
