//! Backpropagation on a 2–2–1 network, by hand, by the engine and by finite differences.
//!
//! Run with `cargo run --release --example backprop [-- --out DIR]`. Prints the tables and
//! writes `backprop.svg` (the graph with every value and gradient) into DIR (default
//! `out/examples`, or `$GAN_SUITE_EXAMPLES_OUT`). The computation lives in
//! `gan_suite::teach::backprop`.

use gan_suite::example_util::{out_dir_from_args, write_figure};
use gan_suite::teach::backprop::{plot_svg, run, Net};

fn main() -> anyhow::Result<()> {
    let out = out_dir_from_args(std::env::args().skip(1))?;
    let report = run(Net::default());
    println!("{report}");

    let path = write_figure(&out, "backprop.svg", &plot_svg(&report)?)?;
    println!("figure: {}", path.display());
    anyhow::ensure!(
        report.verified(),
        "hand, engine and finite differences disagree (see the tables above)"
    );
    println!("verified: every value and gradient agrees by hand, in the engine and numerically");
    Ok(())
}
