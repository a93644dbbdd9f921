//! The teaching examples' computations, one module per example.
//!
//! Each module has a `run` function that returns a report: the numbers the example prints,
//! the checks it made, and the data for its figure. `plot_svg` turns a report into an SVG
//! document as a string; the example binary decides where to write it.

pub mod backprop;
pub mod js_saturation;
pub mod kl_asymmetry;
pub mod mode_collapse;
pub mod optimal_discriminator;
