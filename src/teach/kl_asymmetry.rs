//! Forward and reverse KL divergence: the same Gaussian fitted to a two-mode mixture twice.
//!
//! p is an equal mixture of two isotropic 2-D Gaussians; q = N(m, Σ) is a single Gaussian
//! whose mean and covariance are learned, with Σ = L·Lᵀ and L lower-triangular,
//!
//! ```text
//! L = ⎡ e^ℓ₁₁   0    ⎤      (the log-diagonal keeps L invertible and Σ positive definite
//!     ⎣ ℓ₂₁   e^ℓ₂₂ ⎦       for any real parameters, so Adam can move them freely)
//! ```
//!
//! - Forward, KL(p ‖ q) = E_p[ln p − ln q]: q is penalised wherever p has mass and q has
//!   little, so it stretches over both modes. For a Gaussian q the minimiser matches p's
//!   mean and covariance exactly, which gives a closed form to check against. Estimated on
//!   a grid, each point weighted by p.
//! - Reverse, KL(q ‖ p) = E_q[ln q − ln p]: q is penalised wherever it puts mass and p has
//!   little, so it settles inside one mode and pays about ln 2 for ignoring the other. Estimated
//!   with reparametrised samples x = m + L·ε, ε ~ N(0, I), so gradients flow to m and L.
//!
//! Both fits start from the same q; the reverse fit is also run from a mirrored start to show
//! that which mode it locks onto depends on where it starts.

use std::f64::consts::{LN_2, PI};
use std::fmt;

use autograd::Tensor;
use layers::{Adam, AdamConfig, Optimizer};
use plotters::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::example_util::{draw_curve, draw_legend, log_add_exp, plot_err, Chart, PlotError};

/// A 2-D point or vector.
pub type Vec2 = [f64; 2];

/// A symmetric 2 × 2 matrix, row-major.
pub type Mat2 = [[f64; 2]; 2];

/// p: an equal mixture of N(centres[0], std²·I) and N(centres[1], std²·I).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mixture {
    /// The two mode centres.
    pub centres: [Vec2; 2],
    /// The standard deviation of each component, the same along both axes.
    pub std: f64,
}

impl Mixture {
    /// ln N(x; centre k, std²·I).
    fn log_component(&self, k: usize, x: Vec2) -> f64 {
        let [dx, dy] = [x[0] - self.centres[k][0], x[1] - self.centres[k][1]];
        let var = self.std * self.std;
        -(dx * dx + dy * dy) / (2.0 * var) - (2.0 * PI * var).ln()
    }

    /// ln p(x) = ln ½ + ln(N₁(x) + N₂(x)), summed in the log domain.
    pub fn log_pdf(&self, x: Vec2) -> f64 {
        -LN_2 + log_add_exp(self.log_component(0, x), self.log_component(1, x))
    }

    /// E_p[x], the midpoint of the centres.
    pub fn mean(&self) -> Vec2 {
        [0, 1].map(|i| 0.5 * (self.centres[0][i] + self.centres[1][i]))
    }

    /// Cov_p[x] = std²·I + ¼·d·dᵀ with d the difference of the centres: the within-mode
    /// spread plus the spread of the two centres around their midpoint.
    pub fn cov(&self) -> Mat2 {
        let d = [0, 1].map(|i| self.centres[1][i] - self.centres[0][i]);
        let var = self.std * self.std;
        [0, 1].map(|i| [0, 1].map(|j| 0.25 * d[i] * d[j] + if i == j { var } else { 0.0 }))
    }

    /// One draw: a fair coin picks the mode.
    fn sample(&self, rng: &mut ChaCha8Rng) -> Vec2 {
        let k = usize::from(rand::Rng::gen_bool(rng, 0.5));
        [0, 1].map(|i| {
            let z: f64 = StandardNormal.sample(rng);
            self.centres[k][i] + self.std * z
        })
    }
}

/// q = N(mean, L·Lᵀ) with L lower-triangular.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gaussian2 {
    /// m.
    pub mean: Vec2,
    /// L, with `chol[0][1] = 0`.
    pub chol: Mat2,
}

impl Gaussian2 {
    /// From the parameters (m₁, m₂, ℓ₁₁, ℓ₂₁, ℓ₂₂) that the optimiser moves.
    fn from_params(p: &[f64]) -> Self {
        Gaussian2 {
            mean: [p[0], p[1]],
            chol: [[p[2].exp(), 0.0], [p[3], p[4].exp()]],
        }
    }

