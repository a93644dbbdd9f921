//! Mode collapse on the ring of eight Gaussians, and one remedy for it.
//!
//! The data is the 2-D benchmark used throughout the GAN literature (for example Metz et
//! al., *Unrolled GANs*, 2017): eight Gaussians of standard deviation σ = 0.02 with their
//! centres evenly spaced on a circle of radius 2. A generator that finds only some of them
//! can still fool its discriminator batch by batch, so the plain GAN game tends to settle
//! on a few modes, or to hop from one to the next.
//!
//! # Measuring it
//!
//! Each evaluation draws N generated samples from fixed noise. A sample is *high quality*
//! when it lies within 3σ of its nearest centre (a perfect generator puts
//! 1 − e^(−9/2) ≈ 98.9 % of its samples there). A mode is *covered* when at least
//! `min_mode_fraction · N` high-quality samples belong to it (1 %, 20 of 2,000, by
//! default). [`coverage`] does the counting; its exactness is checked on samples built by
//! hand ([`constructed_samples`]).
//!
//! # The remedy
//!
//! The second variant inserts [`gan::remedies::MinibatchStdDev`] before the discriminator's
//! last dense layer: D then also sees how spread out the batch it judges is, which a
//! collapsed generator cannot fake. Both variants are trained with the same seeds; the
//! generators start from identical weights and see the same evaluation noise.

use std::f64::consts::PI;
use std::fmt;

use autograd::Tensor;
use gan::remedies::MinibatchStdDev;
use gan::train::{Gan, GeneratorLoss, TrainError, TrainOptions, Trainer};
use layers::{AdamConfig, Dense, Init, LeakyRelu, Relu, Sequential, Sigmoid};
use plotters::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::example_util::{plot_err, PlotError};

/// `modes` isotropic Gaussians N(cₖ, std²·I), cₖ = radius·(cos 2πk/modes, sin 2πk/modes),
/// mixed with equal weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ring {
    /// Number of modes.
    pub modes: usize,
    /// Radius of the circle the centres lie on.
    pub radius: f64,
    /// Standard deviation of every mode, the same along both axes.
    pub std: f64,
}

impl Default for Ring {
    fn default() -> Self {
        Ring {
            modes: 8,
            radius: 2.0,
            std: 0.02,
        }
    }
}

impl Ring {
    /// The centre of mode k.
    pub fn centre(&self, k: usize) -> [f64; 2] {
        let angle = 2.0 * PI * k as f64 / self.modes as f64;
        [self.radius * angle.cos(), self.radius * angle.sin()]
    }

    /// Every centre, in mode order.
    pub fn centres(&self) -> Vec<[f64; 2]> {
        (0..self.modes).map(|k| self.centre(k)).collect()
    }

    /// `n` samples as an (n, 2) tensor: a uniform mode, then Gaussian noise around it.
    pub fn batch<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Tensor {
        let mut xy = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let c = self.centre(rng.gen_range(0..self.modes));
            for ci in c {
                let z: f64 = StandardNormal.sample(rng);
                xy.push((ci + self.std * z) as f32);
            }
        }
        Tensor::from_vec(xy, &[n, 2])
    }

    /// The high-quality radius, 3σ.
    pub fn quality_radius(&self) -> f64 {
        3.0 * self.std
    }
}

/// How a set of samples covers the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coverage {
    /// High-quality samples nearest each mode.
    pub per_mode: Vec<usize>,
    /// Samples within 3σ of some centre.
    pub high_quality: usize,
    /// Samples counted.
    pub total: usize,
    /// Modes with at least `min_count` high-quality samples.
    pub covered: usize,
    /// The threshold that decided `covered`.
    pub min_count: usize,
}

impl Coverage {
    /// `high_quality / total` (0 when there are no samples).
    pub fn quality_fraction(&self) -> f64 {
        self.high_quality as f64 / self.total.max(1) as f64
    }
}

/// Counts, for `samples` (x, y pairs), the high-quality samples of each mode of `ring` and
/// the modes that have at least `min_count` of them. A sample belongs to its nearest
/// centre, and is high quality when its distance to it is at most 3σ.
pub fn coverage(ring: &Ring, samples: &[[f32; 2]], min_count: usize) -> Coverage {
    let centres = ring.centres();
    let mut per_mode = vec![0; ring.modes];
    for s in samples {
        let (x, y) = (f64::from(s[0]), f64::from(s[1]));
        let dist = |c: &[f64; 2]| (x - c[0]).hypot(y - c[1]);
        let nearest =
            (0..centres.len()).min_by(|&a, &b| dist(&centres[a]).total_cmp(&dist(&centres[b])));
        if let Some(k) = nearest.filter(|&k| dist(&centres[k]) <= ring.quality_radius()) {
            per_mode[k] += 1;
        }
    }
    Coverage {
        high_quality: per_mode.iter().sum(),
        total: samples.len(),
        covered: per_mode.iter().filter(|&&c| c >= min_count).count(),
        per_mode,
        min_count,
    }
}

