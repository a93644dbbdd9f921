//! Forward KL spreads over both modes; reverse KL locks onto one.
//!
//! Run with `cargo run --release --example kl-asymmetry [-- --out DIR]`. Writes
//! `kl_asymmetry.svg` into DIR (default `out/examples`, or `$GAN_SUITE_EXAMPLES_OUT`).

use gan_suite::example_util::{out_dir_from_args, write_figure};
use gan_suite::teach::kl_asymmetry::{plot_svg, run, Config};

fn main() -> anyhow::Result<()> {
    let out = out_dir_from_args(std::env::args().skip(1))?;
    let report = run(&Config::default());
    println!("{report}");

    let path = write_figure(&out, "kl_asymmetry.svg", &plot_svg(&report)?)?;
    println!("figure: {}", path.display());
    anyhow::ensure!(report.verified(), "a check failed (see FAIL above)");
    println!("verified: forward KL covers both modes, reverse KL locks onto one");
    Ok(())
}
