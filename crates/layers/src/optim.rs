//! Optimizers: in-place parameter updates that record nothing on the tape.

use autograd::kernels::adam::{adam_update, AdamStep};
use autograd::kernels::{CHUNK, PAR_THRESHOLD};
use autograd::Tensor;
use rayon::prelude::*;

use crate::module::Scalar;

/// Something that updates a fixed set of parameters from their gradients.
pub trait Optimizer<T: Scalar = f32> {
    /// Applies one update to every parameter that has a gradient, then leaves the gradients
    /// in place (call [`zero_grad`](Self::zero_grad) before the next backward).
    fn step(&mut self);

    /// Clears the gradients of the parameters this optimizer updates.
    fn zero_grad(&self);

    /// Number of steps taken.
    fn steps(&self) -> u64;

    /// The internal state, as named tensors (`m.0.weight`, …), for checkpoints.
    fn state(&self) -> Vec<(String, Tensor<T>)>;

    /// Restores the step count and the state saved by [`state`](Self::state).
    ///
    /// Returns an error naming the first missing or mis-shaped entry.
    fn load_state(&mut self, steps: u64, state: &[(String, Tensor<T>)]) -> Result<(), String>;
}

/// Applies `f(param, grad, state)` elementwise, in parallel for large tensors.
fn update<T: Scalar>(p: &mut [T], g: &[T], u: &mut [T], f: impl Fn(&mut T, T, &mut T) + Sync) {
    let body = |p: &mut [T], g: &[T], u: &mut [T]| {
        for ((p, &g), u) in p.iter_mut().zip(g).zip(u.iter_mut()) {
            f(p, g, u);
        }
    };
    if p.len() < PAR_THRESHOLD {
        body(p, g, u);
        return;
    }
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK).zip(u.par_chunks_mut(CHUNK)))
        .for_each(|(p, (g, u))| body(p, g, u));
}

/// Looks up `name` in a saved state and checks its size.
fn find_state<T: Scalar>(
    state: &[(String, Tensor<T>)],
    name: &str,
    len: usize,
) -> Result<Vec<T>, String> {
    let t = state
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .ok_or_else(|| format!("optimizer state has no entry `{name}`"))?;
    if t.numel() != len {
        return Err(format!(
            "optimizer state `{name}` has {} values, expected {len}",
            t.numel()
        ));
    }
    Ok(t.to_vec())
}

/// Adam's hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate α.
    pub lr: f64,
    /// Decay of the first-moment average, β₁.
    pub beta1: f64,
    /// Decay of the second-moment average, β₂.
    pub beta2: f64,
    /// ε added to √v̂ (Keras' default 1e-7).
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
        }
    }
}

/// Adam with bias correction. For each parameter θ with gradient g, at step t:
///
/// ```text
/// m ← β₁m + (1 − β₁)g        v ← β₂v + (1 − β₂)g²
/// m̂ = m / (1 − β₁ᵗ)          v̂ = v / (1 − β₂ᵗ)
/// θ ← θ − α·m̂ / (√v̂ + ε)
/// ```
pub struct Adam<T: Scalar = f32> {
    /// Hyper-parameters; may be changed between steps.
    pub config: AdamConfig,
    params: Vec<(String, Tensor<T>)>,
    m: Vec<Vec<T>>,
    v: Vec<Vec<T>>,
    t: u64,
}

impl<T: Scalar> Adam<T> {
    /// An optimizer for the given named parameters, with zeroed moments.
    pub fn new(params: Vec<(String, Tensor<T>)>, config: AdamConfig) -> Self {
        let zeros = |p: &Vec<(String, Tensor<T>)>| {
            p.iter().map(|(_, t)| vec![T::ZERO; t.numel()]).collect()
        };
        Adam {
            config,
            m: zeros(&params),
            v: zeros(&params),
            params,
            t: 0,
        }
    }
}

impl<T: Scalar> Optimizer<T> for Adam<T> {
    fn step(&mut self) {
        self.t += 1;
        let c = self.config;
        let s = AdamStep::new(c.lr, c.beta1, c.beta2, c.eps, self.t);
        for (i, (_, p)) in self.params.iter().enumerate() {
            let grad = p.grad_ref();
            let Some(g) = grad.as_ref() else { continue };
            adam_update(&mut p.data_mut(), g, &mut self.m[i], &mut self.v[i], s);
        }
    }

    fn zero_grad(&self) {
        self.params.iter().for_each(|(_, p)| p.zero_grad());
    }

    fn steps(&self) -> u64 {
        self.t
    }

    fn state(&self) -> Vec<(String, Tensor<T>)> {
        let mut s = Vec::new();
        for (i, (name, p)) in self.params.iter().enumerate() {
            s.push((
                format!("m.{name}"),
                Tensor::from_vec(self.m[i].clone(), p.shape()),
            ));
            s.push((
                format!("v.{name}"),
                Tensor::from_vec(self.v[i].clone(), p.shape()),
            ));
        }
        s
    }

    fn load_state(&mut self, steps: u64, state: &[(String, Tensor<T>)]) -> Result<(), String> {
        for (i, (name, p)) in self.params.iter().enumerate() {
            self.m[i] = find_state(state, &format!("m.{name}"), p.numel())?;
            self.v[i] = find_state(state, &format!("v.{name}"), p.numel())?;
        }
        self.t = steps;
        Ok(())
    }
}

/// Stochastic gradient descent with momentum μ:  u ← μu + g,  θ ← θ − α·u.
pub struct Sgd<T: Scalar = f32> {
    /// Learning rate α.
    pub lr: f64,
    /// Momentum μ (0 for plain SGD).
    pub momentum: f64,
    params: Vec<(String, Tensor<T>)>,
    velocity: Vec<Vec<T>>,
    t: u64,
}

impl<T: Scalar> Sgd<T> {
    /// An optimizer for the given named parameters.
    pub fn new(params: Vec<(String, Tensor<T>)>, lr: f64, momentum: f64) -> Self {
        let velocity = params
            .iter()
            .map(|(_, t)| vec![T::ZERO; t.numel()])
            .collect();
        Sgd {
            lr,
            momentum,
            params,
            velocity,
            t: 0,
        }
    }
}

impl<T: Scalar> Optimizer<T> for Sgd<T> {
    fn step(&mut self) {
        self.t += 1;
        let (lr, mu) = (T::from_f64(self.lr), T::from_f64(self.momentum));
        for (i, (_, p)) in self.params.iter().enumerate() {
            let grad = p.grad_ref();
            let Some(g) = grad.as_ref() else { continue };
            update(&mut p.data_mut(), g, &mut self.velocity[i], |p, g, u| {
                *u = mu * *u + g;
                *p -= lr * *u;
            });
        }
    }

    fn zero_grad(&self) {
        self.params.iter().for_each(|(_, p)| p.zero_grad());
    }

    fn steps(&self) -> u64 {
        self.t
    }

    fn state(&self) -> Vec<(String, Tensor<T>)> {
        let named = self.params.iter().zip(&self.velocity);
        named
            .map(|((n, p), u)| {
                (
                    format!("velocity.{n}"),
                    Tensor::from_vec(u.clone(), p.shape()),
                )
            })
            .collect()
    }

    fn load_state(&mut self, steps: u64, state: &[(String, Tensor<T>)]) -> Result<(), String> {
        for (i, (name, p)) in self.params.iter().enumerate() {
            self.velocity[i] = find_state(state, &format!("velocity.{name}"), p.numel())?;
        }
        self.t = steps;
        Ok(())
    }
}