/// 100 samples placed by hand on the 8-mode `ring`, with the coverage they must give at
/// threshold 20, worked out from how they were placed (not by [`coverage`]):
///
/// - 30 at 2.5σ from centre 0 and 20 exactly on centre 2: high quality, both modes covered
///   (20 meets the threshold);
/// - 19 at 2.9σ from centre 5: high quality, one short of covering it;
/// - 10 at 3.5σ from centre 0, 5 at the origin, 16 on the circle halfway between centres
///   1 and 2: none high quality.
///
/// # Panics
/// When `ring` does not have 8 modes.
#[track_caller]
pub fn constructed_samples(ring: &Ring) -> (Vec<[f32; 2]>, Coverage) {
    assert_eq!(ring.modes, 8, "constructed_samples: built for 8 modes");
    let s = ring.std;
    let at = |k: usize, dx: f64, dy: f64| {
        let c = ring.centre(k);
        [(c[0] + dx) as f32, (c[1] + dy) as f32]
    };
    let halfway = {
        let a = 2.0 * PI * 1.5 / 8.0;
        [
            (ring.radius * a.cos()) as f32,
            (ring.radius * a.sin()) as f32,
        ]
    };
    let groups = [
        (30, at(0, 2.5 * s, 0.0)),
        (20, at(2, 0.0, 0.0)),
        (19, at(5, 0.0, -2.9 * s)),
        (10, at(0, 0.0, 3.5 * s)),
        (5, [0.0, 0.0]),
        (16, halfway),
    ];
    let samples = groups.iter().flat_map(|&(n, p)| vec![p; n]).collect();
    let expected = Coverage {
        per_mode: vec![30, 0, 20, 0, 0, 19, 0, 0],
        high_quality: 69,
        total: 100,
        covered: 2,
        min_count: 20,
    };
    (samples, expected)
}

/// Whether the discriminator carries the remedy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// The plain MLP discriminator.
    Plain,
    /// The same with a [`MinibatchStdDev`] before its last dense layer.
    MinibatchStd,
}

impl Variant {
    /// A short name for tables and legends.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::MinibatchStd => "minibatch-std",
        }
    }
}

/// The data, the networks, the schedule and the measurement.
#[derive(Clone, Debug)]
pub struct Config {
    /// The target distribution.
    pub ring: Ring,
    /// Dimension of the generator's noise.
    pub noise_dim: usize,
    /// Width of both hidden layers of both networks.
    pub hidden: usize,
    /// The training loop's settings.
    pub options: TrainOptions,
    /// Iterations after which the generator is evaluated, increasing; the last ends training.
    pub checkpoints: Vec<u64>,
    /// Generated samples per evaluation (N).
    pub eval_samples: usize,
    /// A mode is covered with at least this fraction of N high-quality samples.
    pub min_mode_fraction: f64,
    /// Training seeds; each trains both variants.
    pub seeds: Vec<u64>,
    /// Real samples measured as a reference, from this seed.
    pub real_seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ring: Ring::default(),
            noise_dim: 2,
            hidden: 128,
            options: TrainOptions {
                batch_size: 128,
                k: 1,
                adam: AdamConfig {
                    lr: 1e-3,
                    beta1: 0.5,
                    ..AdamConfig::default()
                },
                g_loss: GeneratorLoss::NonSaturating,
            },
            checkpoints: vec![500, 1000, 2000, 4000],
            eval_samples: 2000,
            min_mode_fraction: 0.01,
            seeds: vec![1, 2, 3],
            real_seed: 99,
        }
    }
}

impl Config {
    /// A shortened run for tests: small networks, a few iterations, one seed.
    pub fn quick() -> Self {
        let mut c = Config {
            hidden: 16,
            checkpoints: vec![3, 6],
            eval_samples: 200,
            seeds: vec![5],
            ..Config::default()
        };
        c.options.batch_size = 32;
        c
    }

    /// The covered-mode threshold in samples: ⌈min_mode_fraction · N⌉.
    pub fn min_count(&self) -> usize {
        (self.min_mode_fraction * self.eval_samples as f64).ceil() as usize
    }

