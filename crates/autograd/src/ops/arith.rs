//! Add, sub, mul, div with NumPy broadcasting, their scalar forms, and neg.
//!
//! Broadcasting in backward: if `a` was stretched along an axis to make the output, each of
//! its elements fed several outputs, so its gradient is the *sum* of theirs along that axis
//! ([`sum_to_shape`]).

use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::element::Float;
use crate::kernels::{map, scratch, zip_map};
use crate::ops::sum_to_shape;
use crate::shape::{broadcast_shape, broadcast_strides, for_each_broadcast, numel};
use crate::tape::GradFn;
use crate::tensor::Tensor;

/// `f(a, b)` over the broadcast of two buffers to `out`.
pub(crate) fn broadcast_zip<T: Float>(
    a: &[T],
    a_shape: &[usize],
    b: &[T],
    b_shape: &[usize],
    out: &[usize],
    f: impl Fn(T, T) -> T + Sync,
) -> Vec<T> {
    if a_shape == out && b_shape == out {
        return zip_map(a, b, f);
    }
    if b.len() == 1 && a_shape == out {
        let s = b[0];
        return map(a, |x| f(x, s));
    }
    if a.len() == 1 && b_shape == out {
        let s = a[0];
        return map(b, |y| f(s, y));
    }
    let mut res = scratch::take(numel(out));
    let (sa, sb) = (
        broadcast_strides(a_shape, out),
        broadcast_strides(b_shape, out),
    );
    for_each_broadcast(out, &sa, &sb, |o, i, j| res[o] = f(a[i], b[j]));
    res
}

/// The shared body of the four broadcasting ops. `rules` turns (a, b, y, g) into the two
/// local gradient factors, evaluated on the broadcast output grid.
fn binary<T: Float>(
    name: &'static str,
    a: &Tensor<T>,
    b: &Tensor<T>,
    f: fn(T, T) -> T,
    grad_a: fn(T, T, T) -> T,
    grad_b: fn(T, T, T) -> T,
) -> Tensor<T> {
    let out = broadcast_shape(name, a.shape(), b.shape());
    let y = broadcast_zip(&a.data(), a.shape(), &b.data(), b.shape(), &out, f);
    let out_shape = out.clone();
    let gf = GradFn::new(name, vec![a.clone(), b.clone()], move |inp, _y, g| {
        let (a, b) = (&inp[0], &inp[1]);
        for (x, rule) in [(a, grad_a), (b, grad_b)] {
            if !x.requires_grad() {
                continue;
            }
            // Local factor on the output grid, g·∂y/∂x, then summed back to x's shape.
            let full = grad_on_grid(
                &a.data(),
                a.shape(),
                &b.data(),
                b.shape(),
                &out_shape,
                g,
                rule,
            );
            x.accumulate_grad_vec(sum_to_shape(full, &out_shape, x.shape()));
        }
    });
    Tensor::from_op(out, y, gf)
}

/// Evaluates `rule(a, b, g)` at every output position.
fn grad_on_grid<T: Float>(
    a: &[T],
    a_shape: &[usize],
    b: &[T],
    b_shape: &[usize],
    out: &[usize],
    g: &[T],
    rule: fn(T, T, T) -> T,
) -> Vec<T> {
    let mut res = scratch::take(numel(out));
    if a_shape == out && b_shape == out {
        for i in 0..res.len() {
            res[i] = rule(a[i], b[i], g[i]);
        }
        return res;
    }
    let (sa, sb) = (
        broadcast_strides(a_shape, out),
        broadcast_strides(b_shape, out),
    );
    for_each_broadcast(out, &sa, &sb, |o, i, j| res[o] = rule(a[i], b[j], g[o]));
    res
}

impl<T: Float> Tensor<T> {
    /// y = a + b (broadcast). ∂y/∂a = 1, ∂y/∂b = 1.
    pub fn add(&self, rhs: &Tensor<T>) -> Tensor<T> {
        binary("add", self, rhs, |a, b| a + b, |_, _, g| g, |_, _, g| g)
    }

    /// y = a − b (broadcast). ∂y/∂a = 1, ∂y/∂b = −1.
    pub fn sub(&self, rhs: &Tensor<T>) -> Tensor<T> {
        binary("sub", self, rhs, |a, b| a - b, |_, _, g| g, |_, _, g| -g)
    }

    /// y = a · b elementwise (broadcast). ∂y/∂a = b, ∂y/∂b = a.
    pub fn mul(&self, rhs: &Tensor<T>) -> Tensor<T> {
        binary(
            "mul",
            self,
            rhs,
            |a, b| a * b,
            |_, b, g| g * b,
            |a, _, g| g * a,
        )
    }

    /// y = a / b elementwise (broadcast). ∂y/∂a = 1/b, ∂y/∂b = −a/b².
    pub fn div(&self, rhs: &Tensor<T>) -> Tensor<T> {
        binary(
            "div",
            self,
            rhs,
            |a, b| a / b,
            |_, b, g| g / b,
            |a, b, g| -g * a / (b * b),
        )
    }

    /// y = x + s. ∂y/∂x = 1.
    pub fn add_scalar(&self, s: T) -> Tensor<T> {
        let y = map(&self.data(), |x| x + s);
        let gf = GradFn::new("add_scalar", vec![self.clone()], |inp, _, g| {
            inp[0].accumulate_grad(g);
        });
        Tensor::from_op(self.shape().to_vec(), y, gf)
    }

    /// y = x − s. ∂y/∂x = 1.
    pub fn sub_scalar(&self, s: T) -> Tensor<T> {
        self.add_scalar(-s)
    }

    /// y = s − x. ∂y/∂x = −1.
    pub fn rsub_scalar(&self, s: T) -> Tensor<T> {
        let y = map(&self.data(), |x| s - x);
        let gf = GradFn::new("rsub_scalar", vec![self.clone()], |inp, _, g| {
            inp[0].accumulate_grad_vec(map(g, |g| -g));
        });
        Tensor::from_op(self.shape().to_vec(), y, gf)
    }

    /// y = s · x. ∂y/∂x = s.
    pub fn mul_scalar(&self, s: T) -> Tensor<T> {
        let y = map(&self.data(), |x| x * s);
        let gf = GradFn::new("mul_scalar", vec![self.clone()], move |inp, _, g| {
            inp[0].accumulate_grad_vec(map(g, |g| g * s));
        });
        Tensor::from_op(self.shape().to_vec(), y, gf)
    }

    /// y = x / s. ∂y/∂x = 1/s.
    pub fn div_scalar(&self, s: T) -> Tensor<T> {
        self.mul_scalar(T::ONE / s)
    }

    /// y = −x. ∂y/∂x = −1.
    pub fn neg(&self) -> Tensor<T> {
        self.mul_scalar(-T::ONE)
    }
}

macro_rules! impl_binop {
    ($tr:ident, $m:ident) => {
        impl<T: Float> $tr<&Tensor<T>> for &Tensor<T> {
            type Output = Tensor<T>;
            fn $m(self, rhs: &Tensor<T>) -> Tensor<T> {
                Tensor::$m(self, rhs)
            }
        }
    };
}
impl_binop!(Add, add);
impl_binop!(Sub, sub);
impl_binop!(Mul, mul);
impl_binop!(Div, div);

impl<T: Float> Neg for &Tensor<T> {
    type Output = Tensor<T>;
    fn neg(self) -> Tensor<T> {
        Tensor::neg(self)
    }
}
