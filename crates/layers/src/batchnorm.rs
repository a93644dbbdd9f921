//! Batch normalisation for dense (N, C) and image (N, C, H, W) inputs.

use std::cell::Cell;

use autograd::shape::op_panic;
use autograd::{FusedActivation, Tensor};

use crate::module::{Module, Scalar};

/// Normalises each channel, then scales and shifts it with learned γ and β:
///
/// ```text
/// y = γ · (x − μ) / √(σ² + ε) + β
/// ```
///
/// In training mode μ and σ² are the batch's mean and biased variance per channel (over N,
/// or over N, H and W for images), and the gradient flows through them as well: every
/// output depends on every input of its channel. Each training forward also updates the
/// running statistics; evaluation mode normalises with those instead.
///
/// # Momentum
/// The running statistics follow the Keras convention,
///
/// ```text
/// running ← momentum · running + (1 − momentum) · batch
/// ```
///
/// so Keras' `momentum=0.8` is this layer's `.momentum(0.8)` and PyTorch's `momentum=0.2`.
/// The defaults are Keras' (momentum 0.99, ε = 10⁻³), not PyTorch's (0.9 and 10⁻⁵).
///
/// # Shapes
/// - input and output: (N, C) or (N, C, H, W)
/// - weight γ, bias β, running_mean, running_var: (C)
pub struct BatchNorm<T: Scalar = f32> {
    /// Scale γ, initially 1.
    pub weight: Tensor<T>,
    /// Shift β, initially 0.
    pub bias: Tensor<T>,
    /// Running mean, initially 0; not learned, updated by training forwards.
    pub running_mean: Tensor<T>,
    /// Running (unbiased) variance, initially 1; not learned, updated by training forwards.
    pub running_var: Tensor<T>,
    momentum: f64,
    eps: f64,
    training: Cell<bool>,
}

impl<T: Scalar> BatchNorm<T> {
    /// A layer over `channels` channels, in training mode, with Keras' momentum 0.99 and
    /// ε = 10⁻³.
    pub fn new(channels: usize) -> Self {
        BatchNorm {
            weight: Tensor::ones(&[channels]).requires_grad_(true),
            bias: Tensor::zeros(&[channels]).requires_grad_(true),
            running_mean: Tensor::zeros(&[channels]),
            running_var: Tensor::ones(&[channels]),
            momentum: 0.99,
            eps: 1e-3,
            training: Cell::new(true),
        }
    }

    /// Sets the momentum, in the Keras convention (the weight kept by the running
    /// statistics at each step).
    ///
    /// # Panics
    /// When `momentum` is outside [0, 1].
    #[track_caller]
    pub fn momentum(mut self, momentum: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&momentum),
            "BatchNorm: momentum {momentum} is outside [0, 1]"
        );
        self.momentum = momentum;
        self
    }

    /// Sets ε, added to the variance before the square root.
    ///
    /// # Panics
    /// When `eps` is not positive.
    #[track_caller]
    pub fn eps(mut self, eps: f64) -> Self {
        assert!(eps > 0.0, "BatchNorm: eps {eps} must be positive");
        self.eps = eps;
        self
    }

    /// Number of channels C.
    pub fn channels(&self) -> usize {
        self.weight.numel()
    }

    /// Whether forward uses batch statistics (and updates the running ones).
    pub fn is_training(&self) -> bool {
        self.training.get()
    }

    /// Blends one batch's statistics into the running ones; `n` values per channel.
    /// The channel count, after checking that x is (N, C) or (N, C, H, W) with C of them.
    #[track_caller]
    fn check_input(&self, x: &Tensor<T>) -> usize {
        let c = self.channels();
        let s = x.shape();
        if !(s.len() == 2 || s.len() == 4) || s[1] != c {
            op_panic(
                "BatchNorm",
                s,
                &format!("expected (N, {c}) or (N, {c}, H, W)"),
            );
        }
        c
    }

    fn update_running(&self, mean: &[T], var: &[T], n: usize) {
        let keep = T::from_f64(self.momentum);
        let take = T::ONE - keep;
        // Unbiased n/(n − 1), as PyTorch and TF's fused kernel: it estimates the data's
        // variance, which a small batch's biased variance underestimates.
        let bessel = T::from_f64(n as f64 / n.saturating_sub(1).max(1) as f64);

        let mut running_mean = self.running_mean.data_mut();
        for (r, &m) in running_mean.iter_mut().zip(mean) {
            *r = keep * *r + take * m;
        }
        let mut running_var = self.running_var.data_mut();
        for (r, &v) in running_var.iter_mut().zip(var) {
            *r = keep * *r + take * bessel * v;
        }
    }
}

impl<T: Scalar> Module<T> for BatchNorm<T> {
    /// # Panics
    /// When `x` is not (N, C) or (N, C, H, W) with this layer's C.
    #[track_caller]
    fn forward(&self, x: &Tensor<T>) -> Tensor<T> {
        if let Some(y) = self.forward_then(x, FusedActivation::Identity) {
            return y;
        }
        self.check_input(x);
        let (mean, var) = (self.running_mean.to_vec(), self.running_var.to_vec());
        let eps = T::from_f64(self.eps);
        x.batch_norm_eval(&self.weight, &self.bias, &mean, &var, eps)
    }

    /// In training mode, batch norm and `act` as one op
    /// ([`Tensor::batch_norm_train_then`]); in evaluation mode `None`, and the activation
    /// runs as its own layer.
    #[track_caller]
    fn forward_then(&self, x: &Tensor<T>, act: FusedActivation) -> Option<Tensor<T>> {
        if !self.training.get() {
            return None;
        }
        let c = self.check_input(x);
        let eps = T::from_f64(self.eps);
        let (y, mean, var) = x.batch_norm_train_then(&self.weight, &self.bias, eps, act);
        self.update_running(&mean, &var, x.numel() / c);
        Some(y)
    }

    fn parameters(&self) -> Vec<(String, Tensor<T>)> {
        vec![
            ("weight".to_string(), self.weight.clone()),
            ("bias".to_string(), self.bias.clone()),
        ]
    }

    fn buffers(&self) -> Vec<(String, Tensor<T>)> {
        vec![
            ("running_mean".to_string(), self.running_mean.clone()),
            ("running_var".to_string(), self.running_var.clone()),
        ]
    }

    fn set_training(&self, training: bool) {
        self.training.set(training);
    }

    /// In training mode every output of a channel depends on the whole batch.
    fn mixes_samples(&self) -> bool {
        self.training.get()
    }

    fn describe(&self) -> String {
        format!("BatchNorm({}, momentum {})", self.channels(), self.momentum)
    }

    fn output_shape(&self, input: &[usize]) -> Vec<usize> {
        input.to_vec()
    }
}