    /// The two networks for `variant`, generator first, drawn from `rng`.
    pub fn build(&self, variant: Variant, rng: &mut ChaCha8Rng) -> Gan {
        let (h, init) = (self.hidden, Init::GlorotUniform);
        let generator = Sequential::new()
            .with(Dense::new(self.noise_dim, h, init, rng))
            .with(Relu)
            .with(Dense::new(h, h, init, rng))
            .with(Relu)
            .with(Dense::new(h, 2, init, rng));

        let mut discriminator = Sequential::new()
            .with(Dense::new(2, h, init, rng))
            .with(LeakyRelu(0.2))
            .with(Dense::new(h, h, init, rng))
            .with(LeakyRelu(0.2));
        let mut last_in = h;
        if variant == Variant::MinibatchStd {
            discriminator.push(MinibatchStdDev::default());
            last_in += 1;
        }
        discriminator.push(Dense::new(last_in, 1, init, rng));
        discriminator.push(Sigmoid);
        Gan::new(generator, discriminator, &[self.noise_dim], &[2])
    }
}

/// One evaluation of one run.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Iterations trained.
    pub iter: u64,
    /// The generator's coverage of the ring.
    pub coverage: Coverage,
    /// The discriminator loss of the last iteration.
    pub d_loss: f32,
    /// The generator loss of the last iteration.
    pub g_loss: f32,
    /// The generated samples.
    pub samples: Vec<[f32; 2]>,
}

/// One training run: a seed and a variant.
#[derive(Clone, Debug)]
pub struct Run {
    /// The seed of weights and minibatches.
    pub seed: u64,
    /// With or without the remedy.
    pub variant: Variant,
    /// One per checkpoint, in order.
    pub snapshots: Vec<Snapshot>,
}

impl Run {
    /// The last evaluation.
    pub fn last(&self) -> &Snapshot {
        self.snapshots
            .last()
            .expect("a run has at least one checkpoint")
    }
}

/// What the example prints and plots.
#[derive(Clone, Debug)]
pub struct Report {
    /// The settings used.
    pub config: Config,
    /// Every run, seed by seed, plain before minibatch-std.
    pub runs: Vec<Run>,
    /// The coverage of N real samples.
    pub real: Coverage,
    /// [`coverage`] on [`constructed_samples`], and what it should be.
    pub constructed: (Coverage, Coverage),
}

/// Trains both variants for every seed, each run on its own thread, and measures them.
///
/// # Panics
/// When `config.checkpoints` is empty or not increasing.
#[track_caller]
pub fn run(config: &Config) -> Result<Report, TrainError> {
    let steps = &config.checkpoints;
    assert!(
        !steps.is_empty() && steps.windows(2).all(|w| w[0] < w[1]),
        "mode_collapse::run: checkpoints must be increasing, got {steps:?}"
    );
    let jobs: Vec<(u64, Variant)> = config
        .seeds
        .iter()
        .flat_map(|&s| [(s, Variant::Plain), (s, Variant::MinibatchStd)])
        .collect();
    // Each job builds its own networks on its own thread (tensors stay where they were
    // made); only plain numbers come back.
    let runs = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|&(seed, variant)| s.spawn(move || train(config, seed, variant)))
            .collect();
        let joined = handles
            .into_iter()
            .map(|h| h.join().expect("a training thread panicked"));
        joined.collect::<Result<Vec<_>, _>>()
    })?;

    let mut rng = ChaCha8Rng::seed_from_u64(config.real_seed);
    let real = config.ring.batch(config.eval_samples, &mut rng);
    let real = coverage(&config.ring, &pairs(&real), config.min_count());
    let (samples, want) = constructed_samples(&config.ring);
    let got = coverage(&config.ring, &samples, want.min_count);
    Ok(Report {
        config: config.clone(),
        runs,
        real,
        constructed: (got, want),
    })
}

/// One run: trains to each checkpoint and evaluates G on the trainer's fixed noise.
fn train(config: &Config, seed: u64, variant: Variant) -> Result<Run, TrainError> {
    let mut trainer = Trainer::from_seed(seed, config.options, |rng| config.build(variant, rng));
    let ring = config.ring;
    let mut data = |n: usize, rng: &mut ChaCha8Rng| ring.batch(n, rng);
    let noise = trainer.fixed_noise(config.eval_samples);

    let mut snapshots = Vec::new();
    for &stop in &config.checkpoints {
        let mut last = None;
        while trainer.iteration() < stop {
            last = Some(trainer.step(&mut data)?);
        }
        let record = last.expect("checkpoints increase, so each one trains at least once");
        let samples = pairs(&trainer.gan.generate(&noise));
        snapshots.push(Snapshot {
            iter: stop,
            coverage: coverage(&ring, &samples, config.min_count()),
            d_loss: record.d_loss,
            g_loss: record.g_loss,
            samples,
        });
    }
    Ok(Run {
        seed,
        variant,
        snapshots,
    })
}

