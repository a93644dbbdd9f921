//! Batch normalisation over the channel axis, fused into one op with a hand-written backward.
//!
//! For x of shape N × C or N × C × H × W, each channel c is normalised over its
//! m = N (or N·H·W) elements:
//!
//! ```text
//! x̂ = (x − μ) / √(σ² + ε),   y = γ·x̂ + β,   μ = (1/m) Σ x,   σ² = (1/m) Σ (x − μ)²
//! ```
//!
//! In training mode μ and σ² are the batch's own statistics, so every output of a channel
//! depends on every input of it; in evaluation mode they are given constants.

use rayon::prelude::*;

use crate::element::Float;
use crate::kernels::{pairwise_sum, scratch};
use crate::shape::{op_panic, shape_panic};
use crate::tape::GradFn;
use crate::tensor::Tensor;

use super::fused::{with_act, Act, FusedActivation, Identity};

/// The per-channel affine map of batch norm, v = scale·(x − μ) + β with scale = γ·inv_std,
/// and the activation after it: what the backward pass needs to turn the gradient of y
/// into the gradient of v, recomputing v from x exactly as the forward pass did.
struct Affine<'a, T, A> {
    act: A,
    scale: Vec<T>,
    mean: &'a [T],
    inv_std: &'a [T],
    beta: &'a [T],
}

impl<'a, T: Float, A: Act> Affine<'a, T, A> {
    fn new(act: A, gamma: &[T], (mean, inv_std): (&'a [T], &'a [T]), beta: &'a [T]) -> Self {
        let scale = gamma.iter().zip(inv_std).map(|(&g, &s)| g * s).collect();
        Affine {
            act,
            scale,
            mean,
            inv_std,
            beta,
        }
    }

    /// For channel ch, (g, x) ↦ ∂L/∂v from g = ∂L/∂y at value x, with the channel's
    /// constants taken out of the loop that calls it.
    #[inline(always)]
    fn at(&self, ch: usize) -> impl Fn(T, T) -> T {
        let (scale, mu, beta, act) = (self.scale[ch], self.mean[ch], self.beta[ch], self.act);
        move |g, x| match A::IDENTITY {
            true => g,
            false => act.grad(scale * (x - mu) + beta, g),
        }
    }
}

/// The channel count C and the plane size (1, or H·W) of a batch-norm input, which is read
/// as N × C × plane.
#[track_caller]
fn channels_and_plane<T: Float>(op: &str, x: &Tensor<T>) -> (usize, usize) {
    match *x.shape() {
        [_, c] => (c, 1),
        [_, c, h, w] => (c, h * w),
        _ => op_panic(op, x.shape(), "need N × C or N × C × H × W"),
    }
}

/// Checks that γ, β (and the statistics, when given) hold one value per channel.
#[track_caller]
fn check_per_channel<T: Float>(op: &str, x: &Tensor<T>, c: usize, params: &[(&str, &[usize])]) {
    for (name, shape) in params {
        if *shape != [c] {
            let why = format!("{name} needs {c} values, one per channel");
            shape_panic(op, x.shape(), shape, &why);
        }
    }
}

/// The planes (N of them, `plane` values each) of channel `ch` in x read as N × C × plane.
#[cfg(test)]
fn planes<T>(x: &[T], c: usize, plane: usize, ch: usize) -> impl Iterator<Item = &[T]> {
    x.chunks_exact(plane.max(1)).skip(ch).step_by(c.max(1))
}

/// Partial sums per channel reduction: independent chains for the vector units, and a fixed
/// count, so that the order of additions depends on the shape only.
const LANES: usize = 16;

/// K sums over the pairs (a, b) of a channel: Σ f(a, b)[k], for the planes of two tensors
/// of the same shape taken side by side. Value p of each plane goes to partial sum
/// p mod [`LANES`], and the partial sums are added pairwise at the end, so the additions
/// form [`LANES`] independent chains instead of one.
#[cfg(test)]
fn lane_sums<'a, T: Float, const K: usize>(
    pairs: impl Iterator<Item = (&'a [T], &'a [T])>,
    f: impl Fn(T, T) -> [T; K],
) -> [T; K] {
    let mut acc = [[T::ZERO; LANES]; K];
    for (a, b) in pairs {
        add_plane(&mut acc, (a, b), &f);
    }
    acc.map(pairwise_sum)
}

