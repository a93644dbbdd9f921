//! Softmax and log-softmax along an axis, computed stably by subtracting the maximum.

use crate::element::Float;
use crate::shape::{norm_axis, numel};
use crate::tape::GradFn;
use crate::tensor::Tensor;

/// Views a shape as outer × len × inner around `axis` and calls `f` on each lane: the
/// `len` values at stride `inner` that the op normalises together.
fn for_each_lane(shape: &[usize], axis: usize, mut f: impl FnMut(&dyn Fn(usize) -> usize)) {
    let outer = numel(&shape[..axis]);
    let len = shape[axis];
    let inner = numel(&shape[axis + 1..]);
    for o in 0..outer {
        for i in 0..inner {
            let base = o * len * inner + i;
            f(&|j| base + j * inner);
        }
    }
}

impl<T: Float> Tensor<T> {
    /// yᵢ = eˣⁱ / Σⱼ eˣʲ along `axis`. Backward: ∂L/∂xᵢ = yᵢ (gᵢ − Σⱼ gⱼ yⱼ).
    #[track_caller]
    pub fn softmax(&self, axis: isize) -> Tensor<T> {
        let shape = self.shape().to_vec();
        let ax = norm_axis("softmax", axis, &shape);
        let len = shape[ax];
        let x = self.data();
        let mut y = vec![T::ZERO; x.len()];
        for_each_lane(&shape, ax, |at| {
            let m = (0..len).map(|j| x[at(j)]).fold(x[at(0)], T::max);
            let mut s = T::ZERO;
            for j in 0..len {
                y[at(j)] = (x[at(j)] - m).exp();
                s += y[at(j)];
            }
            for j in 0..len {
                y[at(j)] /= s;
            }
        });
        drop(x);

        let lanes = shape.clone();
        let gf = GradFn::new("softmax", vec![self.clone()], move |inp, y, g| {
            let mut grad_input = vec![T::ZERO; g.len()];
            for_each_lane(&lanes, ax, |at| {
                let dot: T = (0..len).map(|j| g[at(j)] * y[at(j)]).sum();
                for j in 0..len {
                    grad_input[at(j)] = y[at(j)] * (g[at(j)] - dot);
                }
            });
            inp[0].accumulate_grad_vec(grad_input);
        });
        Tensor::from_op(shape, y, gf)
    }

    /// yᵢ = xᵢ − ln Σⱼ eˣʲ along `axis`. Backward: ∂L/∂xᵢ = gᵢ − softmax(x)ᵢ · Σⱼ gⱼ.
    #[track_caller]
    pub fn log_softmax(&self, axis: isize) -> Tensor<T> {
        let shape = self.shape().to_vec();
        let ax = norm_axis("log_softmax", axis, &shape);
        let len = shape[ax];
        let x = self.data();
        let mut y = vec![T::ZERO; x.len()];
        for_each_lane(&shape, ax, |at| {
            let m = (0..len).map(|j| x[at(j)]).fold(x[at(0)], T::max);
            let lse = m + (0..len).map(|j| (x[at(j)] - m).exp()).sum::<T>().ln();
            for j in 0..len {
                y[at(j)] = x[at(j)] - lse;
            }
        });
        drop(x);

        let lanes = shape.clone();
        let gf = GradFn::new("log_softmax", vec![self.clone()], move |inp, y, g| {
            let mut grad_input = vec![T::ZERO; g.len()];
            for_each_lane(&lanes, ax, |at| {
                let total: T = (0..len).map(|j| g[at(j)]).sum();
                for j in 0..len {
                    grad_input[at(j)] = g[at(j)] - y[at(j)].exp() * total;
                }
            });
            inp[0].accumulate_grad_vec(grad_input);
        });
        Tensor::from_op(shape, y, gf)
    }
}