/// The rows of an (n, 2) tensor.
fn pairs(t: &Tensor) -> Vec<[f32; 2]> {
    t.data().chunks_exact(2).map(|p| [p[0], p[1]]).collect()
}

impl Report {
    /// The checks, each with its line: the counting is exact on the constructed samples,
    /// real samples cover every mode, and every number is finite. Nothing here judges
    /// whether the remedy helped.
    pub fn checks(&self) -> Vec<(bool, String)> {
        let (got, want) = &self.constructed;
        let exact = got == want;
        let r = &self.real;
        let real_ok = r.covered == self.config.ring.modes && r.quality_fraction() > 0.97;
        let finite = self.runs.iter().flat_map(|run| &run.snapshots).all(|s| {
            let losses = s.d_loss.is_finite() && s.g_loss.is_finite();
            losses && s.samples.iter().flatten().all(|v| v.is_finite())
        });
        vec![
            check(
                exact,
                format!(
                    "counting on {} constructed samples is exact: per mode {:?}, {} high quality, \
                     {} covered",
                    got.total, got.per_mode, got.high_quality, got.covered
                ),
            ),
            check(
                real_ok,
                format!(
                    "{} real samples: {}/{} modes, {:.1}% high quality (expect 8/8, ≈ 98.9%)",
                    r.total,
                    r.covered,
                    self.config.ring.modes,
                    100.0 * r.quality_fraction()
                ),
            ),
            check(finite, "every loss and generated sample is finite".into()),
        ]
    }

    /// True when every check passed.
    pub fn verified(&self) -> bool {
        self.checks().iter().all(|(ok, _)| *ok)
    }

    /// The mean over seeds of (modes covered, high-quality fraction) at checkpoint `i`.
    pub fn mean_at(&self, variant: Variant, i: usize) -> (f64, f64) {
        let runs: Vec<&Run> = self.runs.iter().filter(|r| r.variant == variant).collect();
        let n = runs.len().max(1) as f64;
        let modes = runs.iter().map(|r| r.snapshots[i].coverage.covered as f64);
        let quality = runs
            .iter()
            .map(|r| r.snapshots[i].coverage.quality_fraction());
        (modes.sum::<f64>() / n, quality.sum::<f64>() / n)
    }
}

