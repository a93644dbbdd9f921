//! The discriminator's Jensen–Shannon estimate against sample quality, on MNIST.
//!
//! With the best discriminator D* for the current generator, D's loss
//! L_D = ½[BCE(D(x), 1) + BCE(D(G(z)), 0)] equals ln 2 − JS(p_data ‖ p_g) (Goodfellow et al.
//! 2014; see the `optimal-discriminator` example), so ln 2 − L_D estimates the JS divergence
//! from below. Arjovsky and Bottou (2017) pointed out what that estimate does in practice:
//! it sits near its ceiling ln 2 whenever D separates the two batches easily, and says
//! little about whether the samples are getting better.
//!
//! This example trains two generators, the fully connected one and the DCGAN one, each
//! against a fresh copy of the same DCGAN discriminator, with the same seed and the same
//! schedule, and records ln 2 − L_D at every iteration ([`gan::history::Record::js`]). It
//! keeps the samples that both generators make from the same fixed noise at a few points,
//! so the curve can be read next to the pictures. It checks only that every number is
//! finite and consistent; what the curves do is printed, not asserted.

use std::f64::consts::LN_2;
use std::fmt;
use std::time::Instant;

use gan::history::Record;
use gan::mnist::Mnist;
use gan::models::{dcgan_discriminator, dcgan_generator, mlp_generator, IMAGE_SHAPE};
use gan::train::{DataSource, Gan, GeneratorLoss, MnistBatches, TrainError, TrainOptions, Trainer};
use layers::AdamConfig;
use plotters::prelude::*;
use rand_chacha::ChaCha8Rng;

use crate::example_util::{draw_curve, draw_legend, plot_err, PlotError};

/// Which generator faces the DCGAN discriminator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeneratorKind {
    /// [`mlp_generator`]: dense layers with batch norm, reshaped to an image.
    Mlp,
    /// [`dcgan_generator`]: transposed convolutions with batch norm.
    Dcgan,
}

impl GeneratorKind {
    /// `mlp` or `dcgan`.
    pub fn name(self) -> &'static str {
        match self {
            GeneratorKind::Mlp => "mlp",
            GeneratorKind::Dcgan => "dcgan",
        }
    }

    /// This generator and a DCGAN discriminator, in that order, from `rng`.
    pub fn build(self, noise_dim: usize, rng: &mut ChaCha8Rng) -> Gan {
        match self {
            GeneratorKind::Mlp => {
                let g = mlp_generator(noise_dim, rng);
                Gan::new(g, dcgan_discriminator(rng), &[noise_dim], &IMAGE_SHAPE)
            }
            GeneratorKind::Dcgan => {
                let g = dcgan_generator(noise_dim, rng);
                let noise = [noise_dim, 1, 1];
                Gan::new(g, dcgan_discriminator(rng), &noise, &IMAGE_SHAPE)
            }
        }
    }
}

/// The schedule and the sizes.
#[derive(Clone, Debug)]
pub struct Config {
    /// Values per noise vector.
    pub noise_dim: usize,
    /// The training loop's settings, shared by both runs.
    pub options: TrainOptions,
    /// Iterations per run.
    pub iters: u64,
    /// How many equal stretches the run is cut into for sample grids; grids are taken at
    /// iteration 0 and at the end of each stretch.
    pub stretches: u64,
    /// Samples per grid row (and fixed noise vectors).
    pub grid_samples: usize,
    /// Seed of both runs.
    pub seed: u64,
    /// Records averaged per point of the smoothed curves and of the printed table.
    pub window: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            noise_dim: 100,
            options: TrainOptions {
                batch_size: 32,
                k: 1,
                adam: AdamConfig {
                    lr: 2e-4,
                    beta1: 0.5,
                    ..AdamConfig::default()
                },
                g_loss: GeneratorLoss::NonSaturating,
            },
            iters: 400,
            stretches: 4,
            grid_samples: 12,
            seed: 1,
            window: 25,
        }
    }
}

