//! Workspace-level tests, benchmarks and examples live beside this crate.
pub mod perf;
