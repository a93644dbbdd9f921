//! Elementwise functions and activations. Each backward is g · f′(x), where f′ is written in
//! whichever of x or y = f(x) makes it cheapest.

use crate::element::Float;
use crate::kernels::{map, zip3_map};
use crate::tape::GradFn;
use crate::tensor::Tensor;

/// Applies `f` and records `df(x, y, g) = g · f′(x)`.
fn unary<T: Float>(
    name: &'static str,
    x: &Tensor<T>,
    f: impl Fn(T) -> T + Sync,
    df: impl Fn(T, T, T) -> T + Sync + 'static,
) -> Tensor<T> {
    let y = map(&x.data(), f);
    let gf = GradFn::new(name, vec![x.clone()], move |inp, y, g| {
        let grad_input = zip3_map(&inp[0].data(), y, g, &df);
        inp[0].accumulate_grad_vec(grad_input);
    });
    Tensor::from_op(x.shape().to_vec(), y, gf)
}

impl<T: Float> Tensor<T> {
    /// y = eˣ. ∂y/∂x = y.
    pub fn exp(&self) -> Tensor<T> {
        unary("exp", self, |x| x.exp(), |_, y, g| g * y)
    }

    /// y = ln x. ∂y/∂x = 1/x.
    pub fn log(&self) -> Tensor<T> {
        unary("log", self, |x| x.ln(), |x, _, g| g / x)
    }

    /// y = √x. ∂y/∂x = 1/(2y).
    pub fn sqrt(&self) -> Tensor<T> {
        unary("sqrt", self, |x| x.sqrt(), |_, y, g| g / (y + y))
    }

    /// y = xᵖ for a constant p. ∂y/∂x = p·xᵖ⁻¹.
    pub fn powf(&self, p: T) -> Tensor<T> {
        unary(
            "powf",
            self,
            move |x| x.powf(p),
            move |x, _, g| g * p * x.powf(p - T::ONE),
        )
    }

    /// y = max(x, 0). ∂y/∂x = 1 where x > 0, else 0 (the kink at 0 takes 0).
    pub fn relu(&self) -> Tensor<T> {
        unary(
            "relu",
            self,
            |x| if x > T::ZERO { x } else { T::ZERO },
            |x, _, g| if x > T::ZERO { g } else { T::ZERO },
        )
    }

    /// y = x for x > 0, αx otherwise. ∂y/∂x = 1 or α.
    pub fn leaky_relu(&self, alpha: T) -> Tensor<T> {
        unary(
            "leaky_relu",
            self,
            move |x| if x > T::ZERO { x } else { alpha * x },
            move |x, _, g| if x > T::ZERO { g } else { alpha * g },
        )
    }

    /// y = tanh x. ∂y/∂x = 1 − y².
    pub fn tanh(&self) -> Tensor<T> {
        unary("tanh", self, |x| x.tanh(), |_, y, g| g * (T::ONE - y * y))
    }

    /// y = σ(x) = 1 / (1 + e⁻ˣ). ∂y/∂x = y(1 − y).
    pub fn sigmoid(&self) -> Tensor<T> {
        unary("sigmoid", self, sigmoid, |_, y, g| g * y * (T::ONE - y))
    }
}

/// σ(x), computed without overflow for large |x|.
pub(crate) fn sigmoid<T: Float>(x: T) -> T {
    if x >= T::ZERO {
        T::ONE / (T::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::ONE + e)
    }
}