impl Config {
    /// A shortened run for tests: a few iterations on tiny batches.
    pub fn quick() -> Self {
        let mut c = Config {
            iters: 4,
            stretches: 2,
            grid_samples: 3,
            window: 2,
            ..Config::default()
        };
        c.options.batch_size = 4;
        c
    }

    /// The iterations at which sample grids are taken: 0 and the end of every stretch.
    pub fn grid_points(&self) -> Vec<u64> {
        let n = self.stretches.max(1);
        let mut points: Vec<u64> = (0..=n).map(|i| i * self.iters / n).collect();
        points.dedup();
        points
    }
}

/// One run: every record and the samples at the grid points.
#[derive(Clone, Debug)]
pub struct Trace {
    /// The generator.
    pub kind: GeneratorKind,
    /// One record per iteration.
    pub records: Vec<Record>,
    /// (iteration, `grid_samples` images of 28 × 28 values in [-1, 1]) at each grid point.
    pub grids: Vec<(u64, Vec<f32>)>,
    /// Wall-clock seconds spent training (sampling excluded).
    pub seconds: f64,
}

impl Trace {
    /// Mean JS estimate and D accuracy over the `window` records that end at iteration
    /// `iter` (fewer at the start); `None` before the first record.
    pub fn window_mean(&self, iter: u64, window: usize) -> Option<(f64, f64)> {
        let end = (iter as usize).min(self.records.len());
        let part = &self.records[end.saturating_sub(window.max(1))..end];
        if part.is_empty() {
            return None;
        }
        let n = part.len() as f64;
        let js = part.iter().map(|r| f64::from(r.js)).sum::<f64>() / n;
        let acc = part.iter().map(|r| f64::from(r.d_acc)).sum::<f64>() / n;
        Some((js, acc))
    }

    /// All the sample grids stacked: one row of `grid_samples` images per grid point.
    pub fn stacked_grids(&self) -> Vec<f32> {
        self.grids
            .iter()
            .flat_map(|(_, g)| g.iter().copied())
            .collect()
    }
}

/// What the example prints and plots.
#[derive(Clone, Debug)]
pub struct Report {
    /// The settings used.
    pub config: Config,
    /// The MLP generator's run, then the DCGAN generator's.
    pub traces: Vec<Trace>,
}

