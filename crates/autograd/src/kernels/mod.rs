//! CPU kernels on plain slices: elementwise maps, reductions, GEMM, im2col.
//!
//! Large elementwise work is split with rayon into fixed-size chunks above
//! [`PAR_THRESHOLD`] elements; below it, a serial loop is faster than waking threads.
//! Chunk boundaries never depend on the thread count, so results do not either.

pub mod adam;
pub mod gemm;
pub mod im2col;
pub mod scratch;
pub mod tanh;
pub mod winograd;

use rayon::prelude::*;

use crate::element::Float;

/// Elementwise work below this many elements runs serially: with the pool's workers kept
/// polling (`threads::keep_warm`), handing out two chunks costs about a microsecond.
pub const PAR_THRESHOLD: usize = 1 << 13;
/// Elements per parallel chunk of elementwise work.
pub const CHUNK: usize = 1 << 12;
/// [`sum`] adds chunks of this many elements, each in order, then the chunks' sums in order:
/// from [`SUM_CHUNKED_FROM`] elements on, whatever the thread count. These two sizes fix
/// the order of the additions, so changing them changes the bits of every such sum.
const SUM_CHUNK: usize = 1 << 13;
/// Length from which [`sum`] goes by chunks.
const SUM_CHUNKED_FROM: usize = 1 << 15;

/// The partial sums of a reduction added pairwise, ((s₀ + s₁) + (s₂ + s₃)) + …, so that
/// their order depends on W alone. W must be a power of two.
#[inline(always)]
pub fn pairwise_sum<T: Float, const W: usize>(mut lanes: [T; W]) -> T {
    const { assert!(W.is_power_of_two()) };
    let mut width = W;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            lanes[l] = lanes[2 * l] + lanes[2 * l + 1];
        }
    }
    lanes[0]
}

/// `out[i] = f(x[i])`
pub fn map<T: Float>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    let mut out = scratch::take(x.len());
    if x.len() < PAR_THRESHOLD {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = f(v);
        }
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(o, x)| {
                for (o, &v) in o.iter_mut().zip(x) {
                    *o = f(v);
                }
            });
    }
    out
}

/// `out[i] = f(a[i], b[i])`
pub fn zip_map<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
    assert_eq!(a.len(), b.len(), "zip_map: operand lengths differ");
    let mut out = scratch::take(a.len());
    if a.len() < PAR_THRESHOLD {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = f(x, y);
        }
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(o, (a, b))| {
                for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
                    *o = f(x, y);
                }
            });
    }
    out
}

/// `out[i] = f(a[i], b[i], c[i])`, for backward rules that need the input, the output and
/// the upstream gradient together.
pub fn zip3_map<T: Float>(a: &[T], b: &[T], c: &[T], f: impl Fn(T, T, T) -> T + Sync) -> Vec<T> {
    assert!(
        a.len() == b.len() && b.len() == c.len(),
        "zip3_map: lengths differ"
    );
    let mut out = scratch::take(a.len());
    let body = |o: &mut [T], a: &[T], b: &[T], c: &[T]| {
        for i in 0..o.len() {
            o[i] = f(a[i], b[i], c[i]);
        }
    };
    if a.len() < PAR_THRESHOLD {
        body(&mut out, a, b, c);
    } else {
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(k, o)| {
            let r = k * CHUNK..k * CHUNK + o.len();
            body(o, &a[r.clone()], &b[r.clone()], &c[r]);
        });
    }
    out
}

/// `acc[i] += g[i]`
pub fn add_assign<T: Float>(acc: &mut [T], g: &[T]) {
    assert_eq!(acc.len(), g.len(), "add_assign: lengths differ");
    if acc.len() < PAR_THRESHOLD {
        for (a, &v) in acc.iter_mut().zip(g) {
            *a += v;
        }
    } else {
        acc.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .for_each(|(a, g)| {
                for (a, &v) in a.iter_mut().zip(g) {
                    *a += v;
                }
            });
    }
}

/// Σ x, deterministic whatever the thread count: fixed chunks are summed in order.
pub fn sum<T: Float>(x: &[T]) -> T {
    if x.len() < SUM_CHUNKED_FROM {
        return x.iter().copied().sum();
    }
    let partial: Vec<T> = x
        .par_chunks(SUM_CHUNK)
        .map(|c| c.iter().copied().sum())
        .collect();
    partial.into_iter().sum()
}

/// Sums `x`, seen as `outer × len × inner`, over the middle axis: `out[o, i] = Σ_j x[o, j, i]`.
pub fn sum_middle<T: Float>(x: &[T], outer: usize, len: usize, inner: usize) -> Vec<T> {
    let mut out = vec![T::ZERO; outer * inner];
    for o in 0..outer {
        let dst = &mut out[o * inner..(o + 1) * inner];
        for j in 0..len {
            let src = &x[(o * len + j) * inner..(o * len + j + 1) * inner];
            for (d, &s) in dst.iter_mut().zip(src) {
                *d += s;
            }
        }
    }
    out
}