/// Adds one plane pair into the K × [`LANES`] partial sums of [`lane_sums`].
#[inline(always)]
fn add_plane<T: Float, const K: usize>(
    acc: &mut [[T; LANES]; K],
    (a, b): (&[T], &[T]),
    f: impl Fn(T, T) -> [T; K],
) {
    let (ca, cb) = (a.as_chunks::<LANES>(), b.as_chunks::<LANES>());
    for (a, b) in ca.0.iter().zip(cb.0) {
        let v: [[T; K]; LANES] = std::array::from_fn(|l| f(a[l], b[l]));
        for k in 0..K {
            for l in 0..LANES {
                acc[k][l] += v[l][k];
            }
        }
    }
    for (l, (&a, &b)) in ca.1.iter().zip(cb.1).enumerate() {
        let v = f(a, b);
        for k in 0..K {
            acc[k][l] += v[k];
        }
    }
}

/// Channels per task of the per-channel sums over planes.
const CHANNEL_BLOCK: usize = 8;

/// `per_block(channels)` for blocks of [`CHANNEL_BLOCK`] channels in parallel, each block's
/// results in channel order, concatenated.
fn by_channel_blocks<R: Send>(
    c: usize,
    per_block: impl Fn(std::ops::Range<usize>) -> Vec<R> + Sync,
) -> Vec<R> {
    let blocks: Vec<Vec<R>> = (0..c.div_ceil(CHANNEL_BLOCK))
        .into_par_iter()
        .map(|b| per_block(b * CHANNEL_BLOCK..((b + 1) * CHANNEL_BLOCK).min(c)))
        .collect();
    blocks.into_iter().flatten().collect()
}

/// [`lane_sums`] of f(ch, a, b) for each channel of `chans`, over the planes of a and b
/// read as N × C × plane: the same additions in the same order (sample by sample, then
/// along the plane), but sweeping memory in order: for each sample the block's planes lie
/// side by side, one stream for the prefetcher instead of a jump at every plane.
fn block_lane_sums<T: Float, const K: usize, F: Fn(T, T) -> [T; K]>(
    (a, b): (&[T], &[T]),
    (c, plane): (usize, usize),
    chans: std::ops::Range<usize>,
    f: impl Fn(usize) -> F,
) -> Vec<[T; K]> {
    let mut acc = vec![[[T::ZERO; LANES]; K]; chans.len()];
    for s in 0..a.len() / (c * plane).max(1) {
        let at = (s * c + chans.start) * plane;
        let (a, b) = (
            &a[at..][..chans.len() * plane],
            &b[at..][..chans.len() * plane],
        );
        let planes = a.chunks_exact(plane).zip(b.chunks_exact(plane));
        for ((acc, ch), pair) in acc.iter_mut().zip(chans.clone()).zip(planes) {
            add_plane(acc, pair, f(ch));
        }
    }
    acc.into_iter().map(|acc| acc.map(pairwise_sum)).collect()
}

/// K sums per channel over the N × C rows of two tensors of the same shape: Σₙ f(a, b)[k]
/// for each channel, with row n going to partial sum n mod [`LANES`] as in [`lane_sums`],
/// so that both layouts of the same values give the same bits. The loop runs along the
/// channels of a row, which vectorises.
fn row_lane_sums<T: Float, const K: usize, F: Fn(T, T) -> [T; K]>(
    (a, b): (&[T], &[T]),
    c: usize,
    f: impl Fn(usize) -> F,
) -> [Vec<T>; K] {
    let mut acc: [Vec<T>; K] = std::array::from_fn(|_| vec![T::ZERO; LANES * c]);
    for (n, (ra, rb)) in a.chunks_exact(c).zip(b.chunks_exact(c)).enumerate() {
        let l = n % LANES;
        for ch in 0..c {
            let v = f(ch)(ra[ch], rb[ch]);
            for k in 0..K {
                acc[k][l * c + ch] += v[k];
            }
        }
    }
    acc.map(|lanes| {
        (0..c)
            .map(|ch| pairwise_sum(std::array::from_fn::<T, LANES, _>(|l| lanes[l * c + ch])))
            .collect()
    })
}

/// Per-channel mean and biased variance, in two passes (mean, then Σ (x − μ)²), which is
/// more accurate than E[x²] − μ² when |μ| ≫ σ.
fn channel_stats<T: Float>(x: &[T], c: usize, plane: usize) -> (Vec<T>, Vec<T>) {
    let m = T::from_usize(x.len() / c.max(1));
    if plane == 1 {
        return row_stats(x, c, m);
    }
    // Both passes over one block of channels, whose values stay in L2 between them.
    by_channel_blocks(c, |chans| {
        let own = (x, x);
        let sums = block_lane_sums(own, (c, plane), chans.clone(), |_| |v, _| [v]);
        let means: Vec<T> = sums.iter().map(|&[sum]| sum / m).collect();
        let sq = block_lane_sums(own, (c, plane), chans.clone(), |ch| {
            let mean = means[ch - chans.start];
            move |v, _| [(v - mean) * (v - mean)]
        });
        means
            .into_iter()
            .zip(sq)
            .map(|(mean, [sq])| (mean, sq / m))
            .collect()
    })
    .into_iter()
    .unzip()
}

