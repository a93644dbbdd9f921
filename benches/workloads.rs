//! Whole training iterations (W1, W2) and the kernels beside GEMM that they run: batch
//! im2col / col2im and the Winograd transforms of the DCGAN's two largest convolutions,
//! batch norm with its ReLU as two ops and as one, and the fused Adam update.
//!
//! ```sh
//! cargo bench --bench workloads                  # everything (a few minutes)
//! cargo bench --bench workloads -- 'iteration'   # W1 and W2 only
//! ```
//!
//! Throughput is in elements = FLOPs for the iterations (the analytic count of the peers'
//! scripts: 504.6 MFLOP for W1, 17 GFLOP for W2), so criterion's "Gelem/s" reads as GFLOP/s.
//! The iterations run at 1 and 2 threads; the kernels at the default thread count.

use std::hint::black_box;
use std::time::{Duration, Instant};

use autograd::kernels::adam::{adam_update, AdamStep};
use autograd::kernels::im2col::{col2im_batch, im2col_batch, Conv2dGeometry};
use autograd::kernels::scratch;
use autograd::kernels::winograd::Tiling;
use autograd::{FusedActivation, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gan_suite::perf::Workload;

/// FLOPs of one iteration, as the peers' scripts count them.
fn flops(w: Workload) -> u64 {
    match w {
        Workload::MlpGan => 504_600_000,
        Workload::Dcgan => 17_000_000_000,
    }
}

fn bench_iterations(c: &mut Criterion) {
    let mnist = gan::mnist::Mnist::load_train(&gan::mnist::default_data_dir())
        .unwrap_or_else(|e| panic!("the benchmarks need MNIST: {e}"));
    for w in [Workload::MlpGan, Workload::Dcgan] {
        let mut g = c.benchmark_group(format!("iteration/{}", w.name()));
        g.throughput(Throughput::Elements(flops(w)));
        if w == Workload::Dcgan {
            g.sample_size(10);
            g.measurement_time(Duration::from_secs(15));
        }
        for threads in [1, 2] {
            let pool = autograd::threads::pool(threads);
            // Tensors live on one thread, so the trainer is built inside the pool, a few
            // untimed steps first, for every batch of iterations criterion asks for.
            let mnist = &mnist;
            g.bench_function(format!("{threads}t"), |b| {
                b.iter_custom(|iters| {
                    // The other worker waits for jobs spinning, as in training.
                    pool.install(|| {
                        autograd::threads::keep_warm(|| {
                            let mut trainer = w.trainer(0);
                            let mut batches = gan::train::MnistBatches::new(mnist);
                            for _ in 0..3 {
                                trainer.step(&mut batches).expect("finite losses");
                            }
                            let start = Instant::now();
                            for _ in 0..iters {
                                black_box(trainer.step(&mut batches).expect("finite losses"));
                            }
                            start.elapsed()
                        })
                    })
                })
            });
        }
        g.finish();
    }
}

/// D's second convolution, 64 → 128 channels, 14 × 14 → 7 × 7, kernel 4, stride 2, batch 64.
fn dconv2() -> Conv2dGeometry {
    Conv2dGeometry {
        batch: 64,
        c_in: 64,
        c_out: 128,
        h: 14,
        w: 14,
        kh: 4,
        kw: 4,
        stride: 2,
        padding: 1,
    }
}

/// G's second transposed convolution, 256 → 128 channels, 7 × 7 → 14 × 14, in the geometry
/// of the convolution it is the adjoint of: the largest columns of W2 (25 MB).
fn gconvt2() -> Conv2dGeometry {
    Conv2dGeometry {
        c_in: 128,
        c_out: 256,
        ..dconv2()
    }
}

fn bench_im2col(c: &mut Criterion) {
    for (name, g) in [("Dconv2", dconv2()), ("Gconvt2", gconvt2())] {
        let x: Vec<f32> = (0..g.batch * g.c_in * g.h * g.w)
            .map(|i| (i % 17) as f32 * 0.1)
            .collect();
        let mut cols = vec![0.0f32; g.col_rows() * g.batch * g.col_cols()];
        let mut group = c.benchmark_group(format!("conv/{name}"));
        group.throughput(Throughput::Bytes((cols.len() * 4) as u64));
        group.bench_function("im2col_batch", |b| {
            b.iter(|| {
                im2col_batch(&g, &x, &mut cols);
                black_box(&mut cols);
            })
        });
        let mut back = vec![0.0f32; x.len()];
        group.bench_function("col2im_batch", |b| {
            b.iter(|| {
                col2im_batch(&g, &cols, &mut back);
                black_box(&mut back);
            })
        });
        group.finish();
    }
}

fn bench_winograd(c: &mut Criterion) {
    for (name, g) in [("Dconv2", dconv2()), ("Gconvt2", gconvt2())] {
        let t = Tiling::new(g);
        let x: Vec<f32> = (0..g.batch * g.c_in * g.h * g.w)
            .map(|i| (i % 17) as f32 * 0.1)
            .collect();
        let d = t.transform_data(&x);
        let mut group = c.benchmark_group(format!("winograd/{name}"));
        group.throughput(Throughput::Bytes((d.len() * 4) as u64));
        group.bench_function("transform_data", |b| {
            b.iter(|| scratch::give(black_box(t.transform_data(&x))))
        });
        group.bench_function("inverse_data", |b| {
            b.iter(|| scratch::give(black_box(t.inverse_data(&d))))
        });
        group.finish();
    }
}

/// Forward and backward of batch norm and ReLU on G's 128 × 14 × 14 maps at batch 64, as
/// two ops and as one (`batch_norm_train_then`).
fn bench_batch_norm(c: &mut Criterion) {
    let shape = [64, 128, 14, 14];
    let n: usize = shape.iter().product();
    let data = (0..n).map(|i| (i % 101) as f32 * 0.01 - 0.5).collect();
    let x = Tensor::from_vec(data, &shape).requires_grad_(true);
    let (gamma, beta) = (
        Tensor::<f32>::ones(&[128]).requires_grad_(true),
        Tensor::<f32>::zeros(&[128]).requires_grad_(true),
    );
    let upstream: Vec<f32> = (0..n).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
    let mut group = c.benchmark_group("batch_norm_relu/128x14x14");
    group.throughput(Throughput::Elements(n as u64));
    for fused in [false, true] {
        let name = if fused { "one op" } else { "two ops" };
        group.bench_function(name, |b| {
            b.iter(|| {
                let y = match fused {
                    true => x.batch_norm_train_then(&gamma, &beta, 1e-5, FusedActivation::Relu),
                    false => x.batch_norm_train(&gamma, &beta, 1e-5),
                };
                let y = if fused { y.0 } else { y.0.relu() };
                y.backward_with(&upstream);
                [&x, &gamma, &beta].iter().for_each(|t| t.zero_grad());
            })
        });
    }
    group.finish();
}

fn bench_adam(c: &mut Criterion) {
    // G4 of W1: 1024 × 784 weights.
    let n = 1024 * 784;
    let g: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 0.01 - 0.06).collect();
    let (mut p, mut m, mut v) = (vec![0.1f32; n], vec![0.0f32; n], vec![0.0f32; n]);
    let mut group = c.benchmark_group("adam");
    group.throughput(Throughput::Elements(n as u64));
    let mut t = 0;
    group.bench_function("G4 weights", |b| {
        b.iter(|| {
            t += 1;
            adam_update(
                &mut p,
                &g,
                &mut m,
                &mut v,
                AdamStep::new(1e-4, 0.5, 0.999, 1e-7, t),
            );
            black_box(&mut p);
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    targets = bench_iterations, bench_im2col, bench_winograd, bench_batch_norm, bench_adam,
}
criterion_main!(benches);
