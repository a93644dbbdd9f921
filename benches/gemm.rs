//! f32 GEMM throughput: our packed kernel against `matrixmultiply`, at every shape and
//! layout the engine runs, with the one-core FMA ceiling measured in the same run.
//!
//! ```sh
//! cargo bench --bench gemm                   # everything (a few minutes)
//! cargo bench --bench gemm -- 'gemm/w1'      # the W1 shapes only
//! ```
//!
//! Throughput is reported in elements = 2·m·k·n, so criterion's "Gelem/s" reads as GFLOP/s;
//! `fma_ceiling` prints the same unit. Layouts: NN = A·B (forward), TN = Aᵀ·B (weight
//! gradient), NT = A·Bᵀ (input gradient), as stored by the engine: the transposed operand is
//! a stride-swapped view, never a copy. Within each group the two kernels run one after the
//! other, so compare them there; the machine's load moves absolute numbers between groups.

use std::hint::black_box;
use std::time::{Duration, Instant};

use autograd::kernels::gemm::{sgemm_with, Kernel, MatRef, Threading};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// One product C (m × n) = op(A)·op(B) as the engine stores it.
struct Shape {
    name: String,
    m: usize,
    k: usize,
    n: usize,
    a_t: bool,
    b_t: bool,
}

impl Shape {
    fn new(name: &str, (m, k, n): (usize, usize, usize), layout: &str) -> Shape {
        Shape {
            name: format!("{name} {m}x{k}x{n} {layout}"),
            m,
            k,
            n,
            a_t: layout.starts_with('T'),
            b_t: layout.ends_with('T'),
        }
    }

    fn flops(&self) -> u64 {
        2 * (self.m * self.k * self.n) as u64
    }
}

/// The W1 dense layers (in → out) of the MLP GAN; batch 32.
const W1_LAYERS: [(&str, usize, usize); 7] = [
    ("G1", 100, 256),
    ("G2", 256, 512),
    ("G3", 512, 1024),
    ("G4", 1024, 784),
    ("D1", 784, 512),
    ("D2", 512, 256),
    ("D3", 256, 1),
];

/// W1: per layer the forward X·W, the weight gradient Xᵀ·G and the input gradient G·Wᵀ
/// (none for G1, whose input is the noise).
fn w1_shapes() -> Vec<Shape> {
    let mut shapes = Vec::new();
    for (name, k_in, n_out) in W1_LAYERS {
        shapes.push(Shape::new(&format!("{name} fwd"), (32, k_in, n_out), "NN"));
        shapes.push(Shape::new(
            &format!("{name} wgrad"),
            (k_in, 32, n_out),
            "TN",
        ));
        if name != "G1" {
            shapes.push(Shape::new(
                &format!("{name} igrad"),
                (32, n_out, k_in),
                "NT",
            ));
        }
    }
    shapes
}

/// W2 (the DCGAN, batch 64): the products of `ops::conv`, each over the whole batch with the
/// samples' columns side by side (L = N·oh·ow): y = W·columns, its adjoint Wᵀ·y and the
/// weight gradient g·columnsᵀ, for the layers that carry the work.
fn w2_shapes() -> Vec<Shape> {
    vec![
        // D conv2 64→128, 14×14 → 7×7: W is 128 × 1024, columns 1024 × (64·49).
        Shape::new("Dconv2 fwd", (128, 1024, 3136), "NN"),
        Shape::new("Dconv2 igrad", (1024, 128, 3136), "TN"),
        Shape::new("Dconv2 wgrad", (128, 3136, 1024), "NT"),
        // G convT2 256→128, 7×7 → 14×14: the adjoint of a conv with W 256 × 2048.
        Shape::new("GconvT2 fwd", (2048, 256, 3136), "TN"),
        Shape::new("GconvT2 igrad", (256, 2048, 3136), "NN"),
        Shape::new("GconvT2 wgrad", (256, 3136, 2048), "NT"),
        // D conv1 1→64 and G convT3 128→1, 28×28 ↔ 14×14: columns 16 × (64·196).
        Shape::new("Dconv1 fwd", (64, 16, 12544), "NN"),
        Shape::new("GconvT3 fwd", (16, 128, 12544), "TN"),
        Shape::new("GconvT3 wgrad", (128, 12544, 16), "NT"),
        // G convT1 100→256 from 1×1 to 7×7: columns 12544 × 64.
        Shape::new("GconvT1 fwd", (12544, 100, 64), "TN"),
    ]
}

fn square_shapes() -> Vec<Shape> {
    [256, 512, 1024]
        .into_iter()
        .map(|s| Shape::new("square", (s, s, s), "NN"))
        .collect()
}

/// Operands of a shape, filled with small values that keep sums finite.
fn operands(s: &Shape) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let a = (0..s.m * s.k)
        .map(|i| (i % 13) as f32 * 0.1 - 0.6)
        .collect();
    let b = (0..s.k * s.n).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
    (a, b, vec![0.0; s.m * s.n])
}

fn views<'a>(s: &Shape, a: &'a [f32], b: &'a [f32]) -> (MatRef<'a, f32>, MatRef<'a, f32>) {
    let av = if s.a_t {
        MatRef::row_major(a, s.k, s.m).t()
    } else {
        MatRef::row_major(a, s.m, s.k)
    };
    let bv = if s.b_t {
        MatRef::row_major(b, s.n, s.k).t()
    } else {
        MatRef::row_major(b, s.k, s.n)
    };
    (av, bv)
}