/// [`channel_stats`] of N × C rows (a dense layer's batch), sweeping the rows in order
/// (see [`row_lane_sums`]).
fn row_stats<T: Float>(x: &[T], c: usize, m: T) -> (Vec<T>, Vec<T>) {
    let [mut mean] = row_lane_sums((x, x), c, |_| |v, _| [v]);
    mean.iter_mut().for_each(|s| *s /= m);
    let [mut var] = row_lane_sums((x, x), c, |ch| {
        let mean = mean[ch];
        move |v, _| [(v - mean) * (v - mean)]
    });
    var.iter_mut().for_each(|s| *s /= m);
    (mean, var)
}

/// y = act(γ·(x − μ)·inv_std + β) per channel.
fn normalize<T: Float, A: Act>(x: &[T], affine: &Affine<T, A>, plane: usize) -> Vec<T> {
    let (c, act) = (affine.mean.len(), affine.act);
    let (scale, mean, beta) = (&affine.scale, affine.mean, affine.beta);
    let mut y = scratch::take(x.len());
    if plane == 1 {
        // N × C rows: a row at a time, so that the loop runs along the channels.
        for (y, x) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
            for (ch, (y, &x)) in y.iter_mut().zip(x).enumerate() {
                *y = act.apply(scale[ch] * (x - mean[ch]) + beta[ch]);
            }
        }
        return y;
    }
    y.par_chunks_mut(plane.max(1))
        .zip(x.par_chunks(plane.max(1)))
        .enumerate()
        .for_each(|(i, (y, x))| {
            let ch = i % c;
            let (scale, mu, shift) = (scale[ch], mean[ch], beta[ch]);
            for (y, &x) in y.iter_mut().zip(x) {
                *y = act.apply(scale * (x - mu) + shift);
            }
        });
    y
}

/// Per channel, Σ g and Σ g·x̂: the gradients of β and γ, which both modes need. g is
/// first taken back through the activation of `affine`.
fn grad_sums<T: Float, A: Act>(
    grad_out: &[T],
    x: &[T],
    affine: &Affine<T, A>,
    plane: usize,
) -> (Vec<T>, Vec<T>) {
    let (mean, inv_std) = (affine.mean, affine.inv_std);
    let c = mean.len();
    let sums = |ch: usize| {
        let (through, mu, inv) = (affine.at(ch), mean[ch], inv_std[ch]);
        move |g, x| {
            let g = through(g, x);
            [g, g * (x - mu) * inv]
        }
    };
    if plane == 1 {
        // N × C rows: the same partial sums as the per-channel path.
        let [sum_g, sum_gx] = row_lane_sums((grad_out, x), c, sums);
        return (sum_g, sum_gx);
    }
    by_channel_blocks(c, |chans| {
        block_lane_sums((grad_out, x), (c, plane), chans, sums)
    })
    .into_iter()
    .map(|[sum_g, sum_gx]| (sum_g, sum_gx))
    .unzip()
}

/// ∂L/∂x = γ·inv_std·(g − mean(g) − x̂·mean(g·x̂)) per channel, from the sums Σ g and Σ g·x̂,
/// where g is ∂L/∂y taken back through the activation of `affine`.
fn train_grad_input<T: Float, A: Act>(
    grad_out: &[T],
    x: &[T],
    affine: &Affine<T, A>,
    (sum_g, sum_gx): (&[T], &[T]),
    plane: usize,
) -> Vec<T> {
    let (mean, inv_std, scale) = (affine.mean, affine.inv_std, &affine.scale);
    let c = mean.len();
    let m = T::from_usize(x.len() / c);
    // Per channel: mean(g) and mean(g·x̂).
    let mean_g: Vec<T> = sum_g.iter().map(|&s| s / m).collect();
    let mean_gx: Vec<T> = sum_gx.iter().map(|&s| s / m).collect();
    // The formula for one value of channel ch, from that channel's constants.
    let at = |g: T, x: T, (mu, is, scale, mean_g, mean_gx): (T, T, T, T, T)| {
        let x_hat = (x - mu) * is;
        scale * (g - mean_g - x_hat * mean_gx)
    };
    let consts = |ch: usize| (mean[ch], inv_std[ch], scale[ch], mean_g[ch], mean_gx[ch]);
    let mut grad_input = scratch::take(x.len());
    if plane == 1 {
        // N × C rows: a row at a time, so that the loop runs along the channels.
        let rows = grad_input.chunks_exact_mut(c).zip(grad_out.chunks_exact(c));
        for ((gi, g), x) in rows.zip(x.chunks_exact(c)) {
            for ch in 0..c {
                gi[ch] = at(affine.at(ch)(g[ch], x[ch]), x[ch], consts(ch));
            }
        }
        return grad_input;
    }
    grad_input
        .par_chunks_mut(plane)
        .zip(grad_out.par_chunks(plane).zip(x.par_chunks(plane)))
        .enumerate()
        .for_each(|(i, (gi, (g, x)))| {
            let (through, k) = (affine.at(i % c), consts(i % c));
            for ((gi, &g), &x) in gi.iter_mut().zip(g).zip(x) {
                *gi = at(through(g, x), x, k);
            }
        });
    grad_input
}