    /// Σ = L·Lᵀ.
    pub fn cov(&self) -> Mat2 {
        let [[a, _], [b, c]] = self.chol;
        [[a * a, a * b], [a * b, b * b + c * c]]
    }

    /// ln q(x) = −ln 2π − ln|L| − ½|z|², where L·z = x − m.
    pub fn log_pdf(&self, x: Vec2) -> f64 {
        let [[a, _], [b, c]] = self.chol;
        let z1 = (x[0] - self.mean[0]) / a;
        let z2 = (x[1] - self.mean[1] - b * z1) / c;
        -(2.0 * PI).ln() - (a * c).ln() - 0.5 * (z1 * z1 + z2 * z2)
    }

    /// The ellipse of points k standard deviations out: m + k·L·(cos θ, sin θ), closed.
    pub fn ellipse(&self, k: f64, n: usize) -> Vec<(f64, f64)> {
        let [[a, _], [b, c]] = self.chol;
        (0..=n)
            .map(|i| {
                let t = 2.0 * PI * i as f64 / n as f64;
                let (u, v) = (k * t.cos(), k * t.sin());
                (self.mean[0] + a * u, self.mean[1] + b * u + c * v)
            })
            .collect()
    }
}

/// Which divergence a fit minimised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// KL(p ‖ q), mass-covering.
    Forward,
    /// KL(q ‖ p), mode-seeking.
    Reverse,
}

/// The target, the schedules and the sizes.
#[derive(Clone, Debug)]
pub struct Config {
    /// p.
    pub mixture: Mixture,
    /// Where each fit starts: q = N(start, I). The forward fit uses the first.
    pub starts: [Vec2; 2],
    /// Adam steps per fit.
    pub steps: usize,
    /// Adam's learning rate at the start, decaying geometrically to `lr_end`.
    pub lr_start: f64,
    /// Adam's learning rate at the last step.
    pub lr_end: f64,
    /// Spacing of the grid that estimates KL(p ‖ q) during training.
    pub train_grid_step: f64,
    /// Reparametrised samples per step for KL(q ‖ p).
    pub samples: usize,
    /// Spacing of the grid on which both divergences are evaluated after training.
    pub eval_grid_step: f64,
    /// Samples of p drawn for the figure.
    pub scatter: usize,
    /// Seed of the samples.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mixture: Mixture {
                centres: [[-2.0, -1.0], [2.0, 1.0]],
                std: 0.6,
            },
            starts: [[0.5, 0.25], [-0.5, -0.25]],
            steps: 2000,
            lr_start: 0.05,
            lr_end: 1e-3,
            train_grid_step: 0.2,
            samples: 512,
            eval_grid_step: 0.05,
            scatter: 400,
            seed: 11,
        }
    }
}

impl Config {
    /// A shortened run for tests: fewer steps, coarser grids, fewer samples.
    pub fn quick() -> Self {
        Config {
            steps: 400,
            lr_start: 0.1,
            lr_end: 0.01,
            train_grid_step: 0.3,
            samples: 128,
            eval_grid_step: 0.1,
            scatter: 50,
            ..Config::default()
        }
    }
}

/// One fitted q and both divergences between it and p.
#[derive(Clone, Debug)]
pub struct Fit {
    /// Which divergence was minimised.
    pub direction: Direction,
    /// The starting mean.
    pub start: Vec2,
    /// The fitted q.
    pub q: Gaussian2,
    /// KL(p ‖ q) after training, on the evaluation grid.
    pub kl_pq: f64,
    /// KL(q ‖ p) after training, on the evaluation grid.
    pub kl_qp: f64,
}

impl Fit {
    /// The distance from q's mean to the nearest mode centre, and that mode's index.
    pub fn nearest_mode(&self, p: &Mixture) -> (f64, usize) {
        let dist = |c: Vec2| (self.q.mean[0] - c[0]).hypot(self.q.mean[1] - c[1]);
        let (d0, d1) = (dist(p.centres[0]), dist(p.centres[1]));
        if d0 <= d1 {
            (d0, 0)
        } else {
            (d1, 1)
        }
    }
}

/// What the example prints and plots.
#[derive(Clone, Debug)]
pub struct Report {
    /// The settings used.
    pub config: Config,
    /// The forward fit.
    pub forward: Fit,
    /// The reverse fits, one per start.
    pub reverse: Vec<Fit>,
    /// Samples of p, for the figure.
    pub scatter: Vec<Vec2>,
}