fn check(ok: bool, line: String) -> (bool, String) {
    (ok, format!("{} {line}", if ok { "ok  " } else { "FAIL" }))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let ring = &c.ring;
        writeln!(
            f,
            "data: {} Gaussians, std {}, centres on a circle of radius {}",
            ring.modes, ring.std, ring.radius
        )?;
        writeln!(
            f,
            "G: z ({}) → {h} → ReLU → {h} → ReLU → 2;  D: 2 → {h} → LReLU → {h} → LReLU \
             [→ MinibatchStdDev] → 1 → σ",
            c.noise_dim,
            h = c.hidden
        )?;
        let o = &c.options;
        writeln!(
            f,
            "batch {}, Adam lr {} β₁ {}, {} generator loss",
            o.batch_size, o.adam.lr, o.adam.beta1, o.g_loss
        )?;
        writeln!(
            f,
            "per evaluation: {} samples from fixed noise; high quality = within 3σ = {} of a \
             centre; a mode is covered with ≥ {} ({}%) high-quality samples",
            c.eval_samples,
            ring.quality_radius(),
            c.min_count(),
            100.0 * c.min_mode_fraction
        )?;
        writeln!(f, "\nmodes covered / high-quality samples, by iteration:")?;
        self.fmt_table(f)?;
        writeln!(f)?;
        let lines: Vec<String> = self.checks().into_iter().map(|(_, l)| l).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

impl Report {
    fn fmt_table(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<6}{:<15}", "seed", "D")?;
        for it in &self.config.checkpoints {
            write!(f, "{:>13}", format!("iter {it}"))?;
        }
        writeln!(f)?;
        let cell = |modes: String, q: f64| format!("{modes} {:>5.1}%", 100.0 * q);
        for run in &self.runs {
            write!(f, "{:<6}{:<15}", run.seed, run.variant.name())?;
            for s in &run.snapshots {
                let m = format!("{}/{}", s.coverage.covered, self.config.ring.modes);
                write!(f, "{:>13}", cell(m, s.coverage.quality_fraction()))?;
            }
            writeln!(f)?;
        }
        for variant in [Variant::Plain, Variant::MinibatchStd] {
            write!(f, "{:<6}{:<15}", "mean", variant.name())?;
            for i in 0..self.config.checkpoints.len() {
                let (m, q) = self.mean_at(variant, i);
                write!(f, "{:>13}", cell(format!("{m:.1}"), q))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Samples of the first seed's runs at every checkpoint, one row of panels per variant,
/// over circles that mark the modes, as an SVG document.
///
/// The first [`PLOT_SAMPLES`] samples of each evaluation are drawn, and samples that fall in
/// the same [`PLOT_CELL`]-sized square are drawn once: a square is about a pixel, so the
/// picture is unchanged while the file stays small.
pub fn plot_svg(report: &Report) -> Result<String, PlotError> {
    let seed = report.config.seeds.first().copied();
    let rows: Vec<&Run> = report
        .runs
        .iter()
        .filter(|r| Some(r.seed) == seed)
        .collect();
    let cols = report.config.checkpoints.len();
    let size = (230 * cols as u32 + 10, 260 * rows.len() as u32 + 40);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let title = format!(
            "Ring of 8 Gaussians, seed {}: generated samples (blue) and the modes (red)",
            seed.unwrap_or_default()
        );
        let root = root.titled(&title, ("sans-serif", 18)).map_err(plot_err)?;
        for (row, run) in root.split_evenly((rows.len(), 1)).iter().zip(&rows) {
            let label = match run.variant {
                Variant::Plain => "plain discriminator",
                Variant::MinibatchStd => "discriminator with the minibatch standard deviation",
            };
            let row = row.titled(label, ("sans-serif", 15)).map_err(plot_err)?;
            let panels = row.split_evenly((1, cols));
            for (panel, snap) in panels.iter().zip(&run.snapshots) {
                draw_panel(panel, &report.config.ring, snap)?;
            }
        }
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Samples drawn per panel.
pub const PLOT_SAMPLES: usize = 500;

/// Side of the squares within which samples are drawn once.
pub const PLOT_CELL: f64 = 0.03;

/// One panel: a circle around every mode, then the samples, with the counts in the caption.
fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    ring: &Ring,
    snap: &Snapshot,
) -> Result<(), PlotError> {
    let cov = &snap.coverage;
    let caption = format!(
        "iter {}: {}/{} modes, {:.0}% HQ",
        snap.iter,
        cov.covered,
        ring.modes,
        100.0 * cov.quality_fraction()
    );
    let lim = ring.radius * 1.3;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 13))
        .margin(6)
        .x_label_area_size(18)
        .y_label_area_size(24)
        .build_cartesian_2d(-lim..lim, -lim..lim)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(5)
        .y_labels(5)
        .label_style(("sans-serif", 10))
        .draw()
        .map_err(plot_err)?;

    let red = RGBColor(220, 50, 40);
    let modes = ring
        .centres()
        .into_iter()
        .map(|c| Circle::new((c[0], c[1]), 7, red.stroke_width(1)));
    chart.draw_series(modes).map_err(plot_err)?;

    let cell = |v: f32| (f64::from(v) / PLOT_CELL).round() as i64;
    let mut cells: Vec<(i64, i64)> = snap
        .samples
        .iter()
        .take(PLOT_SAMPLES)
        .map(|s| (cell(s[0]), cell(s[1])))
        .collect();
    cells.sort_unstable();
    cells.dedup();
    let blue = RGBColor(30, 90, 200);
    let dots = cells.into_iter().map(|(x, y)| {
        let p = (x as f64 * PLOT_CELL, y as f64 * PLOT_CELL);
        Circle::new(p, 1, blue.filled())
    });
    chart.draw_series(dots).map_err(plot_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centres_lie_on_the_ring() {
        let ring = Ring::default();
        for (k, c) in ring.centres().iter().enumerate() {
            let r = c[0].hypot(c[1]);
            assert!((r - 2.0).abs() < 1e-12, "centre {k} at radius {r}");
        }
        assert!(
            (ring.centre(2)[1] - 2.0).abs() < 1e-12,
            "centre 2 is at the top"
        );
    }

    #[test]
    fn min_count_rounds_up() {
        let mut c = Config::default();
        assert_eq!(c.min_count(), 20);
        c.eval_samples = 150;
        assert_eq!(c.min_count(), 2);
    }
}