impl<T: Float> Tensor<T> {
    /// Training-mode batch norm with the batch's own statistics, per channel c:
    ///
    /// y = γ·x̂ + β,   x̂ = (x − μ)/√(σ² + ε),   μ and σ² the mean and the *biased* variance
    /// (divided by m) of the m = N (or N·H·W) values of channel c.
    ///
    /// Backward, with g = ∂L/∂y and means over the m values of each channel:
    ///
    /// ∂L/∂x = γ/√(σ² + ε) · (g − mean(g) − x̂·mean(g·x̂)),   ∂L/∂γ = Σ g·x̂,   ∂L/∂β = Σ g.
    ///
    /// The two subtracted terms are the paths through μ and σ²: shifting all of a channel's
    /// inputs moves μ and leaves y unchanged, and scaling them is undone by σ.
    ///
    /// Returns y, μ and σ² (per channel, detached). σ² is biased as used in the
    /// normalisation; a running variance that should be unbiased is the caller's to rescale
    /// by m/(m − 1).
    ///
    /// # Shapes
    /// x: N × C or N × C × H × W; γ, β: C; y: as x.
    ///
    /// # Panics
    /// When x has another rank, a channel has no values, or γ or β is not C long.
    #[track_caller]
    pub fn batch_norm_train(
        &self,
        gamma: &Tensor<T>,
        beta: &Tensor<T>,
        eps: T,
    ) -> (Tensor<T>, Vec<T>, Vec<T>) {
        self.batch_norm_train_then(gamma, beta, eps, FusedActivation::Identity)
    }

    /// [`batch_norm_train`](Self::batch_norm_train) followed by an activation, in one op:
    /// y = act(γ·x̂ + β). The same values and gradients, to the bit, as the two ops one
    /// after the other, with one pass over memory less each way. Backward recomputes
    /// v = γ·x̂ + β from x to find act′(v), so only x is kept, as for batch norm alone.
    ///
    /// # Panics
    /// As [`batch_norm_train`](Self::batch_norm_train), and for a leaky ReLU whose slope
    /// is not positive.
    #[track_caller]
    pub fn batch_norm_train_then(
        &self,
        gamma: &Tensor<T>,
        beta: &Tensor<T>,
        eps: T,
        act: FusedActivation,
    ) -> (Tensor<T>, Vec<T>, Vec<T>) {
        let op = "batch_norm_train";
        act.check(op, self.shape());
        let (c, plane) = channels_and_plane(op, self);
        check_per_channel(op, self, c, &[("γ", gamma.shape()), ("β", beta.shape())]);
        if self.shape()[0] * plane == 0 {
            op_panic(op, self.shape(), "each channel needs at least one value");
        }

        let (mean, var) = channel_stats(&self.data(), c, plane);
        let inv_std: Vec<T> = var.iter().map(|&v| T::ONE / (v + eps).sqrt()).collect();
        let (g_data, b_data) = (gamma.data(), beta.data());
        let y = with_act!(act, |a| {
            let affine = Affine::new(a, &g_data, (&mean, &inv_std), &b_data);
            normalize(&self.data(), &affine, plane)
        });
        drop((g_data, b_data));

        let (mu, istd) = (mean.clone(), inv_std);
        let inputs = vec![self.clone(), gamma.clone(), beta.clone()];
        let gf = GradFn::new(op, inputs, move |inp, _, grad_out| {
            let (x, gamma, beta) = (&inp[0], &inp[1], &inp[2]);
            let (g_data, b_data) = (gamma.data(), beta.data());
            let (sum_g, sum_gx) = with_act!(act, |a| {
                let affine = Affine::new(a, &g_data, (&mu, &istd), &b_data);
                let (sum_g, sum_gx) = grad_sums(grad_out, &x.data(), &affine, plane);
                if x.requires_grad() {
                    let sums = (&sum_g[..], &sum_gx[..]);
                    let grad_input = train_grad_input(grad_out, &x.data(), &affine, sums, plane);
                    x.accumulate_grad_vec(grad_input);
                }
                (sum_g, sum_gx)
            });
            drop((g_data, b_data));
            gamma.accumulate_grad_vec(sum_gx);
            beta.accumulate_grad_vec(sum_g);
        });
        (Tensor::from_op(self.shape().to_vec(), y, gf), mean, var)
    }

