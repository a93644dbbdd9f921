//! `gan-mnist`: train a GAN or a DCGAN on MNIST and draw digits from it.
//!
//! `cargo run --release -p gan-mnist -- --help` lists the options. Environment:
//! `GAN_MNIST_DATA` names the MNIST directory when `--data-dir` is not given, and
//! `RAYON_NUM_THREADS` the thread count when `--threads` is not.

mod cli;
mod config;
mod run;
mod sample;
mod summary;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let result = match Cli::parse().into_command() {
        Command::Train(args) => run::train(args),
        Command::Sample(args) => sample::sample(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by `: `, leaving out a cause whose text the message
/// before it already ends with (some library errors print their source themselves).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if out.ends_with(&cause) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&cause);
    }
    out
}

/// Sizes rayon's global pool when `--threads` is given; returns the threads in use.
fn init_threads(threads: Option<u64>) -> Result<usize> {
    if let Some(n) = threads {
        let n = usize::try_from(n).context("--threads is too large")?;
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("cannot start the thread pool")?;
    }
    Ok(rayon::current_num_threads())
}
