//! Every f32 GEMM kernel against the naive triple loop.
//!
//! Inputs are small integers, so every product and sum is exact in f32 and the fast kernels
//! must match the naive loop bit for bit, whatever order they add in. Sizes sweep the
//! micro-tile's edges (m up to 2·MR + 1, n up to 2·NR + 1) and the depth block's (k around
//! KC); all four layouts (A or Aᵀ, B or Bᵀ) run; C has NaN padding past column n that must
//! survive, and when β = 0 C starts as NaN, which must be ignored. The portable kernel
//! runs on every machine, the SIMD ones where the CPU has them.

use autograd::kernels::gemm::{
    gemm, gemm_naive_ldc, sgemm_with, GemmScalar, Kernel, MatRef, Threading,
};
use proptest::prelude::*;

/// How A and B are stored: plain row-major, or the transpose of a row-major matrix.
#[derive(Clone, Copy, Debug)]
struct Layout {
    a_t: bool,
    b_t: bool,
}

const LAYOUTS: [Layout; 4] = [
    Layout {
        a_t: false,
        b_t: false,
    },
    Layout {
        a_t: true,
        b_t: false,
    },
    Layout {
        a_t: false,
        b_t: true,
    },
    Layout {
        a_t: true,
        b_t: true,
    },
];

/// One product to check: C (m × n, row stride n + pad) ← α·A·B + β·C.
#[derive(Clone, Copy, Debug)]
struct Case {
    m: usize,
    k: usize,
    n: usize,
    layout: Layout,
    alpha: f32,
    beta: f32,
    pad: usize,
}

/// Small integers in −4..=4, a different sequence per seed.
fn ints(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7 + seed * 13 + i / 5) % 9) as f32 - 4.0)
        .collect()
}

/// A view of `data` as the m × k (or k × n) operand, stored transposed when `t`.
fn view(data: &[f32], rows: usize, cols: usize, t: bool) -> MatRef<'_, f32> {
    if t {
        MatRef::row_major(data, cols, rows).t()
    } else {
        MatRef::row_major(data, rows, cols)
    }
}

/// Runs `case` with `kernel` and the naive loop on the same inputs; both C buffers, fast
/// first.
fn run(kernel: Kernel, threading: Threading, case: Case) -> (Vec<f32>, Vec<f32>) {
    let Case {
        m,
        k,
        n,
        layout,
        alpha,
        beta,
        pad,
    } = case;
    let (a, b) = (ints(m * k, 1), ints(k * n, 2));
    let (av, bv) = (view(&a, m, k, layout.a_t), view(&b, k, n, layout.b_t));
    let ldc = n + pad;

    // C: NaN everywhere when β = 0 (it must not be read), else integers; NaN padding.
    let mut c = vec![f32::NAN; m * ldc];
    if beta != 0.0 {
        let init = ints(m * n, 3);
        for i in 0..m {
            c[i * ldc..i * ldc + n].copy_from_slice(&init[i * n..(i + 1) * n]);
        }
    }
    let mut expected = c.clone();

    sgemm_with(kernel, threading, alpha, av, bv, beta, &mut c, ldc);
    gemm_naive_ldc(alpha, av, bv, beta, &mut expected, ldc);
    (c, expected)
}

/// Asserts exact equality (NaN padding equal to NaN padding; −0 equal to +0, since with
/// β = 0 the naive loop adds a +0 that the kernels leave out), naming the first element that
/// differs.
#[track_caller]
fn assert_exact(kernel: Kernel, case: Case, got: &[f32], want: &[f32]) {
    let ldc = case.n + case.pad;
    for (idx, (g, w)) in got.iter().zip(want).enumerate() {
        let same = g == w || (g.is_nan() && w.is_nan());
        assert!(
            same,
            "{kernel:?} {case:?}: C[{}][{}] is {g} but naive gives {w}",
            idx / ldc,
            idx % ldc
        );
    }
}

fn check(kernel: Kernel, threading: Threading, case: Case) {
    let (got, want) = run(kernel, threading, case);
    assert_exact(kernel, case, &got, &want);
}

/// MR × NR of a kernel; `matrixmultiply` is swept as if it were 8 × 8.
fn tile(kernel: Kernel) -> (usize, usize) {
    kernel.tile().unwrap_or((8, 8))
}

