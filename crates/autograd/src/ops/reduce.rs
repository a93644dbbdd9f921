//! Sums and means, over all elements or over chosen axes.
//!
//! Backward of a sum copies the upstream gradient to every element that was summed (each
//! contributes with weight 1); a mean also divides by the count.

use crate::element::Float;
use crate::kernels::{self, sum_middle};
use crate::shape::{broadcast_axes, broadcast_strides, for_each_broadcast, norm_axis, numel};
use crate::tape::GradFn;
use crate::tensor::Tensor;

/// Sums `x` (of shape `shape`) over `axes`, keeping them as size 1. One axis at a time, each
/// pass a serial loop in a fixed order, so the result is deterministic.
pub(crate) fn sum_axes_keep<T: Float>(x: &[T], shape: &[usize], axes: &[usize]) -> Vec<T> {
    // The first pass reads `x` directly; later passes read the previous pass's result.
    let mut cur: Option<Vec<T>> = None;
    let mut cur_shape = shape.to_vec();
    for &ax in axes {
        let outer = numel(&cur_shape[..ax]);
        let inner = numel(&cur_shape[ax + 1..]);
        let src = cur.as_deref().unwrap_or(x);
        cur = Some(sum_middle(src, outer, cur_shape[ax], inner));
        cur_shape[ax] = 1;
    }
    cur.unwrap_or_else(|| x.to_vec())
}

/// Sums a gradient of shape `from` down to shape `to`, undoing a broadcast. When nothing was
/// broadcast the gradient is returned as it is, without a copy.
pub fn sum_to_shape<T: Float>(g: Vec<T>, from: &[usize], to: &[usize]) -> Vec<T> {
    if from == to {
        return g;
    }
    // Axes that `to` lacks in front are summed too; the keepdims result has numel(to) values
    // in the right order.
    sum_axes_keep(&g, from, &broadcast_axes(to, from))
}

/// Repeats `g` (shape `small`, which broadcasts to `big`) up to shape `big`.
pub(crate) fn expand_to<T: Float>(g: &[T], small: &[usize], big: &[usize]) -> Vec<T> {
    let mut out = vec![T::ZERO; numel(big)];
    let s = broadcast_strides(small, big);
    let zero = vec![0; big.len()];
    for_each_broadcast(big, &s, &zero, |o, i, _| out[o] = g[i]);
    out
}

impl<T: Float> Tensor<T> {
    /// y = Σᵢ xᵢ, a scalar. ∂y/∂xᵢ = 1.
    pub fn sum(&self) -> Tensor<T> {
        let y = kernels::sum(&self.data());
        let gf = GradFn::new("sum", vec![self.clone()], |inp, _, g| {
            inp[0].accumulate_grad_vec(vec![g[0]; inp[0].numel()]);
        });
        Tensor::from_op(vec![], vec![y], gf)
    }

    /// y = (1/n) Σᵢ xᵢ, a scalar. ∂y/∂xᵢ = 1/n.
    pub fn mean(&self) -> Tensor<T> {
        let n = T::from_usize(self.numel());
        let y = kernels::sum(&self.data()) / n;
        let gf = GradFn::new("mean", vec![self.clone()], move |inp, _, g| {
            inp[0].accumulate_grad_vec(vec![g[0] / n; inp[0].numel()]);
        });
        Tensor::from_op(vec![], vec![y], gf)
    }

    /// Sums over `axes` (negative counts from the end). With `keepdims` the summed axes stay
    /// as size 1, otherwise they are removed. ∂y/∂x copies g along the summed axes.
    ///
    /// # Panics
    /// When an axis is out of range.
    #[track_caller]
    pub fn sum_axes(&self, axes: &[isize], keepdims: bool) -> Tensor<T> {
        self.reduce_axes("sum_axes", axes, keepdims, false)
    }

    /// Means over `axes`; see [`sum_axes`](Self::sum_axes). ∂y/∂x = g / (count per output).
    ///
    /// # Panics
    /// When an axis is out of range.
    #[track_caller]
    pub fn mean_axes(&self, axes: &[isize], keepdims: bool) -> Tensor<T> {
        self.reduce_axes("mean_axes", axes, keepdims, true)
    }

    #[track_caller]
    fn reduce_axes(&self, name: &'static str, axes: &[isize], keep: bool, mean: bool) -> Tensor<T> {
        let shape = self.shape().to_vec();
        let mut ax: Vec<usize> = axes.iter().map(|&a| norm_axis(name, a, &shape)).collect();
        ax.sort_unstable();
        ax.dedup();
        let count: usize = ax.iter().map(|&a| shape[a]).product();
        let scale = if mean {
            T::ONE / T::from_usize(count)
        } else {
            T::ONE
        };

        let mut y = sum_axes_keep(&self.data(), &shape, &ax);
        if mean {
            y.iter_mut().for_each(|v| *v *= scale);
        }
        let kept: Vec<usize> = (0..shape.len())
            .map(|i| if ax.contains(&i) { 1 } else { shape[i] })
            .collect();
        let out_shape: Vec<usize> = if keep {
            kept.clone()
        } else {
            (0..shape.len())
                .filter(|i| !ax.contains(i))
                .map(|i| shape[i])
                .collect()
        };

        let gf = GradFn::new(name, vec![self.clone()], move |inp, _, g| {
            let mut grad_input = expand_to(g, &kept, &shape);
            if mean {
                grad_input.iter_mut().for_each(|v| *v *= scale);
            }
            inp[0].accumulate_grad_vec(grad_input);
        });
        Tensor::from_op(out_shape, y, gf)
    }
}
