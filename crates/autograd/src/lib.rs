//! A small tensor engine with reverse-mode automatic differentiation.
//!
//! A [`Tensor`] is a row-major array of any rank holding `f32` or `f64`. Every op computes
//! its result straight away (there is no lazy graph to compile) and, when a gradient will be
//! wanted, also leaves a note on how to send gradients back through it. [`Tensor::backward`]
//! on a scalar loss L reads those notes in reverse and gives every tensor that asked for one
//! its gradient ∂L/∂t. The sections below explain how, in the order a learner needs them.
//!
//! # What the tape records
//!
//! A tensor asks for a gradient with [`Tensor::requires_grad_`]; such tensors are the
//! *leaves* of the graph (parameters, or inputs whose gradient you want). When an op reads at
//! least one tensor that requires a gradient, its output requires one too and remembers a
//! [`GradFn`] with three things:
//!
//! - the op's name, for messages;
//! - the input tensors (cheap shared handles, so their values stay available);
//! - the backward rule: given g = ∂L/∂output, add ∂L/∂input into each input.
//!
//! For y = a·b elementwise the rule is ∂L/∂a += g·b and ∂L/∂b += g·a. The rule is the
//! vector-Jacobian product of the op, written out by hand next to the forward code in
//! `src/ops/`. There is no global list: the "tape" is the graph formed by outputs pointing at
//! the inputs they were computed from.
//!
//! # Why the order is reversed
//!
//! By the chain rule, a tensor t that feeds several consumers c₁, c₂, … has
//!
//! ```text
//! ∂L/∂t = Σᵢ (∂L/∂cᵢ) · (∂cᵢ/∂t)
//! ```
//!
//! so t's gradient is complete only when *every* consumer has passed back its share. Only
//! then may t run its own rule and pass the gradient further down. A topological order of
//! the graph puts each tensor after the tensors it was computed from; read backwards, it
//! visits every consumer before anything it consumed. So `backward` sorts the graph under
//! the loss by a depth-first walk, seeds ∂L/∂L = 1, and runs the rules in reverse order.
//!
//! # How accumulation works
//!
//! Rules always *add* into an input's gradient, never overwrite it. A tensor used twice
//! therefore receives the sum of the two contributions, which is exactly the Σ above.
//! Broadcasting is the same idea inside one op: a bias of shape (C) added to an (N, C) batch
//! is used N times, so its gradient is the upstream gradient summed over the N rows.
//!
//! Leaves keep adding across calls to `backward` too; that is why optimizers call
//! [`Tensor::zero_grad`] between steps. Intermediate tensors drop their gradient once they
//! have passed it on, unless asked to keep it with [`Tensor::retain_grad`].
//!
//! # A worked example
//!
//! Take x = 2, y = 3 and z = x·y + x. The forward pass records two ops:
//!
//! ```text
//! a = x·y = 6      mul remembers (x, y)
//! z = a + x = 8    add remembers (a, x)
//! ```
//!
//! A topological order is x, y, a, z, so backward visits z, then a (x and y are leaves and
//! have no rule). Writing t̄ for ∂z/∂t:
//!
//! ```text
//! seed         z̄ = 1
//! visit z:     z = a + x   ā += z̄·1 = 1         x̄ += z̄·1 = 1
//! visit a:     a = x·y     x̄ += ā·y = 3 → 4     ȳ += ā·x = 2
//! ```
//!
//! x̄ = 4 is y + 1, the derivative of x·y + x by hand: x was used twice, and its two
//! contributions (3 through the product, 1 directly) were added. Had x passed on its
//! gradient before a was visited, anything computed from x would have received 1 instead
//! of 4; the reverse order is what rules that out.
//!
//! ```
//! use autograd::Tensor;
//!
//! let x = Tensor::<f64>::scalar(2.0).requires_grad_(true);
//! let y = Tensor::<f64>::scalar(3.0).requires_grad_(true);
//! let a = x.mul(&y);
//! let z = a.add(&x);
//! assert_eq!(z.item(), 8.0);
//!
//! z.backward();
//! assert_eq!(x.grad().unwrap().item(), 4.0); // y + 1
//! assert_eq!(y.grad().unwrap().item(), 2.0); // x
//! assert!(a.grad().is_none()); // an intermediate: freed once passed on
//! ```
//!
//! # When the graph is released
//!
//! Tensors are reference-counted handles, and a graph lives as long as something holds its
//! output. `backward` takes each rule out of its node as it runs it, which drops that node's
//! handles to its inputs: after `backward` the whole graph, with every activation it kept
//! alive, is gone, even if you still hold the loss. A graph that is never run backward is
//! freed when its last handle is dropped. A training loop therefore builds a fresh graph
//! every step, and memory stays flat over any number of steps. (It also means `backward`
//! runs once per graph; a second call finds no rules left.) [`Tensor::handle_count`] shows
//! how many handles share a tensor, which is how the tests check this.
//!
//! # Recording nothing: `no_grad` and `detach`
//!
//! - [`no_grad`] (or the guard from [`no_grad_guard`]) turns recording off on this thread:
//!   ops still compute, but their results carry no history and need no gradient. Use it for
//!   inference, evaluation and optimizer updates.
//! - [`Tensor::detach`] copies the values into a new tensor with no history. The copy is a
//!   constant, so gradients stop there: a GAN trains its discriminator on detached fakes so
//!   that the discriminator's loss does not reach the generator.
//! - [`Tensor::set_requires_grad`]`(false)` freezes a parameter: it receives no gradient,
//!   while gradients still flow to the other inputs of the ops that read it.
//!
//! # f32 and f64
//!
//! Every op is written once, generic over [`Float`]. Training runs in `f32`: half the memory
//! and twice the SIMD width of `f64`. Gradient checks run in `f64`, because a central
//! difference with step ε = 1e-6 loses about |f|·u/ε of accuracy to rounding, where u is the
//! unit roundoff: 1e-10 in `f64`, but about 0.1 in `f32`, as large as many derivatives.
//! [`Tensor::cast`] converts between the two; the tests check that a small network gives
//! the same loss and gradients in both, within `f32` precision.
//!
//! # Checking an op of your own
//!
//! The public [`gradcheck()`] compares an op's backward rule with central finite
//! differences, element by element, in `f64`. It passes where
//! |analytic − numeric| ≤ atol + rtol·|numeric|, with PyTorch's defaults eps = 1e-6,
//! atol = 1e-5, rtol = 1e-3 ([`GradcheckOptions`] changes them). The upstream gradient is
//! random rather than all ones, so that a rule mixing up output elements cannot hide; and a
//! zero upstream gradient must give exactly zero. A failure ([`GradcheckError`]) names the
//! op, the input, the element's index, both values and the worst error.
//!
//! To add an op, compute the forward values, wrap the backward rule in a [`GradFn`], and let
//! [`Tensor::from_op`] record it; then check it:
//!
//! ```
//! use autograd::{gradcheck, GradFn, Tensor};
//!
//! /// y = x³, so ∂L/∂x = g · 3x².
//! fn cube(x: &Tensor<f64>) -> Tensor<f64> {
//!     let y = x.data().iter().map(|v| v * v * v).collect();
//!     let rule = GradFn::new("cube", vec![x.clone()], |inputs, _y, grad_out| {
//!         let x = inputs[0].data();
//!         let grad_input = x.iter().zip(grad_out).map(|(v, g)| g * 3.0 * v * v).collect();
//!         inputs[0].accumulate_grad_vec(grad_input);
//!     });
//!     Tensor::from_op(x.shape().to_vec(), y, rule)
//! }
//!
//! let x = Tensor::<f64>::from_vec(vec![-1.0, 0.5, 2.0], &[3]).requires_grad_(true);
//! gradcheck("cube", &[x], |t| cube(&t[0])).expect("backward matches finite differences");
//! ```
//!
//! Had the rule said `2.0 * v * v`, the check would fail with
//!
//! ```text
//! gradcheck failed for cube: input 0 (3) at [0]: analytic 8.363016617e-1 vs numeric
//! 1.254452493e0, |diff| 4.182e-1 > tolerance 1.264e-3; 3 failing element(s), worst |diff| 1.593e0
//! ```
//!
//! (one line in reality): the analytic value is two thirds of the numeric one, the ratio of
//! the wrong factor to the right one.
//!
//! # Devices and storage
//!
//! A tensor's numbers live in a [`Storage`], an enum with one variant per [`Device`]; today
//! there is one, [`Device::Cpu`], holding a plain `Vec`. The code is split in two layers:
//!
//! - the ops (`src/ops/`): shapes, broadcasting, recording, and the backward rules;
//! - the [`kernels`]: loops over slices, rayon, and the GEMM ([`kernels::gemm`]).
//!
//! A second device would add a `Storage` variant and a kernel module beside [`kernels`]; the
//! ops and their backward rules would stay as they are, and only their kernel calls would
//! dispatch on the variant.
//!
//! Large elementwise ops and reductions run on rayon above [`kernels::PAR_THRESHOLD`]
//! elements, in chunks of fixed size. Partial sums are combined in a fixed order, so results
//! are bit-for-bit the same whatever the number of threads.
#![warn(missing_docs)]
// Numeric kernels index several buffers with one counter; iterator chains would hide that.
#![allow(clippy::needless_range_loop)]

pub mod element;
pub mod gradcheck;
pub mod kernels;
mod ops;
pub mod shape;
pub mod storage;
pub mod tape;
mod tensor;
pub mod threads;

pub use element::Float;
pub use gradcheck::{gradcheck, gradcheck_with, GradcheckError, GradcheckOptions};
pub use kernels::im2col::Conv2dGeometry;
pub use ops::sum_to_shape;
pub use ops::{FusedActivation, BCE_EPS};
pub use storage::{Device, Storage};
pub use tape::{is_grad_enabled, no_grad, no_grad_guard, GradFn, NoGradGuard};
pub use tensor::Tensor;
