//! A small tensor engine with reverse-mode automatic differentiation.
//!
//! (The tape is explained in the section below.)
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

pub use element::Float;
pub use gradcheck::{gradcheck, gradcheck_with, GradcheckError, GradcheckOptions};
pub use kernels::im2col::Conv2dGeometry;
pub use ops::sum_to_shape;
pub use ops::BCE_EPS;
pub use storage::{Device, Storage};
pub use tape::{is_grad_enabled, no_grad, no_grad_guard, GradFn, NoGradGuard};
pub use tensor::Tensor;
