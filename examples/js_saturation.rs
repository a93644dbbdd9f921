//! D's Jensen–Shannon estimate on MNIST for the MLP and the DCGAN generator, each against the
//! DCGAN discriminator, with sample grids at the same iterations.
//!
//! Run with `cargo run --release --example js-saturation [-- --iters N] [-- --out DIR]`.
//! Reads MNIST from `data/mnist` (or `$GAN_MNIST_DATA`). Writes `js_saturation.svg` and
//! the grids `js_saturation_mlp.png` and `js_saturation_dcgan.png` (one row per grid point,
//! top to bottom) into DIR (default `out/examples`, or `$GAN_SUITE_EXAMPLES_OUT`).

use anyhow::Context;
use gan::images::grid_png;
use gan::mnist::{default_data_dir, Mnist, MNIST_SIDE};
use gan_suite::example_util::{out_dir_from_args, write_figure};
use gan_suite::teach::js_saturation::{plot_svg, run, Config};

/// Takes `--iters N` (or `--iters=N`) out of `args`; returns its value and the rest.
fn take_iters(args: Vec<String>) -> anyhow::Result<(Option<u64>, Vec<String>)> {
    let mut rest = Vec::new();
    let mut iters = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let value = match arg.strip_prefix("--iters=") {
            Some(v) => v.to_string(),
            None if arg == "--iters" => it.next().context("--iters needs a number after it")?,
            None => {
                rest.push(arg);
                continue;
            }
        };
        let n = value
            .parse()
            .with_context(|| format!("--iters: `{value}` is not a whole number"))?;
        anyhow::ensure!(n > 0, "--iters must be at least 1");
        iters = Some(n);
    }
    Ok((iters, rest))
}

fn main() -> anyhow::Result<()> {
    let (iters, rest) = take_iters(std::env::args().skip(1).collect())?;
    let out = out_dir_from_args(rest)?;
    let mut config = Config::default();
    config.iters = iters.unwrap_or(config.iters);

    let dir = default_data_dir();
    let mnist = Mnist::load_train(&dir).with_context(|| format!("loading {}", dir.display()))?;
    let report = run(&config, &mnist)?;
    println!("{report}");

    let path = write_figure(&out, "js_saturation.svg", &plot_svg(&report)?)?;
    println!("figure: {}", path.display());
    for t in &report.traces {
        let path = out.join(format!("js_saturation_{}.png", t.kind.name()));
        let images = t.stacked_grids();
        let n = images.len() / (MNIST_SIDE * MNIST_SIDE);
        let (side, cols) = (MNIST_SIDE, config.grid_samples);
        grid_png(&path, &images, n, side, side, cols, 2)?;
        let rows: Vec<String> = t.grids.iter().map(|(i, _)| i.to_string()).collect();
        println!(
            "samples: {} (rows at iterations {})",
            path.display(),
            rows.join(", ")
        );
    }
    anyhow::ensure!(report.verified(), "a check failed (see FAIL above)");
    println!("verified: every recorded number is finite and every JS estimate is ln 2 − D loss");
    Ok(())
}
