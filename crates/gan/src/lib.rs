//! Training a generative adversarial network on MNIST: data loading, image and history
//! output, and (in later modules) the models and the training loop.
//!
//! The I/O modules do not depend on the tensor engine:
//!
//! - [`mnist`] reads the IDX files (gzipped or plain) and writes them back;
//! - [`images`] turns generated samples into PNG grids and an animated GIF;
//! - [`history`] keeps per-iteration losses as CSV and plots them as SVG;
//! - [`atomic`] writes files through a temporary name and a rename.
#![warn(missing_docs)]
#![allow(clippy::needless_range_loop)]

pub mod atomic;
pub mod history;
pub mod images;
pub mod mnist;