#[test]
fn every_kernel_sweeps_the_micro_tile_edges_in_every_layout() {
    for kernel in Kernel::available() {
        let (mr, nr) = tile(kernel);
        for m in 1..=2 * mr + 1 {
            for n in 1..=2 * nr + 1 {
                for k in [1, 3, 17] {
                    for layout in LAYOUTS {
                        let case = Case {
                            m,
                            k,
                            n,
                            layout,
                            alpha: 1.0,
                            beta: 0.0,
                            pad: 0,
                        };
                        check(kernel, Threading::Serial, case);
                    }
                }
            }
        }
    }
}

/// The depth of a kernel's packed blocks; `matrixmultiply` is treated as if it were 256.
fn depth_block(kernel: Kernel) -> usize {
    kernel.depth_block().unwrap_or(256)
}

#[test]
fn every_kernel_handles_depths_around_the_packed_block() {
    for kernel in Kernel::available() {
        let (mr, nr) = tile(kernel);
        let kc = depth_block(kernel);
        for k in [kc - 1, kc, kc + 1, 2 * kc + 3] {
            for (m, n) in [(mr, nr), (mr + 1, 2 * nr - 1), (3 * mr - 1, nr + 2)] {
                for layout in LAYOUTS {
                    let case = Case {
                        m,
                        k,
                        n,
                        layout,
                        alpha: 1.0,
                        beta: 1.0,
                        pad: 0,
                    };
                    check(kernel, Threading::Serial, case);
                }
            }
        }
    }
}

#[test]
fn products_spanning_several_blocks_of_rows_columns_and_depth() {
    // More rows than MC, more columns than NC, more depth than KC, for every kernel here;
    // and n = 33 with a deep k, which the SIMD kernels compute as Cᵀ = Bᵀ·Aᵀ.
    for kernel in Kernel::available() {
        for (m, k, n) in [
            (400, 600, 70),
            (9, 20, 1100),
            (200, 1030, 40),
            (128, 1100, 33),
        ] {
            for layout in LAYOUTS {
                let case = Case {
                    m,
                    k,
                    n,
                    layout,
                    alpha: 1.0,
                    beta: -1.0,
                    pad: 1,
                };
                check(kernel, Threading::Serial, case);
            }
        }
    }
}

#[test]
fn tall_products_that_pack_a_block_by_block() {
    // Tall products whose packed A would not stay in cache (over 2¹⁸ floats) pack it one
    // block of rows at a time: one depth block and several, on one thread and on rayon.
    for kernel in Kernel::available() {
        for (m, k, n) in [(3001, 100, 37), (2100, 300, 65)] {
            for layout in LAYOUTS {
                for (threading, beta) in [(Threading::Serial, -1.0), (Threading::Rayon, 0.0)] {
                    let case = Case {
                        m,
                        k,
                        n,
                        layout,
                        alpha: 1.0,
                        beta,
                        pad: 2,
                    };
                    check(kernel, threading, case);
                }
            }
        }
    }
}

#[test]
fn matrix_vector_products_in_every_layout() {
    // One column or one row of C takes the matrix-vector path.
    for kernel in Kernel::available() {
        for (m, k, n) in [(300, 40, 1), (1, 40, 300), (1, 300, 1), (70, 1, 1)] {
            for layout in LAYOUTS {
                for beta in [0.0, 2.0] {
                    let case = Case {
                        m,
                        k,
                        n,
                        layout,
                        alpha: -1.0,
                        beta,
                        pad: 2,
                    };
                    check(kernel, Threading::Serial, case);
                }
            }
        }
    }
}

