//! The differentiable ops. Each file holds a family of ops; each op's forward and backward
//! sit together, with the math in its doc comment.

mod arith;
mod batchnorm;
mod conv;
mod fused;
mod loss;
mod matmul;
mod reduce;
mod shape_ops;
mod softmax;
mod unary;

pub use fused::FusedActivation;
pub use loss::BCE_EPS;
pub use reduce::sum_to_shape;
