//! Training a generative adversarial network on MNIST: data loading, image and history
//! output, the models and the training loop.
//!
//! The I/O modules do not depend on the tensor engine:
//!
//! - [`mnist`] reads the IDX files (gzipped or plain) and writes them back;
//! - [`images`] turns generated samples into PNG grids and an animated GIF;
//! - [`history`] keeps per-iteration losses as CSV and plots them as SVG;
//! - [`atomic`] writes files through a temporary name and a rename.
//!
//! On the engine and the layers:
//!
//! - [`models`] builds the `mlp` and `dcgan` generators and discriminators;
//! - [`train`] runs the adversarial loop over any [`train::Gan`] and data source, and
//!   saves and restores its whole state;
//! - [`samples`] writes generated images as an IDX file or a PNG grid;
//! - [`remedies`] holds layers a discriminator can add against mode collapse.
#![warn(missing_docs)]
#![allow(clippy::needless_range_loop)]

pub mod atomic;
pub mod history;
pub mod images;
pub mod mnist;
pub mod models;
pub mod remedies;
pub mod samples;
pub mod train;