impl Report {
    /// The checks of the example: whether each passed, and a line to print.
    pub fn checks(&self) -> Vec<(bool, String)> {
        let p = &self.config.mixture;
        let f = &self.forward;
        let (mean_p, cov_p) = (p.mean(), p.cov());
        let var = p.std * p.std;
        let mut c = Vec::new();

        let mean_err = (f.q.mean[0] - mean_p[0]).hypot(f.q.mean[1] - mean_p[1]);
        c.push(check(
            mean_err < 0.01,
            format!("forward: |m − E_p[x]| = {mean_err:.1e} (< 0.01)"),
        ));
        let cov_err = max_abs_diff(f.q.cov(), cov_p) / max_abs(cov_p);
        c.push(check(
            cov_err < 0.01,
            format!("forward: Σ matches Cov_p[x], relative error {cov_err:.1e} (< 0.01)"),
        ));
        let spread = trace(f.q.cov()) / (2.0 * var);
        c.push(check(
            spread > 3.0,
            format!("forward: tr Σ is {spread:.1}× one mode's (> 3: spread over both)"),
        ));

        for r in &self.reverse {
            let (dist, k) = r.nearest_mode(p);
            let at = format!("reverse from ({}, {})", r.start[0], r.start[1]);
            c.push(check(
                dist < 0.1,
                format!("{at}: |m − centre {}| = {dist:.3} (< 0.1)", k + 1),
            ));
            let cov_err = max_abs_diff(r.q.cov(), [[var, 0.0], [0.0, var]]) / var;
            c.push(check(
                cov_err < 0.1,
                format!("{at}: Σ ≈ one mode's σ²·I, relative error {cov_err:.3} (< 0.1)"),
            ));
            let gap = (r.kl_qp - LN_2).abs();
            c.push(check(
                gap < 0.01,
                format!(
                    "{at}: KL(q ‖ p) = {:.4} ≈ ln 2, off by {gap:.4} (< 0.01)",
                    r.kl_qp
                ),
            ));
            c.push(check(
                f.kl_pq < r.kl_pq && r.kl_qp < f.kl_qp,
                format!("{at}: each fit is the better one under its own divergence"),
            ));
        }
        let modes: Vec<usize> = self.reverse.iter().map(|r| r.nearest_mode(p).1).collect();
        let both = modes.len() == 2 && modes[0] != modes[1];
        c.push(check(
            both,
            "reverse: the two starts locked onto different modes".to_string(),
        ));

        let finite = [f].into_iter().chain(&self.reverse).all(Fit::is_finite);
        c.push(check(finite, "every fitted number is finite".to_string()));
        c
    }

    /// True when every check passed.
    pub fn verified(&self) -> bool {
        self.checks().iter().all(|(ok, _)| *ok)
    }
}

impl Fit {
    /// True when the fitted parameters and both divergences are finite.
    pub fn is_finite(&self) -> bool {
        let q = &self.q;
        let params = q.mean.iter().chain(q.chol.iter().flatten());
        params
            .chain([&self.kl_pq, &self.kl_qp])
            .all(|v| v.is_finite())
    }
}

fn check(ok: bool, line: String) -> (bool, String) {
    (ok, format!("{} {line}", if ok { "ok  " } else { "FAIL" }))
}

fn max_abs_diff(a: Mat2, b: Mat2) -> f64 {
    let d = [0, 1].map(|i| [0, 1].map(|j| a[i][j] - b[i][j]));
    max_abs(d)
}

fn max_abs(a: Mat2) -> f64 {
    a.iter().flatten().fold(0.0, |m, v| m.max(v.abs()))
}

fn trace(a: Mat2) -> f64 {
    a[0][0] + a[1][1]
}

/// Runs the example: one forward fit and one reverse fit per start.
pub fn run(config: &Config) -> Report {
    let p = config.mixture;
    let grid = WeightedGrid::new(&p, config.train_grid_step);
    let theta = fit_forward(config, &grid);
    let forward = evaluate(config, Direction::Forward, config.starts[0], &theta);

    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let reverse = config
        .starts
        .iter()
        .map(|&start| {
            let theta = fit_reverse(config, start, &mut rng);
            evaluate(config, Direction::Reverse, start, &theta)
        })
        .collect();
    let scatter = (0..config.scatter).map(|_| p.sample(&mut rng)).collect();

    Report {
        config: config.clone(),
        forward,
        reverse,
        scatter,
    }
}