/// Trains both generators on `mnist`, one after the other (the engine already uses every
/// core inside each step).
pub fn run(config: &Config, mnist: &Mnist) -> Result<Report, TrainError> {
    let kinds = [GeneratorKind::Mlp, GeneratorKind::Dcgan];
    let traces = kinds
        .iter()
        .map(|&kind| train(config, kind, &mut MnistBatches::new(mnist)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Report {
        config: config.clone(),
        traces,
    })
}

/// One run, with sample grids from the trainer's fixed noise at every grid point.
fn train(
    config: &Config,
    kind: GeneratorKind,
    data: &mut dyn DataSource,
) -> Result<Trace, TrainError> {
    let build = |rng: &mut ChaCha8Rng| kind.build(config.noise_dim, rng);
    let mut trainer = Trainer::from_seed(config.seed, config.options, build);
    let noise = trainer.fixed_noise(config.grid_samples);

    let mut records = Vec::with_capacity(config.iters as usize);
    let mut grids = Vec::new();
    let mut seconds = 0.0;
    for stop in config.grid_points() {
        let start = Instant::now();
        while trainer.iteration() < stop {
            records.push(trainer.step(data)?);
        }
        seconds += start.elapsed().as_secs_f64();
        grids.push((stop, trainer.gan.generate(&noise).to_vec()));
    }
    Ok(Trace {
        kind,
        records,
        grids,
        seconds,
    })
}

impl Report {
    /// The checks, each with its line: every record and sample is finite, each JS
    /// estimate is ln 2 − D loss and so at most ln 2, and the samples lie in [-1, 1].
    /// None of them is about how training went.
    pub fn checks(&self) -> Vec<(bool, String)> {
        let mut c = Vec::new();
        for t in &self.traces {
            let name = t.kind.name();
            let finite = t.records.iter().all(|r| {
                let v = [r.d_loss, r.g_loss, r.d_acc, r.d_real, r.d_fake, r.js];
                v.iter().all(|x| x.is_finite())
            });
            let count = t.records.len() as u64 == self.config.iters;
            c.push(check(
                finite && count,
                format!("{name}: {} records, every value finite", t.records.len()),
            ));
            let ln2 = LN_2 as f32;
            let bounded = t
                .records
                .iter()
                .all(|r| r.js == ln2 - r.d_loss && r.js <= ln2);
            c.push(check(
                bounded,
                format!("{name}: every JS estimate is ln 2 − D loss ≤ ln 2"),
            ));
            let in_range = t.stacked_grids().iter().all(|v| (-1.0..=1.0).contains(v));
            c.push(check(
                in_range,
                format!("{name}: every sample value is in [-1, 1]"),
            ));
        }
        c
    }

    /// True when every check passed.
    pub fn verified(&self) -> bool {
        self.checks().iter().all(|(ok, _)| *ok)
    }
}

fn check(ok: bool, line: String) -> (bool, String) {
    (ok, format!("{} {line}", if ok { "ok  " } else { "FAIL" }))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let o = &c.options;
        writeln!(
            f,
            "MNIST, {} iterations per run, batch {}, Adam lr {} β₁ {}, {} generator loss, seed {}",
            c.iters, o.batch_size, o.adam.lr, o.adam.beta1, o.g_loss, c.seed
        )?;
        writeln!(
            f,
            "both generators face the same DCGAN discriminator architecture (fresh weights)"
        )?;
        for t in &self.traces {
            let per_iter = 1e3 * t.seconds / t.records.len().max(1) as f64;
            writeln!(
                f,
                "{:<6} {:.1} s of training, {per_iter:.0} ms per iteration",
                t.kind.name(),
                t.seconds
            )?;
        }

        writeln!(
            f,
            "\nJS estimate ln 2 − D loss (ln 2 = {LN_2:.3}) and D accuracy, each the mean of the \
             last {} iterations:",
            c.window
        )?;
        write!(f, "{:>6}", "iter")?;
        for t in &self.traces {
            write!(f, "{:>14}{:>8}", format!("{} JS", t.kind.name()), "acc")?;
        }
        writeln!(f)?;
        for iter in c.grid_points().into_iter().filter(|&i| i > 0) {
            write!(f, "{iter:>6}")?;
            for t in &self.traces {
                if let Some((js, acc)) = t.window_mean(iter, c.window) {
                    write!(f, "{js:>14.3}{acc:>8.2}")?;
                }
            }
            writeln!(f)?;
        }
        self.fmt_observations(f)?;

        writeln!(f)?;
        let lines: Vec<String> = self.checks().into_iter().map(|(_, l)| l).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

impl Report {
    /// What the curves did, in numbers: the highest smoothed estimate and where, and the
    /// share of iterations with the estimate within 0.1 of ln 2.
    fn fmt_observations(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        for t in &self.traces {
            let smooth = smoothed(&t.records, self.config.window);
            let peak = smooth
                .iter()
                .copied()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or((0.0, f64::NAN));
            let near = t
                .records
                .iter()
                .filter(|r| f64::from(r.js) > LN_2 - 0.1)
                .count();
            writeln!(
                f,
                "{:<6} highest smoothed estimate {:.3} (at iteration {:.0}); {:.0}% of iterations \
                 within 0.1 of ln 2",
                t.kind.name(),
                peak.1,
                peak.0,
                100.0 * near as f64 / t.records.len().max(1) as f64
            )?;
        }
        Ok(())
    }
}

/// (iteration, mean JS estimate) over trailing windows of `window` records, one point per
/// record once the window is full (and over the records so far before that).
pub fn smoothed(records: &[Record], window: usize) -> Vec<(f64, f64)> {
    let window = window.max(1);
    let mut sum = 0.0;
    let mut out = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        sum += f64::from(r.js);
        if i >= window {
            sum -= f64::from(records[i - window].js);
        }
        let n = (i + 1).min(window) as f64;
        out.push((r.iter as f64, sum / n));
    }
    out
}

/// Both JS curves, raw (faint) and smoothed, with ln 2 and the grid points marked, as an
/// SVG document.
pub fn plot_svg(report: &Report) -> Result<String, PlotError> {
    let c = &report.config;
    let lowest = report
        .traces
        .iter()
        .flat_map(|t| t.records.iter().map(|r| f64::from(r.js)))
        .fold(0.0, f64::min);
    let (x_end, y_lo) = ((c.iters.max(1)) as f64, (lowest - 0.05).max(-1.0));

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "MNIST: D's JS estimate, ln 2 − D loss, against the DCGAN discriminator",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..x_end, y_lo..0.8)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_label_formatter(&|x| format!("{x:.0}"))
            // Adding 0 turns a rounded −0 into 0, so the axis never shows "-0.0".
            .y_label_formatter(&|y| format!("{:.1}", (y * 10.0).round() / 10.0 + 0.0))
            .x_desc("iteration (dotted: sample grids)")
            .y_desc("nats")
            .draw()
            .map_err(plot_err)?;

        let gray = RGBColor(120, 120, 120);
        let ceiling = vec![(0.0, LN_2), (x_end, LN_2)];
        draw_curve(&mut chart, ceiling, gray.stroke_width(1), true, "ln 2")?;
        for it in c.grid_points() {
            let x = it as f64;
            let marker = DashedLineSeries::new([(x, y_lo), (x, 0.8)], 2, 4, gray.into());
            chart.draw_series(marker).map_err(plot_err)?;
        }

        let colors = [RGBColor(230, 120, 20), RGBColor(30, 90, 200)];
        for (t, color) in report.traces.iter().zip(colors) {
            let raw = t.records.iter().map(|r| (r.iter as f64, f64::from(r.js)));
            let faint = color.mix(0.25).stroke_width(1);
            chart
                .draw_series(LineSeries::new(raw, faint))
                .map_err(plot_err)?;
            let label = format!("{} generator (mean of {})", t.kind.name(), c.window);
            let smooth = smoothed(&t.records, c.window);
            draw_curve(&mut chart, smooth, color.stroke_width(2), false, &label)?;
        }

        draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(iter: u64, d_loss: f32) -> Record {
        Record::new(iter, d_loss, 0.0, 0.5, 0.5, 0.5)
    }

    #[test]
    fn grid_points_cut_the_run_into_stretches() {
        let mut c = Config {
            iters: 800,
            ..Config::default()
        };
        assert_eq!(c.grid_points(), vec![0, 200, 400, 600, 800]);
        c.iters = 3;
        c.stretches = 4;
        assert_eq!(c.grid_points(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn smoothing_averages_trailing_windows() {
        // JS values ln 2 − d: with d = 0, 1, 2, 3 and a window of 2 the means are
        // ln 2 − {0, 0.5, 1.5, 2.5}.
        let records: Vec<Record> = (0..4).map(|i| record(i + 1, i as f32)).collect();
        let s = smoothed(&records, 2);
        let want = [0.0, 0.5, 1.5, 2.5];
        for ((x, y), (i, w)) in s.iter().zip(want.iter().enumerate()) {
            assert_eq!(*x, (i + 1) as f64);
            assert!((y - (LN_2 - w)).abs() < 1e-6, "point {i}: {y}");
        }
    }
}
