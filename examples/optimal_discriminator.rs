//! The optimal discriminator D* = p_data / (p_data + p_g), found by training.
//!
//! Run with `cargo run --release --example optimal-discriminator [-- --out DIR]`. Writes
//! `optimal_discriminator.svg` into DIR (default `out/examples`, or `$GAN_SUITE_EXAMPLES_OUT`).

use gan_suite::example_util::{out_dir_from_args, write_figure};
use gan_suite::teach::optimal_discriminator::{plot_svg, run, Config};

fn main() -> anyhow::Result<()> {
    let out = out_dir_from_args(std::env::args().skip(1))?;
    let report = run(&Config::default());
    println!("{report}");

    let path = write_figure(&out, "optimal_discriminator.svg", &plot_svg(&report)?)?;
    println!("figure: {}", path.display());
    anyhow::ensure!(report.verified(), "a check failed (see FAIL above)");
    println!("verified: trained D matches p_data / (p_data + p_g), and V(D) matches 2·JS − 2 ln 2");
    Ok(())
}
