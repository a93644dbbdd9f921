//! Helpers shared by the gradient-check test files: seeded generators, random shapes and
//! random leaves, and a `check` that fails with the checker's own message.

// Each test file compiles this module separately and uses only part of it.
#![allow(dead_code)]

use autograd::{gradcheck, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The generator every test draws from, so that a failure reruns identically.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A shape of the given rank with every size in `1..=max_dim`.
pub fn random_shape(rng: &mut ChaCha8Rng, rank: usize, max_dim: usize) -> Vec<usize> {
    (0..rank).map(|_| rng.gen_range(1..=max_dim)).collect()
}

/// A leaf that requires a gradient, with values from N(0, 1).
pub fn leaf(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor<f64> {
    Tensor::rand_normal(shape, 0.0, 1.0, rng).requires_grad_(true)
}

/// A leaf with values from U(low, high).
pub fn uniform_leaf(shape: &[usize], low: f64, high: f64, rng: &mut ChaCha8Rng) -> Tensor<f64> {
    Tensor::rand_uniform(shape, low, high, rng).requires_grad_(true)
}

/// A leaf with values from N(0, 1), each redrawn until |x| ≥ `margin`. Central differences
/// straddle a kink (relu at 0) or a pole (1/x at 0) when x is within ε of it, so such inputs
/// are kept away.
pub fn leaf_away_from_zero(shape: &[usize], margin: f64, rng: &mut ChaCha8Rng) -> Tensor<f64> {
    let t = leaf(shape, rng);
    for v in t.data_mut().iter_mut() {
        while v.abs() < margin {
            *v = rng.gen_range(-2.0..2.0);
        }
    }
    t
}

/// Runs the gradient checker and panics with its full report on failure. `inputs` is any
/// list of tensors: an array, a `Vec`, or a reference to either.
#[track_caller]
pub fn check(
    name: &str,
    inputs: impl AsRef<[Tensor<f64>]>,
    f: impl Fn(&[Tensor<f64>]) -> Tensor<f64>,
) {
    if let Err(e) = gradcheck(name, inputs.as_ref(), f) {
        panic!("{e}");
    }
}

/// Row-major multi-index of a flat position.
pub fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for ax in (0..shape.len()).rev() {
        idx[ax] = flat % shape[ax];
        flat /= shape[ax];
    }
    idx
}

/// Flat position of a multi-index.
pub fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (&i, &d)| acc * d + i)
}

/// Asserts two buffers agree element by element within `tol`, naming the first mismatch.
#[track_caller]
pub fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: element {i} is {g}, expected {w}"
        );
    }
}
