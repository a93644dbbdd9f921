//! Workspace-level tests, benchmarks and teaching examples live beside this crate.
//!
//! The teaching examples in `examples/` are thin binaries: the computation of each one lives
//! in [`teach`] so that `tests/examples_fast.rs` can run it too, and the binaries only parse
//! arguments, print the returned report and write the figure. Nothing here prints.
#![warn(missing_docs)]

pub mod example_util;
pub mod perf;
pub mod teach;
