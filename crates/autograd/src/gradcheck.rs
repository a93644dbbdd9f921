//! Checks an op's backward against finite differences.
//!
//! For a function y = f(x₁, …, xₖ) and a random upstream gradient v (fixed seed, never all
//! ones, so that every output element weighs differently), the analytic vector-Jacobian
//! product vᵀ·∂y/∂xᵢ from `backward` must match the central difference
//!
//! ```text
//! [ s(x + ε·eⱼ) − s(x − ε·eⱼ) ] / 2ε,   where s(x) = Σ v ⊙ f(x),
//! ```
//!
//! element by element: |analytic − numeric| ≤ atol + rtol·|numeric|. The defaults
//! (ε = 1e-6, atol = 1e-5, rtol = 1e-3) assume f64; in f32 the differences drown in rounding,
//! which is why the checker only takes `Tensor<f64>`.
//!
//! # Example: checking an op of your own
//!
//! ```
//! use autograd::{gradcheck::gradcheck, Tensor};
//!
//! // softplus(x) = ln(1 + eˣ), built from engine ops
//! let x = Tensor::<f64>::from_vec(vec![-1.5, 0.2, 3.0], &[3]).requires_grad_(true);
//! let report = gradcheck("softplus", &[x], |t| t[0].exp().add_scalar(1.0).log())
//!     .expect("gradient matches");
//! assert_eq!(report.checked, 3);
//! ```

use std::fmt;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::shape::{fmt_shape, strides};
use crate::tape::no_grad;
use crate::tensor::Tensor;

/// Step and tolerances of [`gradcheck_with`].
#[derive(Clone, Copy, Debug)]
pub struct GradcheckOptions {
    /// Finite-difference step ε.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance, times |numeric|.
    pub rtol: f64,
    /// Seed of the random upstream gradient.
    pub seed: u64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            eps: 1e-6,
            atol: 1e-5,
            rtol: 1e-3,
            seed: 0,
        }
    }
}

/// What a passing check looked at.
#[derive(Clone, Debug)]
pub struct GradcheckReport {
    /// Number of input elements compared.
    pub checked: usize,
    /// The largest |analytic − numeric| seen.
    pub max_abs_error: f64,
}

/// Where and how a check failed.
#[derive(Clone, Debug)]
pub struct GradcheckError {
    /// The name given to the check.
    pub op: String,
    /// Which input (position in the slice).
    pub input: usize,
    /// The input's shape.
    pub shape: Vec<usize>,
    /// The element, as a multi-index into the input.
    pub index: Vec<usize>,
    /// The gradient from backward.
    pub analytic: f64,
    /// The finite-difference estimate.
    pub numeric: f64,
    /// The tolerance that was exceeded at this element.
    pub tolerance: f64,
    /// The largest |analytic − numeric| over the whole check.
    pub worst_error: f64,
    /// Failing elements in total.
    pub failures: usize,
}

impl fmt::Display for GradcheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gradcheck failed for {}: input {} ({}) at {:?}: analytic {:.9e} vs numeric \
             {:.9e}, |diff| {:.3e} > tolerance {:.3e}; {} failing element(s), worst |diff| {:.3e}",
            self.op,
            self.input,
            fmt_shape(&self.shape),
            self.index,
            self.analytic,
            self.numeric,
            (self.analytic - self.numeric).abs(),
            self.tolerance,
            self.failures,
            self.worst_error
        )
    }
}

impl std::error::Error for GradcheckError {}

/// [`gradcheck_with`] at the default step and tolerances.
pub fn gradcheck(
    op: &str,
    inputs: &[Tensor<f64>],
    f: impl Fn(&[Tensor<f64>]) -> Tensor<f64>,
) -> Result<GradcheckReport, GradcheckError> {
    gradcheck_with(op, inputs, f, GradcheckOptions::default())
}