/// The learnable parameters θ = (m₁, m₂, ℓ₁₁, ℓ₂₁, ℓ₂₂) of q = N(start, I).
fn initial_params(start: Vec2) -> Tensor<f64> {
    Tensor::from_vec(vec![start[0], start[1], 0.0, 0.0, 0.0], &[5]).requires_grad_(true)
}

/// The entries of θ as shape-(1) tensors, which broadcast against a batch of points.
struct QParams {
    m1: Tensor<f64>,
    m2: Tensor<f64>,
    l11: Tensor<f64>,
    l21: Tensor<f64>,
    l22: Tensor<f64>,
}

impl QParams {
    fn split(theta: &Tensor<f64>) -> Self {
        let at = |i| theta.slice(0, i, i + 1);
        QParams {
            m1: at(0),
            m2: at(1),
            l11: at(2),
            l21: at(3),
            l22: at(4),
        }
    }

    /// ln |L| = ℓ₁₁ + ℓ₂₂.
    fn log_det_l(&self) -> Tensor<f64> {
        self.l11.add(&self.l22)
    }

    /// ln q at the points (x₁, x₂), each of shape (n): solve L·z = x − m by substitution,
    /// then ln q = −½|z|² − ln |L| − ln 2π.
    fn log_q(&self, x1: &Tensor<f64>, x2: &Tensor<f64>) -> Tensor<f64> {
        let z1 = x1.sub(&self.m1).div(&self.l11.exp());
        let z2 = x2
            .sub(&self.m2)
            .sub(&z1.mul(&self.l21))
            .div(&self.l22.exp());
        let half_sq = z1.mul(&z1).add(&z2.mul(&z2)).mul_scalar(0.5);
        half_sq
            .add(&self.log_det_l())
            .add_scalar((2.0 * PI).ln())
            .neg()
    }
}

/// ln p at the points (x₁, x₂), each of shape (n), as an engine expression.
fn log_p_tensor(p: &Mixture, x1: &Tensor<f64>, x2: &Tensor<f64>) -> Tensor<f64> {
    let n = x1.numel();
    let var = p.std * p.std;
    let component = |c: Vec2| {
        let (dx, dy) = (x1.sub_scalar(c[0]), x2.sub_scalar(c[1]));
        let sq = dx.mul(&dx).add(&dy.mul(&dy));
        sq.mul_scalar(-0.5 / var)
            .sub_scalar((2.0 * PI * var).ln())
            .reshape(&[n, 1])
    };
    let (a, b) = (component(p.centres[0]), component(p.centres[1]));
    // ln(eᵃ + eᵇ) = a − log-softmax(a, b)₀; log-softmax subtracts the max, so no overflow.
    let pair = Tensor::concat(&[a.clone(), b], 1);
    let lse = a.sub(&pair.log_softmax(1).slice(1, 0, 1));
    lse.sub_scalar(LN_2).reshape(&[n])
}

/// Grid points (x₁, x₂) weighted by p·Δ², renormalised to sum to 1, so that E_p[f] ≈
/// Σᵢ wᵢ f(xᵢ). Points where p is negligible are dropped.
struct WeightedGrid {
    x1: Tensor<f64>,
    x2: Tensor<f64>,
    w: Tensor<f64>,
}

impl WeightedGrid {
    fn new(p: &Mixture, step: f64) -> Self {
        let (mut x1, mut x2, mut w) = (Vec::new(), Vec::new(), Vec::new());
        for x in grid_points(p, step) {
            let density = p.log_pdf(x).exp();
            if density > 1e-12 {
                x1.push(x[0]);
                x2.push(x[1]);
                w.push(density);
            }
        }
        let total: f64 = w.iter().sum();
        w.iter_mut().for_each(|v| *v /= total);
        let n = w.len();
        WeightedGrid {
            x1: Tensor::from_vec(x1, &[n]),
            x2: Tensor::from_vec(x2, &[n]),
            w: Tensor::from_vec(w, &[n]),
        }
    }
}

/// A square grid with spacing `step` over a box that holds p's mass and any reasonable q:
/// the centres' box widened by 8 standard deviations and 4 units.
fn grid_points(p: &Mixture, step: f64) -> Vec<Vec2> {
    let pad = 8.0 * p.std + 4.0;
    let lo = [0, 1].map(|i| p.centres[0][i].min(p.centres[1][i]) - pad);
    let hi = [0, 1].map(|i| p.centres[0][i].max(p.centres[1][i]) + pad);
    let count = [0, 1].map(|i| ((hi[i] - lo[i]) / step).ceil() as usize + 1);
    let mut pts = Vec::with_capacity(count[0] * count[1]);
    for i in 0..count[0] {
        for j in 0..count[1] {
            pts.push([lo[0] + step * i as f64, lo[1] + step * j as f64]);
        }
    }
    pts
}

