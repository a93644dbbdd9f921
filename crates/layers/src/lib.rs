//! Neural-network layers, optimizers and checkpoints on the `autograd` engine.
//!
//! A layer is a [`Module`]: it owns named parameters (tensors that require gradients), runs
//! its forward pass with ordinary engine ops so that backward comes for free, and knows
//! whether it is training or evaluating. [`Sequential`] chains layers and names their
//! parameters `0.weight`, `0.bias`, `2.running_mean`, … so that optimizers and checkpoints
//! can address them.
#![warn(missing_docs)]
#![allow(clippy::needless_range_loop)]

pub mod activation;
pub mod batchnorm;
pub mod checkpoint;
pub mod conv;
pub mod dense;
pub mod init;
pub mod module;
pub mod optim;

pub use activation::{Flatten, LeakyRelu, Relu, Reshape, Sigmoid, Tanh};
pub use batchnorm::BatchNorm;
pub use checkpoint::{Checkpoint, CheckpointError};
pub use conv::{Conv2d, ConvTranspose2d};
pub use dense::Dense;
pub use init::Init;
pub use module::{freeze, Module, Scalar, Sequential, SummaryRow};
pub use optim::{Adam, AdamConfig, Optimizer, Sgd};