/// Sizes around the matrix-vector loops' edges: 1–9 rows (they take rows four at a time),
/// depths around one and two vectors of 8 and 16 lanes, and columns around blocks of
/// eight vectors; and outer products (depth 1), which have a loop of their own.
#[test]
fn matrix_vector_and_outer_products_around_the_simd_edges() {
    let mut shapes = Vec::new();
    for len in [1, 3, 4, 5, 8, 9, 15, 17, 64, 127, 129, 257] {
        for depth in [1, 7, 8, 15, 16, 17, 31, 32, 33, 64] {
            shapes.push((len, depth, 1));
            shapes.push((1, depth, len));
        }
        for n in [1, 2, 7, 16, 33] {
            shapes.push((len, 1, n));
        }
    }
    for kernel in Kernel::available() {
        for &(m, k, n) in &shapes {
            for layout in LAYOUTS {
                for (alpha, beta) in [(1.0, 0.0), (-2.0, 0.5)] {
                    let case = Case {
                        m,
                        k,
                        n,
                        layout,
                        alpha,
                        beta,
                        pad: 1,
                    };
                    check(kernel, Threading::Serial, case);
                }
            }
        }
    }
}

#[test]
fn alpha_beta_and_nan_padding() {
    for kernel in Kernel::available() {
        let (mr, nr) = tile(kernel);
        let kc = depth_block(kernel);
        for (alpha, beta) in [(1.0, 0.0), (2.0, 0.0), (1.0, 1.0), (-1.0, 0.5), (0.5, -2.0)] {
            for (m, k, n) in [(mr, 5, nr), (2 * mr + 1, 9, 2 * nr + 1), (1, kc + 1, 3)] {
                for layout in LAYOUTS {
                    let case = Case {
                        m,
                        k,
                        n,
                        layout,
                        alpha,
                        beta,
                        pad: 5,
                    };
                    check(kernel, Threading::Serial, case);
                }
            }
        }
    }
}

#[test]
fn zero_depth_scales_c_by_beta() {
    for kernel in Kernel::available() {
        for beta in [0.0, 1.0, 3.0] {
            let case = Case {
                m: 5,
                k: 0,
                n: 7,
                layout: LAYOUTS[0],
                alpha: 2.0,
                beta,
                pad: 2,
            };
            check(kernel, Threading::Serial, case);
        }
    }
}

#[test]
fn parallel_blocks_match_naive() {
    // Thin and wide products split over columns, tall ones over rows, each into several
    // blocks (m = 200 is above every kernel's MC).
    let shapes = [
        (32, 100, 256),
        (32, 64, 1000),
        (300, 40, 33),
        (67, 300, 130),
        (200, 30, 300),
    ];
    for kernel in Kernel::available() {
        for (m, k, n) in shapes {
            for layout in LAYOUTS {
                for beta in [0.0, 1.0] {
                    let case = Case {
                        m,
                        k,
                        n,
                        layout,
                        alpha: 1.0,
                        beta,
                        pad: 3,
                    };
                    check(kernel, Threading::Rayon, case);
                }
            }
        }
    }
}

#[test]
fn unavailable_kernel_panics_instead_of_running() {
    for kernel in Kernel::ALL.into_iter().filter(|k| !k.is_available()) {
        let a = [1.0f32; 4];
        let r = std::panic::catch_unwind(|| {
            let mut c = [0.0f32; 4];
            let v = MatRef::row_major(&a, 2, 2);
            sgemm_with(kernel, Threading::Serial, 1.0, v, v, 0.0, &mut c, 2);
        });
        assert!(r.is_err(), "{kernel:?} ran on a CPU without it");
    }
}

#[test]
#[should_panic(expected = "gemm: lhs is 2 × 3 but rhs is 4 × 5")]
fn inner_size_mismatch_names_both_shapes() {
    let (a, b) = (vec![0.0f32; 6], vec![0.0f32; 20]);
    let mut c = vec![0.0f32; 10];
    gemm(
        1.0,
        MatRef::row_major(&a, 2, 3),
        MatRef::row_major(&b, 4, 5),
        0.0,
        &mut c,
    );
}

/// Values that are not integers, so that the order of additions shows in the last bits.
fn noisy(len: usize, seed: u32) -> Vec<f32> {
    (0..len as u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 10_007) as f32 / 997.0 - 5.0)
        .collect()
}

