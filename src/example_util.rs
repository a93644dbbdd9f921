//! Helpers shared by the teaching examples: where their figures go, the numerics several of
//! them use (Gaussian densities, quadrature), and a plotting error type.
//!
//! # Environment
//! - `GAN_SUITE_EXAMPLES_OUT`: output directory for figures when no `--out DIR` is given
//!   (default `out/examples`).

use std::fmt;
use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// The environment variable that overrides the examples' output directory.
pub const OUT_DIR_ENV: &str = "GAN_SUITE_EXAMPLES_OUT";

/// Where figures go when neither `--out` nor [`OUT_DIR_ENV`] is given.
pub const DEFAULT_OUT_DIR: &str = "out/examples";

/// A command-line mistake, with the argument it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsageError {
    /// `--out` was the last argument.
    MissingValue(String),
    /// An argument the examples do not know.
    Unknown(String),
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::MissingValue(flag) => write!(f, "{flag} needs a directory after it"),
            UsageError::Unknown(arg) => {
                write!(f, "unknown argument `{arg}`; expected `--out DIR`")
            }
        }
    }
}

impl std::error::Error for UsageError {}

/// The output directory: `--out DIR` or `--out=DIR` among `args` (program name excluded),
/// else the value of [`OUT_DIR_ENV`], else [`DEFAULT_OUT_DIR`].
pub fn out_dir_from_args(args: impl IntoIterator<Item = String>) -> Result<PathBuf, UsageError> {
    let mut args = args.into_iter();
    let mut out = None;
    while let Some(arg) = args.next() {
        if let Some(dir) = arg.strip_prefix("--out=") {
            out = Some(PathBuf::from(dir));
        } else if arg == "--out" {
            let dir = args.next().ok_or(UsageError::MissingValue(arg))?;
            out = Some(PathBuf::from(dir));
        } else {
            return Err(UsageError::Unknown(arg));
        }
    }
    let from_env = || std::env::var_os(OUT_DIR_ENV).map(PathBuf::from);
    Ok(out
        .or_else(from_env)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_OUT_DIR)))
}

/// Writes `contents` to `dir/name`, creating `dir` and its parents first. Returns the path.
pub fn write_figure(dir: &Path, name: &str, contents: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    std::fs::write(&path, contents)?;
    Ok(path)
}

/// A failure while drawing a figure, with plotters' message.
#[derive(Clone, Debug)]
pub struct PlotError(pub String);

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "drawing the figure failed: {}", self.0)
    }
}

impl std::error::Error for PlotError {}

/// Wraps any displayable plotters error.
pub(crate) fn plot_err(e: impl fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

/// A chart with `f64` axes drawn into an SVG string.
pub(crate) type Chart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws one curve through `points`, solid or dashed, with a legend entry when `label` is
/// not empty.
pub(crate) fn draw_curve(
    chart: &mut Chart<'_, '_>,
    points: Vec<(f64, f64)>,
    style: ShapeStyle,
    dashed: bool,
    label: &str,
) -> Result<(), PlotError> {
    let series = if dashed {
        chart.draw_series(DashedLineSeries::new(points, 6, 5, style))
    } else {
        chart.draw_series(LineSeries::new(points, style))
    };
    let series = series.map_err(plot_err)?;
    if !label.is_empty() {
        series
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], style));
    }
    Ok(())
}

/// Draws the legend of `chart`'s labelled curves in a framed, lightly shaded box.
pub(crate) fn draw_legend<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    position: SeriesLabelPosition,
) -> Result<(), PlotError> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(plot_err)
}

/// ln N(x; μ, σ²) = −½((x − μ)/σ)² − ln σ − ½ ln 2π.
pub fn normal_log_pdf(x: f64, mean: f64, std: f64) -> f64 {
    let z = (x - mean) / std;
    -0.5 * z * z - std.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
}

/// N(x; μ, σ²).
pub fn normal_pdf(x: f64, mean: f64, std: f64) -> f64 {
    normal_log_pdf(x, mean, std).exp()
}

/// ln(eᵃ + eᵇ) without overflow: the larger term is factored out.
pub fn log_add_exp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// σ(x) = 1 / (1 + e⁻ˣ), without overflow for large |x|.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `n` equally spaced points from `lo` to `hi` inclusive, with trapezoid-rule weights, so
/// that ∫ f ≈ Σᵢ wᵢ f(xᵢ). For smooth integrands that vanish at both ends (Gaussian tails)
/// the trapezoid rule is accurate far beyond its textbook O(h²).
///
/// # Panics
/// When `n < 2` or `hi <= lo`.
#[track_caller]
pub fn trapezoid_grid(lo: f64, hi: f64, n: usize) -> (Vec<f64>, Vec<f64>) {
    assert!(
        n >= 2 && hi > lo,
        "trapezoid_grid: need n ≥ 2 and lo < hi, got n = {n} on [{lo}, {hi}]"
    );
    let h = (hi - lo) / (n - 1) as f64;
    let xs = (0..n).map(|i| lo + h * i as f64).collect();
    let ws = (0..n)
        .map(|i| if i == 0 || i == n - 1 { 0.5 * h } else { h })
        .collect();
    (xs, ws)
}

/// `n` equally spaced points from `lo` to `hi` inclusive (for plots and error grids).
pub fn linspace(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    trapezoid_grid(lo, hi, n.max(2)).0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn out_flag_forms() {
        let a = out_dir_from_args(args(&["--out", "x/y"])).unwrap();
        assert_eq!(a, PathBuf::from("x/y"));
        let b = out_dir_from_args(args(&["--out=z"])).unwrap();
        assert_eq!(b, PathBuf::from("z"));
        let e = out_dir_from_args(args(&["--out"])).unwrap_err();
        assert_eq!(e, UsageError::MissingValue("--out".into()));
        let u = out_dir_from_args(args(&["-o"])).unwrap_err();
        assert_eq!(u, UsageError::Unknown("-o".into()));
    }

    #[test]
    fn trapezoid_integrates_a_gaussian() {
        let (xs, ws) = trapezoid_grid(-10.0, 10.0, 401);
        let total: f64 = xs
            .iter()
            .zip(&ws)
            .map(|(x, w)| w * normal_pdf(*x, 0.3, 1.2))
            .sum();
        assert!((total - 1.0).abs() < 1e-12, "∫N = {total}");
    }
}
