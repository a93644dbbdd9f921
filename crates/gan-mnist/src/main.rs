//! `gan-mnist`: train a GAN or a DCGAN on MNIST and draw digits from it.
//!
//! `cargo run --release -p gan-mnist -- --help` lists the options. Environment:
//! `GAN_MNIST_DATA` names the MNIST directory when `--data-dir` is not given,
//! `RAYON_NUM_THREADS` the thread count when `--threads` is not, and `AUTOGRAD_PIN_THREADS=0`
//! lets the worker threads move between CPUs.

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
    let command = Cli::parse().into_command();
    let threads = match &command {
        Command::Train(args) => args.threads,
        Command::Sample(args) => args.threads,
    };
    let result = in_pool(threads, move || match command {
        Command::Train(args) => run::train(args),
        Command::Sample(args) => sample::sample(args).map(|()| ExitCode::SUCCESS),
    });
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

/// Runs `work` on one of the workers of a pool of `threads` threads (rayon's choice when
/// `None`: `RAYON_NUM_THREADS`, else one per CPU).
///
/// The command runs on a worker, not on the main thread, so that the kernels' parallel
/// loops start on a thread of their own pool: called from outside, every loop would be
/// handed over to the pool and waited for, a wake-up and a sleep per op (a third of the
/// time of an iteration at one thread), and the buffers that ops free on one thread would
/// not be the ones the next op takes on another. Workers keep to a CPU each (see
/// `autograd::threads`; `AUTOGRAD_PIN_THREADS=0` lets them move), and while the command
/// runs, the other workers wait for its parallel loops spinning rather than asleep
/// (`autograd::threads::keep_warm`): waking one costs about as much as a W1 product.
fn in_pool<R: Send>(threads: Option<u64>, work: impl FnOnce() -> Result<R> + Send) -> Result<R> {
    let n = match threads {
        Some(n) => usize::try_from(n).context("--threads is too large")?,
        None => 0,
    };
    autograd::threads::pool_builder(n)
        // As much stack as the main thread would have had.
        .stack_size(8 << 20)
        .build()
        .context("cannot start the thread pool")?
        .install(|| autograd::threads::keep_warm(work))
}
