//! Losses, each reduced to a scalar mean over all elements. Targets are constants: no
//! gradient flows into them (except in `mse`, where both sides are inputs).

use crate::element::Float;
use crate::kernels::{sum, zip_map};
use crate::ops::unary::sigmoid;
use crate::shape::shape_panic;
use crate::tape::GradFn;
use crate::tensor::Tensor;

/// Probabilities are clamped to [ε, 1 − ε] before the logarithms of [`Tensor::bce`], as Keras
/// does, so that a saturated sigmoid gives a large finite loss instead of ∞.
pub const BCE_EPS: f64 = 1e-7;

#[track_caller]
fn same_shape<T: Float>(op: &str, a: &Tensor<T>, b: &Tensor<T>) {
    if a.shape() != b.shape() {
        shape_panic(op, a.shape(), b.shape(), "shapes must be equal");
    }
}

impl<T: Float> Tensor<T> {
    /// Binary cross-entropy on probabilities p = self against targets t:
    /// L = −(1/n) Σ [t ln p + (1 − t) ln(1 − p)], with p clamped to [ε, 1 − ε]
    /// ([`BCE_EPS`]). ∂L/∂p = (p − t) / (p(1 − p)) / n inside the clamp, 0 outside it.
    #[track_caller]
    pub fn bce(&self, target: &Tensor<T>) -> Tensor<T> {
        same_shape("bce", self, target);
        let eps = T::from_f64(BCE_EPS);
        let clamp = move |p: T| p.max(eps).min(T::ONE - eps);
        let n = T::from_usize(self.numel());
        let terms = zip_map(&self.data(), &target.data(), |p, t| {
            let p = clamp(p);
            -(t * p.ln() + (T::ONE - t) * (T::ONE - p).ln())
        });
        let loss = sum(&terms) / n;

        let gf = GradFn::new(
            "bce",
            vec![self.clone(), target.clone()],
            move |inp, _, g| {
                let scale = g[0] / n;
                let grad_p = zip_map(&inp[0].data(), &inp[1].data(), |p, t| {
                    if p < eps || p > T::ONE - eps {
                        return T::ZERO; // flat where clamped
                    }
                    scale * (p - t) / (p * (T::ONE - p))
                });
                inp[0].accumulate_grad_vec(grad_p);
            },
        );
        Tensor::from_op(vec![], vec![loss], gf)
    }

    /// Binary cross-entropy on logits x = self, the numerically stable form of
    /// `sigmoid(x).bce(t)`: L = (1/n) Σ [max(x, 0) − x·t + ln(1 + e^(−|x|))].
    /// ∂L/∂x = (σ(x) − t) / n.
    #[track_caller]
    pub fn bce_with_logits(&self, target: &Tensor<T>) -> Tensor<T> {
        same_shape("bce_with_logits", self, target);
        let n = T::from_usize(self.numel());
        let terms = zip_map(&self.data(), &target.data(), |x, t| {
            x.max(T::ZERO) - x * t + (-x.abs()).exp().ln_1p()
        });
        let loss = sum(&terms) / n;

        let inputs = vec![self.clone(), target.clone()];
        let gf = GradFn::new("bce_with_logits", inputs, move |inp, _, g| {
            let scale = g[0] / n;
            let grad_x = zip_map(&inp[0].data(), &inp[1].data(), |x, t| {
                scale * (sigmoid(x) - t)
            });
            inp[0].accumulate_grad_vec(grad_x);
        });
        Tensor::from_op(vec![], vec![loss], gf)
    }

    /// Mean squared error L = (1/n) Σ (a − b)². ∂L/∂a = 2(a − b)/n, ∂L/∂b = −2(a − b)/n.
    #[track_caller]
    pub fn mse(&self, other: &Tensor<T>) -> Tensor<T> {
        same_shape("mse", self, other);
        let n = T::from_usize(self.numel());
        let diff = zip_map(&self.data(), &other.data(), |a, b| a - b);
        let loss = diff.iter().map(|&d| d * d).sum::<T>() / n;

        let gf = GradFn::new(
            "mse",
            vec![self.clone(), other.clone()],
            move |inp, _, g| {
                let two = T::from_f64(2.0) * g[0] / n;
                let grad_a: Vec<T> = diff.iter().map(|&d| two * d).collect();
                if inp[1].requires_grad() {
                    inp[1].accumulate_grad_vec(grad_a.iter().map(|&v| -v).collect());
                }
                inp[0].accumulate_grad_vec(grad_a);
            },
        );
        Tensor::from_op(vec![], vec![loss], gf)
    }
}
