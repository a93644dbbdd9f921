//! A small tensor engine with reverse-mode automatic differentiation.
//!
//! (The tape is explained in the section below.)
#![warn(missing_docs)]

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
pub use ops::sum_to_shape;
pub use storage::{Device, Storage};
pub use tape::{is_grad_enabled, no_grad, no_grad_guard, GradFn, NoGradGuard};
pub use tensor::Tensor;