/// Runs Adam on θ, minimising `loss()`, with the learning rate decaying geometrically.
fn minimise(config: &Config, theta: &Tensor<f64>, mut loss: impl FnMut() -> Tensor<f64>) {
    let adam_config = AdamConfig {
        lr: config.lr_start,
        ..Default::default()
    };
    let mut adam = Adam::new(vec![("theta".into(), theta.clone())], adam_config);
    let decay = (config.lr_end / config.lr_start).powf(1.0 / config.steps.max(1) as f64);
    for _ in 0..config.steps {
        adam.zero_grad();
        loss().backward();
        adam.step();
        adam.config.lr *= decay;
    }
}

/// Minimises KL(p ‖ q) = −H(p) − E_p[ln q]; only the cross-entropy −E_p[ln q] depends on q.
fn fit_forward(config: &Config, grid: &WeightedGrid) -> Tensor<f64> {
    let theta = initial_params(config.starts[0]);
    minimise(config, &theta, || {
        let q = QParams::split(&theta);
        q.log_q(&grid.x1, &grid.x2).mul(&grid.w).sum().neg()
    });
    theta
}

/// Minimises KL(q ‖ p) = E_q[ln q] − E_q[ln p], with fresh samples ε each step.
fn fit_reverse(config: &Config, start: Vec2, rng: &mut ChaCha8Rng) -> Tensor<f64> {
    let theta = initial_params(start);
    let p = config.mixture;
    let s = config.samples;
    minimise(config, &theta, || {
        let q = QParams::split(&theta);
        let e1 = Tensor::rand_normal(&[s], 0.0, 1.0, rng);
        let e2 = Tensor::rand_normal(&[s], 0.0, 1.0, rng);

        // x = m + L·ε: the sample is a differentiable function of θ (reparametrisation).
        let x1 = q.m1.add(&q.l11.exp().mul(&e1));
        let x2 = q.m2.add(&q.l21.mul(&e1)).add(&q.l22.exp().mul(&e2));

        // E_q[ln q] = −ln 2π − ln |L| − 1 exactly; sampling it too would only add noise.
        let e_log_q = q.log_det_l().add_scalar((2.0 * PI).ln() + 1.0).neg();
        e_log_q.sub(&log_p_tensor(&p, &x1, &x2).mean())
    });
    theta
}

/// Both divergences between p and the fitted q, by quadrature on the evaluation grid.
fn evaluate(config: &Config, direction: Direction, start: Vec2, theta: &Tensor<f64>) -> Fit {
    let p = config.mixture;
    let q = Gaussian2::from_params(&theta.to_vec());
    let area = config.eval_grid_step * config.eval_grid_step;
    let (mut kl_pq, mut kl_qp) = (0.0, 0.0);
    for x in grid_points(&p, config.eval_grid_step) {
        let (lp, lq) = (p.log_pdf(x), q.log_pdf(x));
        kl_pq += area * lp.exp() * (lp - lq);
        kl_qp += area * lq.exp() * (lq - lp);
    }
    Fit {
        direction,
        start,
        q,
        kl_pq,
        kl_qp,
    }
}