/// C = A·B through `gemm` (and its rayon split) inside a pool of `threads` threads.
fn gemm_on_threads(threads: usize, m: usize, k: usize, n: usize, b_t: bool) -> Vec<f32> {
    let (a, b) = (noisy(m * k, 1), noisy(k * n, 2));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut c = vec![0.0f32; m * n];
        gemm(1.0, view(&a, m, k, false), view(&b, k, n, b_t), 0.0, &mut c);
        c
    })
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    for (m, k, n) in [
        (32, 512, 1024),
        (32, 1024, 784),
        (512, 32, 1024),
        (300, 700, 200),
        (128, 1024, 49),
        // Ã packed by parallel tasks: three row chunks (the last partial), three depth
        // blocks (the last short).
        (400, 700, 600),
    ] {
        for b_t in [false, true] {
            let one = gemm_on_threads(1, m, k, n, b_t);
            let two = gemm_on_threads(2, m, k, n, b_t);
            let three = gemm_on_threads(3, m, k, n, b_t);
            let same =
                |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(same(&one, &two), "{m}×{k}×{n} (Bᵀ: {b_t}): 1 vs 2 threads");
            assert!(
                same(&one, &three),
                "{m}×{k}×{n} (Bᵀ: {b_t}): 1 vs 3 threads"
            );
        }
    }
}

#[test]
fn serial_and_rayon_paths_agree_bitwise() {
    let (m, k, n) = (96, 600, 700);
    let (a, b) = (noisy(m * k, 3), noisy(k * n, 4));
    let (av, bv) = (view(&a, m, k, false), view(&b, k, n, true));
    let mut serial = vec![0.0f32; m * n];
    let mut par = vec![0.0f32; m * n];
    f32::gemm_serial(1.0, av, bv, 0.0, &mut serial, n);
    f32::gemm_rayon(1.0, av, bv, 0.0, &mut par);
    assert!(serial
        .iter()
        .zip(&par)
        .all(|(p, q)| p.to_bits() == q.to_bits()));
}

#[test]
fn gemm_inside_rayon_tasks_reuses_buffers_safely() {
    // Outer tasks each run a parallel GEMM: threads that wait inside one may steal another,
    // which then needs packing buffers of its own.
    let (m, k, n) = (32, 300, 900);
    let (a, b) = (ints(m * k, 5), ints(k * n, 6));
    let mut want = vec![0.0f32; m * n];
    gemm_naive_ldc(
        1.0,
        view(&a, m, k, false),
        view(&b, k, n, false),
        0.0,
        &mut want,
        n,
    );
    use rayon::prelude::*;
    let outs: Vec<Vec<f32>> = (0..8)
        .into_par_iter()
        .map(|_| {
            let mut c = vec![f32::NAN; m * n];
            gemm(
                1.0,
                view(&a, m, k, false),
                view(&b, k, n, false),
                0.0,
                &mut c,
            );
            c
        })
        .collect();
    for c in outs {
        assert_eq!(c, want);
    }
}

fn layout_strategy() -> impl Strategy<Value = Layout> {
    (any::<bool>(), any::<bool>()).prop_map(|(a_t, b_t)| Layout { a_t, b_t })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random shapes and values: every kernel within rounding of the naive loop.
    #[test]
    fn random_shapes_match_naive(
        m in 1usize..80,
        k in 0usize..300,
        n in 1usize..80,
        layout in layout_strategy(),
        beta in prop_oneof![Just(0.0f32), Just(1.0f32), -1.0f32..1.0],
        seed in 0u32..1000,
        par in any::<bool>(),
    ) {
        let (a, b) = (noisy(m * k, seed), noisy(k * n, seed + 1));
        let (av, bv) = (view(&a, m, k, layout.a_t), view(&b, k, n, layout.b_t));
        let c0 = noisy(m * n, seed + 2);
        let mut want = c0.clone();
        gemm_naive_ldc(0.5, av, bv, beta, &mut want, n);
        let threading = if par { Threading::Rayon } else { Threading::Serial };
        for kernel in Kernel::available() {
            let mut got = c0.clone();
            sgemm_with(kernel, threading, 0.5, av, bv, beta, &mut got, n);
            for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
                // Each term is below 25 in size; k of them round to within k·25·2⁻²³ or so.
                let tol = 1e-5 * (1.0 + k as f32 * 25.0);
                prop_assert!(
                    (g - w).abs() <= tol,
                    "{:?} {}×{}×{} {:?}: C[{}] is {} but naive gives {}",
                    kernel, m, k, n, layout, idx, g, w
                );
            }
        }
    }
}