/// Ours and `matrixmultiply`, one thread each, per shape.
fn bench_group(c: &mut Criterion, group: &str, shapes: Vec<Shape>) {
    let ours = Kernel::selected();
    for s in shapes {
        let (a, b, mut out) = operands(&s);
        let (av, bv) = views(&s, &a, &b);
        let mut g = c.benchmark_group(format!("gemm/{group}/{}", s.name));
        g.throughput(Throughput::Elements(s.flops()));
        for (label, kernel) in [("ours", ours), ("matrixmultiply", Kernel::MatrixMultiply)] {
            g.bench_function(label, |bench| {
                bench.iter(|| {
                    sgemm_with(kernel, Threading::Serial, 1.0, av, bv, 0.0, &mut out, s.n);
                    black_box(&mut out);
                })
            });
        }
        g.finish();
    }
}

fn bench_w1(c: &mut Criterion) {
    bench_group(c, "w1", w1_shapes());
}

fn bench_w2(c: &mut Criterion) {
    bench_group(c, "w2", w2_shapes());
}

fn bench_square(c: &mut Criterion) {
    bench_group(c, "square", square_shapes());
}

/// Large products on rayon pools of 1 and 2 threads (blocks of C, fixed by the shape).
fn bench_threads(c: &mut Criterion) {
    let shapes = [
        Shape::new("square", (1024, 1024, 1024), "NN"),
        Shape::new("G3 fwd", (32, 512, 1024), "NN"),
        Shape::new("G4 igrad", (32, 784, 1024), "NT"),
        Shape::new("G4 wgrad", (1024, 32, 784), "TN"),
    ];
    for s in shapes {
        let (a, b, mut out) = operands(&s);
        let (av, bv) = views(&s, &a, &b);
        let mut g = c.benchmark_group(format!("gemm/threads/{}", s.name));
        g.throughput(Throughput::Elements(s.flops()));
        for threads in [1, 2] {
            let pool = autograd::threads::pool(threads);
            for (label, kernel) in [
                ("ours", Kernel::selected()),
                ("matrixmultiply", Kernel::MatrixMultiply),
            ] {
                // All the products of a sample run in one warm scope on the pool, as a
                // training loop runs its ops (`autograd::threads::keep_warm`).
                g.bench_function(format!("{label}/{threads}t"), |bench| {
                    bench.iter_custom(|iters| {
                        pool.install(|| {
                            autograd::threads::keep_warm(|| {
                                let start = Instant::now();
                                for _ in 0..iters {
                                    let c = &mut out;
                                    sgemm_with(kernel, Threading::Rayon, 1.0, av, bv, 0.0, c, s.n);
                                    black_box(&mut out);
                                }
                                start.elapsed()
                            })
                        })
                    })
                });
            }
        }
        g.finish();
    }
}

/// The one-core FMA ceiling: independent fused multiply-adds on the widest vectors the CPU
/// has, nothing else. Its Gelem/s is the GFLOP/s that no GEMM on one core can pass.
fn ceiling(c: &mut Criterion, when: &str) {
    const ROUNDS: u64 = 1 << 14;
    let mut g = c.benchmark_group("fma_ceiling");
    g.throughput(Throughput::Elements(fma::flops(ROUNDS)));
    g.bench_function(when, |bench| bench.iter(|| fma::burst(black_box(ROUNDS))));
    g.finish();
}

fn bench_ceiling_first(c: &mut Criterion) {
    ceiling(c, "one core, first");
}

fn bench_ceiling_last(c: &mut Criterion) {
    ceiling(c, "one core, last");
}

mod fma {
    /// Flops done by [`burst`]`(rounds)`.
    pub fn flops(rounds: u64) -> u64 {
        rounds * 12 * lanes() * 2
    }

    fn lanes() -> u64 {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return 16;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return 8;
            }
        }
        1
    }

    /// `rounds` rounds of 12 independent FMA chains (enough to cover the latency on both
    /// FMA ports).
    pub fn burst(rounds: u64) -> f32 {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports AVX-512F, checked just above.
                return unsafe { x86::burst_avx512(rounds) };
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                // SAFETY: the CPU supports AVX2 and FMA, checked just above.
                return unsafe { x86::burst_avx2(rounds) };
            }
        }
        let mut acc = [1.0f32; 12];
        for _ in 0..rounds {
            for a in acc.iter_mut() {
                *a = a.mul_add(0.999_999, 1e-7);
            }
        }
        acc.iter().sum()
    }

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        use std::arch::x86_64::*;

        /// # Safety
        /// The CPU must support AVX-512F.
        #[target_feature(enable = "avx512f")]
        pub unsafe fn burst_avx512(rounds: u64) -> f32 {
            let (m, c) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
            let mut acc = [_mm512_set1_ps(1.0); 12];
            for _ in 0..rounds {
                for a in acc.iter_mut() {
                    *a = _mm512_fmadd_ps(*a, m, c);
                }
            }
            acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
        }

        /// # Safety
        /// The CPU must support AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        pub unsafe fn burst_avx2(rounds: u64) -> f32 {
            let (m, c) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
            let mut acc = [_mm256_set1_ps(1.0); 12];
            for _ in 0..rounds {
                for a in acc.iter_mut() {
                    *a = _mm256_fmadd_ps(*a, m, c);
                }
            }
            let mut out = [0.0f32; 8];
            _mm256_storeu_ps(
                out.as_mut_ptr(),
                acc.iter()
                    .fold(_mm256_setzero_ps(), |s, &v| _mm256_add_ps(s, v)),
            );
            out.iter().sum()
        }
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(900))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_ceiling_first, bench_w1, bench_w2, bench_square, bench_threads,
        bench_ceiling_last
}
criterion_main!(benches);