fn fmt_mat(m: Mat2) -> String {
    format!(
        "[[{:.3}, {:.3}], [{:.3}, {:.3}]]",
        m[0][0], m[0][1], m[1][0], m[1][1]
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.config.mixture;
        let [a, b] = p.centres;
        writeln!(
            f,
            "p = ½ N(({}, {}), {}²·I) + ½ N(({}, {}), {}²·I)",
            a[0], a[1], p.std, b[0], b[1], p.std
        )?;
        let m = p.mean();
        writeln!(
            f,
            "p's mean ({:.3}, {:.3}) and covariance {}: what forward KL must match",
            m[0],
            m[1],
            fmt_mat(p.cov())
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<9} {:<14} {:<18} {:<34} {:>9} {:>9}",
            "fit", "start", "mean", "covariance", "KL(p‖q)", "KL(q‖p)"
        )?;
        for fit in std::iter::once(&self.forward).chain(&self.reverse) {
            let name = match fit.direction {
                Direction::Forward => "forward",
                Direction::Reverse => "reverse",
            };
            let start = format!("({}, {})", fit.start[0], fit.start[1]);
            let mean = format!("({:.3}, {:.3})", fit.q.mean[0], fit.q.mean[1]);
            writeln!(
                f,
                "{name:<9} {start:<14} {mean:<18} {:<34} {:>9.4} {:>9.4}",
                fmt_mat(fit.q.cov()),
                fit.kl_pq,
                fit.kl_qp
            )?;
        }
        writeln!(
            f,
            "\nA q sitting on one mode of a 50/50 mixture has ln q − ln p ≈ ln q − ln(½q) = ln 2"
        )?;
        writeln!(
            f,
            "wherever it has mass, so a mode-seeking fit ends with KL(q ‖ p) ≈ ln 2 = {LN_2:.4}."
        )?;
        writeln!(f)?;
        let lines: Vec<String> = self.checks().into_iter().map(|(_, l)| l).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

/// Samples of p with the 1σ and 2σ ellipses of every fit, as an SVG document.
pub fn plot_svg(report: &Report) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "q fitted to a two-mode p: forward vs reverse KL",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(36)
            .build_cartesian_2d(-6.0..6.0, -4.5..4.5)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .draw()
            .map_err(plot_err)?;

        let gray = RGBColor(170, 170, 170);
        let dots = report
            .scatter
            .iter()
            .map(|x| Circle::new((x[0], x[1]), 2, gray.filled()));
        chart
            .draw_series(dots)
            .map_err(plot_err)?
            .label("samples of p")
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, gray.filled()));

        let forward = [(&report.forward, BLUE)];
        let palette = [RED, RGBColor(230, 140, 20)];
        let reverse = report.reverse.iter().zip(palette);
        for (fit, color) in forward.into_iter().chain(reverse) {
            draw_fit(&mut chart, fit, color)?;
        }

        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// One fit: a solid 1σ ellipse, a dashed 2σ ellipse and a cross at the mean.
fn draw_fit(chart: &mut Chart<'_, '_>, fit: &Fit, color: RGBColor) -> Result<(), PlotError> {
    let label = match fit.direction {
        Direction::Forward => "min KL(p ‖ q), forward".to_string(),
        Direction::Reverse => format!("min KL(q ‖ p) from ({}, {})", fit.start[0], fit.start[1]),
    };
    let style = color.stroke_width(2);
    draw_curve(chart, fit.q.ellipse(1.0, 96), style, false, &label)?;
    draw_curve(chart, fit.q.ellipse(2.0, 96), style, true, "")?;
    let mean = (fit.q.mean[0], fit.q.mean[1]);
    chart
        .draw_series([Cross::new(mean, 5, style)])
        .map_err(plot_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_q_matches_the_closed_form() {
        let theta = [0.3, -0.2, 0.4, -0.7, -0.1];
        let q = Gaussian2::from_params(&theta);
        let x = Tensor::from_vec(vec![1.0, -2.0, 0.0], &[3]);
        let y = Tensor::from_vec(vec![0.5, 1.5, -0.3], &[3]);
        let t = Tensor::from_vec(theta.to_vec(), &[5]);
        let engine = QParams::split(&t).log_q(&x, &y).to_vec();
        for (i, e) in engine.iter().enumerate() {
            let direct = q.log_pdf([x.data()[i], y.data()[i]]);
            assert!(
                (e - direct).abs() < 1e-12,
                "point {i}: engine {e} vs direct {direct}"
            );
        }
    }

    #[test]
    fn log_p_matches_the_closed_form() {
        let p = Config::default().mixture;
        let x = Tensor::from_vec(vec![-2.0, 0.0, 9.0], &[3]);
        let y = Tensor::from_vec(vec![-1.0, 0.0, -7.0], &[3]);
        let engine = log_p_tensor(&p, &x, &y).to_vec();
        for (i, e) in engine.iter().enumerate() {
            let direct = p.log_pdf([x.data()[i], y.data()[i]]);
            assert!(
                (e - direct).abs() < 1e-12,
                "point {i}: engine {e} vs direct {direct}"
            );
        }
    }

    #[test]
    fn ellipse_points_are_k_sigma_out() {
        let q = Gaussian2::from_params(&[1.0, 2.0, 0.3, 0.5, -0.2]);
        let peak = q.log_pdf(q.mean);
        for (x, y) in q.ellipse(2.0, 16) {
            // ln q drops by ½k² = 2 from the peak on the 2σ ellipse.
            let drop = peak - q.log_pdf([x, y]);
            assert!((drop - 2.0).abs() < 1e-12, "drop {drop} at ({x}, {y})");
        }
    }
}