/// Compares backward with central differences for every element of every input that
/// requires a gradient. Inputs that do not (targets, constants) are held fixed.
///
/// It also checks that a zero upstream gradient gives zero gradients. The inputs'
/// gradients are cleared before and after the check, so it leaves nothing behind.
///
/// # Panics
/// When no input requires a gradient, or `f` gives an output that does not depend on them.
pub fn gradcheck_with(
    op: &str,
    inputs: &[Tensor<f64>],
    f: impl Fn(&[Tensor<f64>]) -> Tensor<f64>,
    opts: GradcheckOptions,
) -> Result<GradcheckReport, GradcheckError> {
    assert!(
        inputs.iter().any(|t| t.requires_grad()),
        "gradcheck {op}: no input requires a gradient"
    );

    // Analytic: one backward pass with a random upstream gradient v.
    inputs.iter().for_each(|t| t.zero_grad());
    let y = f(inputs);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let v = Tensor::<f64>::rand_uniform(y.shape(), -1.0, 1.0, &mut rng).to_vec();
    y.backward_with(&v);
    let analytic: Vec<Vec<f64>> = inputs
        .iter()
        .map(|t| t.grad_ref().clone().unwrap_or_else(|| vec![0.0; t.numel()]))
        .collect();

    check_zero_upstream(op, inputs, &f);

    // Numeric: perturb one element at a time, with recording off.
    let weighted = |ins: &[Tensor<f64>]| -> f64 {
        let y = no_grad(|| f(ins));
        let s = y.data().iter().zip(&v).map(|(a, b)| a * b).sum();
        s
    };
    let mut report = GradcheckReport {
        checked: 0,
        max_abs_error: 0.0,
    };
    let mut first: Option<GradcheckError> = None;
    let mut failures = 0;
    for (i, x) in inputs.iter().enumerate().filter(|(_, t)| t.requires_grad()) {
        for j in 0..x.numel() {
            let orig = x.data()[j];
            x.data_mut()[j] = orig + opts.eps;
            let plus = weighted(inputs);
            x.data_mut()[j] = orig - opts.eps;
            let minus = weighted(inputs);
            x.data_mut()[j] = orig;

            let numeric = (plus - minus) / (2.0 * opts.eps);
            let a = analytic[i][j];
            let err = (a - numeric).abs();
            let tol = opts.atol + opts.rtol * numeric.abs();
            report.checked += 1;
            report.max_abs_error = report.max_abs_error.max(err);
            if err > tol || !err.is_finite() {
                failures += 1;
                first.get_or_insert(GradcheckError {
                    op: op.to_string(),
                    input: i,
                    shape: x.shape().to_vec(),
                    index: unravel(j, x.shape()),
                    analytic: a,
                    numeric,
                    tolerance: tol,
                    worst_error: 0.0,
                    failures: 0,
                });
            }
        }
    }
    inputs.iter().for_each(|t| t.zero_grad());
    match first {
        None => Ok(report),
        Some(mut e) => {
            e.worst_error = report.max_abs_error;
            e.failures = failures;
            Err(e)
        }
    }
}

/// A zero upstream gradient must give exactly zero gradients: catches rules that add a
/// constant or ignore `grad_out`.
fn check_zero_upstream(
    op: &str,
    inputs: &[Tensor<f64>],
    f: &impl Fn(&[Tensor<f64>]) -> Tensor<f64>,
) {
    let saved: Vec<_> = inputs.iter().map(|t| t.grad_ref().clone()).collect();
    inputs.iter().for_each(|t| t.zero_grad());
    let y = f(inputs);
    y.backward_with(&vec![0.0; y.numel()]);
    for (i, t) in inputs.iter().enumerate() {
        if let Some(g) = t.grad_ref().as_ref() {
            if let Some(j) = g.iter().position(|&v| v != 0.0) {
                panic!(
                    "gradcheck {op}: zero upstream gradient gave {} at input {i} {:?}",
                    g[j],
                    unravel(j, t.shape())
                );
            }
        }
    }
    for (t, g) in inputs.iter().zip(saved) {
        t.zero_grad();
        if let Some(g) = g {
            t.accumulate_grad_vec(g);
        }
    }
}

/// Flat row-major index → multi-index.
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    strides(shape)
        .iter()
        .map(|&s| {
            let i = flat / s.max(1);
            flat %= s.max(1);
            i
        })
        .collect()
}