    /// Evaluation-mode batch norm with given per-channel statistics (running averages),
    /// treated as constants:
    ///
    /// y = γ·x̂ + β,   x̂ = (x − μ)/√(σ² + ε).
    ///
    /// Backward: ∂L/∂x = γ/√(σ² + ε) · g,   ∂L/∂γ = Σ g·x̂,   ∂L/∂β = Σ g.
    ///
    /// # Shapes
    /// x: N × C or N × C × H × W; γ, β, `mean`, `var`: C; y: as x.
    ///
    /// # Panics
    /// When x has another rank, or γ, β, `mean` or `var` is not C long.
    #[track_caller]
    pub fn batch_norm_eval(
        &self,
        gamma: &Tensor<T>,
        beta: &Tensor<T>,
        mean: &[T],
        var: &[T],
        eps: T,
    ) -> Tensor<T> {
        let op = "batch_norm_eval";
        let (c, plane) = channels_and_plane(op, self);
        let params = [
            ("γ", gamma.shape()),
            ("β", beta.shape()),
            ("mean", &[mean.len()][..]),
            ("var", &[var.len()][..]),
        ];
        check_per_channel(op, self, c, &params);

        let inv_std: Vec<T> = var.iter().map(|&v| T::ONE / (v + eps).sqrt()).collect();
        let (g_data, b_data) = (gamma.data(), beta.data());
        let affine = Affine::new(Identity, &g_data, (mean, &inv_std), &b_data);
        let y = normalize(&self.data(), &affine, plane);
        drop((g_data, b_data));

        let mu = mean.to_vec();
        let inputs = vec![self.clone(), gamma.clone(), beta.clone()];
        let gf = GradFn::new(op, inputs, move |inp, _, grad_out| {
            let (x, gamma, beta) = (&inp[0], &inp[1], &inp[2]);
            if x.requires_grad() {
                // γ·g/√(σ² + ε) is `normalize` of g with μ = β = 0.
                let zero = vec![T::ZERO; c];
                let through = Affine::new(Identity, &gamma.data(), (&zero, &inv_std), &zero);
                let grad_input = normalize(grad_out, &through, plane);
                x.accumulate_grad_vec(grad_input);
            }
            if gamma.requires_grad() || beta.requires_grad() {
                let (g_data, b_data) = (gamma.data(), beta.data());
                let affine = Affine::new(Identity, &g_data, (&mu, &inv_std), &b_data);
                let (sum_g, sum_gx) = grad_sums(grad_out, &x.data(), &affine, plane);
                drop((g_data, b_data));
                gamma.accumulate_grad_vec(sum_gx);
                beta.accumulate_grad_vec(sum_g);
            }
        });
        Tensor::from_op(self.shape().to_vec(), y, gf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Planes of every length around the lane count, summed in lanes, against a plain f64
    /// sum; then the two sums of one pass against two separate passes, to the bit.
    #[test]
    fn lane_sums_match_a_plain_sum() {
        for plane in [1, 3, 15, 16, 17, 49, 100] {
            let (n, c) = (3, 2);
            let x: Vec<f32> = (0..n * c * plane).map(|i| (i % 11) as f32 - 4.5).collect();
            let g: Vec<f32> = (0..n * c * plane).map(|i| (i % 7) as f32 * 0.25).collect();
            for ch in 0..c {
                let pairs = || planes(&x, c, plane, ch).zip(planes(&g, c, plane, ch));
                let [sx, sxg] = lane_sums(pairs(), |a, b| [a, a * b]);
                let plain: f64 = planes(&x, c, plane, ch).flatten().map(|&v| v as f64).sum();
                let plain_xg: f64 = pairs()
                    .flat_map(|(a, b)| a.iter().zip(b))
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                // Small integers and quarters: every partial sum is exact in f32.
                assert_eq!((sx as f64, sxg as f64), (plain, plain_xg), "plane {plane}");
                let [alone] = lane_sums(pairs(), |a, b| [a * b]);
                assert_eq!(alone.to_bits(), sxg.to_bits(), "plane {plane}");
            }
        }
    }
}
