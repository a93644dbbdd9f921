//! Workspace-level tests, benchmarks and examples live beside this crate.
