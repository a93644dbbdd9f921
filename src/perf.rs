//! Measuring the machine: the single-core FMA ceiling that GEMM throughput is compared to.

use std::time::Instant;

/// Floating-point operations per second (f32) that one core reaches with independent fused
/// multiply-adds and nothing else: the ceiling no GEMM can pass. Takes about `millis` ms.
///
/// Uses AVX-512 or AVX2+FMA when the CPU has them (detected at run time), otherwise a scalar
/// loop that gives the portable code's ceiling instead.
pub fn fma_ceiling_gflops(millis: u64) -> f64 {
    let mut best = 0.0f64;
    let deadline = Instant::now() + std::time::Duration::from_millis(millis);
    while Instant::now() < deadline {
        let iters = 1u64 << 20;
        let t = Instant::now();
        let flops = fma_burst(iters);
        best = best.max(flops as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// Runs `iters` rounds of independent FMAs and returns the flops done.
fn fma_burst(iters: u64) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { x86::burst_avx512(iters) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            return unsafe { x86::burst_avx2(iters) };
        }
    }
    burst_portable(iters)
}

fn burst_portable(iters: u64) -> u64 {
    let mut acc = [1.0f32; 8];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    std::hint::black_box(acc);
    iters * 8 * 2
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// 12 independent accumulator chains hide the FMA latency on both ports.
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn burst_avx512(iters: u64) -> u64 {
        let m = _mm512_set1_ps(0.999_999);
        let c = _mm512_set1_ps(1e-7);
        let mut acc = [_mm512_set1_ps(1.0); 12];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, m, c);
            }
        }
        std::hint::black_box(acc);
        iters * 12 * 16 * 2
    }

    /// As [`burst_avx512`] with 256-bit vectors.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn burst_avx2(iters: u64) -> u64 {
        let m = _mm256_set1_ps(0.999_999);
        let c = _mm256_set1_ps(1e-7);
        let mut acc = [_mm256_set1_ps(1.0); 12];
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, m, c);
            }
        }
        std::hint::black_box(acc);
        iters * 12 * 8 * 2
    }
}

/// The two whole-iteration workloads that the benchmarks and the peers time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// W1: the classic MLP GAN, batch 32.
    MlpGan,
    /// W2: the DCGAN, batch 64.
    Dcgan,
}

impl Workload {
    /// The workload's short name, as the peers print it.
    pub fn name(self) -> &'static str {
        match self {
            Workload::MlpGan => "mlp-gan",
            Workload::Dcgan => "dcgan",
        }
    }

    /// The workload's batch size: 32 for W1, 64 for W2.
    pub fn batch_size(self) -> usize {
        match self {
            Workload::MlpGan => 32,
            Workload::Dcgan => 64,
        }
    }

    /// A trainer with the workload's model, batch size and Adam settings.
    pub fn trainer(self, seed: u64) -> gan::train::Trainer {
        self.trainer_with_batch(seed, self.batch_size())
    }

    /// As [`Workload::trainer`] with another batch size (to see how cost grows with it).
    pub fn trainer_with_batch(self, seed: u64, batch_size: usize) -> gan::train::Trainer {
        use gan::models::ModelKind;
        use gan::train::{GeneratorLoss, TrainOptions, Trainer};
        let (kind, lr) = match self {
            Workload::MlpGan => (ModelKind::Mlp, 1e-4),
            Workload::Dcgan => (ModelKind::Dcgan, 2e-4),
        };
        let options = TrainOptions {
            batch_size,
            k: 1,
            adam: layers::AdamConfig {
                lr,
                beta1: 0.5,
                ..Default::default()
            },
            g_loss: GeneratorLoss::NonSaturating,
        };
        Trainer::from_seed(seed, options, |rng| kind.build(100, rng))
    }
}

/// Median wall time of one training iteration, in milliseconds, after `warmup` untimed
/// iterations, on the current rayon pool.
pub fn time_iterations(
    workload: Workload,
    data: &gan::mnist::Mnist,
    warmup: usize,
    iters: usize,
) -> f64 {
    time_iterations_at(workload, workload.batch_size(), data, warmup, iters)
}

/// As [`time_iterations`] at another batch size.
pub fn time_iterations_at(
    workload: Workload,
    batch_size: usize,
    data: &gan::mnist::Mnist,
    warmup: usize,
    iters: usize,
) -> f64 {
    time_iterations_then(workload, batch_size, data, warmup, iters, || {})
}

/// The GEMMs of `iters` timed iterations, per shape ([`autograd::kernels::gemm::profile`]),
/// with the median ms of those iterations (recording included).
pub fn gemm_in_situ(
    workload: Workload,
    data: &gan::mnist::Mnist,
    warmup: usize,
    iters: usize,
) -> (
    f64,
    Vec<(autograd::kernels::gemm::profile::Shape, u64, f64)>,
) {
    use autograd::kernels::gemm::profile;
    let batch = workload.batch_size();
    let ms = time_iterations_then(workload, batch, data, warmup, iters, || {
        profile::record(true)
    });
    let table = profile::recorded();
    profile::record(false);
    (ms, table)
}

/// As [`time_iterations_at`], calling `before_timing` between the warm-up and the timed
/// iterations. The pool's other workers wait for jobs spinning
/// ([`autograd::threads::keep_warm`]), as they do when `gan-mnist` trains.
fn time_iterations_then(
    workload: Workload,
    batch_size: usize,
    data: &gan::mnist::Mnist,
    warmup: usize,
    iters: usize,
    before_timing: impl FnOnce() + Send,
) -> f64 {
    autograd::threads::keep_warm(|| {
        time_on_this_thread(workload, batch_size, data, (warmup, iters), before_timing)
    })
}

/// The body of [`time_iterations_then`].
fn time_on_this_thread(
    workload: Workload,
    batch_size: usize,
    data: &gan::mnist::Mnist,
    (warmup, iters): (usize, usize),
    before_timing: impl FnOnce(),
) -> f64 {
    let mut trainer = workload.trainer_with_batch(0, batch_size);
    let mut batches = gan::train::MnistBatches::new(data);
    for _ in 0..warmup {
        trainer
            .step(&mut batches)
            .expect("finite losses while timing");
    }
    before_timing();
    let mut times: Vec<f64> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            trainer
                .step(&mut batches)
                .expect("finite losses while timing");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(&mut times)
}

/// The median of a list of timings.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}
