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
