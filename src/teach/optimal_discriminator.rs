//! The optimal discriminator of a GAN, found by training and checked against the formula.
//!
//! For a fixed generator distribution p_g, the discriminator maximises
//!
//! ```text
//! V(D) = ∫ p_data(x)·ln D(x) + p_g(x)·ln(1 − D(x)) dx.
//! ```
//!
//! Pointwise, a·ln d + b·ln(1 − d) peaks at d = a/(a + b), so the best D is
//! D*(x) = p_data(x) / (p_data(x) + p_g(x)), and substituting it gives
//! V(D*) = 2·JS(p_data ‖ p_g) − 2 ln 2 (Goodfellow et al. 2014, Proposition 1 and Theorem 1).
//!
//! Here p_data and p_g are 1-D Gaussians. The main discriminator is logistic regression on
//! the features (1, x, x²): for two Gaussians ln p_data − ln p_g is a quadratic in x, so
//! D* = σ(w₀ + w₁x + w₂x²) lies inside this family, and V is concave in (w₀, w₁, w₂). Adam
//! therefore reaches D* itself, and what remains is optimisation and quadrature error, which
//! can be made small enough to check the theory to several digits. A small tanh MLP is
//! trained on the same objective for comparison: it is the kind of D a GAN really uses,
//! and it is only expected to agree where the densities have mass.
//!
//! Both are trained on the exact objective, V evaluated by the trapezoid rule on a grid,
//! instead of on samples, so the result is deterministic and free of sampling noise.

use std::fmt;

use autograd::Tensor;
use layers::{Adam, AdamConfig, Dense, Init, Module, Optimizer, Sequential, Tanh};
use plotters::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::example_util::{
    draw_curve, draw_legend, linspace, log_add_exp, normal_log_pdf, normal_pdf, plot_err, sigmoid,
    trapezoid_grid, PlotError,
};

/// A 1-D Gaussian N(mean, std²).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gaussian {
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub std: f64,
}

impl Gaussian {
    /// ln density at x.
    pub fn log_pdf(&self, x: f64) -> f64 {
        normal_log_pdf(x, self.mean, self.std)
    }

    /// Density at x.
    pub fn pdf(&self, x: f64) -> f64 {
        normal_pdf(x, self.mean, self.std)
    }
}

/// The distributions, the training schedule and the tolerances.
#[derive(Clone, Debug)]
pub struct Config {
    /// p_data.
    pub data: Gaussian,
    /// The fixed generator distribution p_g.
    pub gen: Gaussian,
    /// The quadrature grid for V: lower end, upper end, number of points.
    pub grid: (f64, f64, usize),
    /// The grid on which D is compared with D* and plotted: lower end, upper end, points.
    pub eval_grid: (f64, f64, usize),
    /// Adam steps for each model.
    pub steps: usize,
    /// Adam's learning rate at the start; it decays geometrically to `lr_end`.
    pub lr_start: f64,
    /// Adam's learning rate at the last step.
    pub lr_end: f64,
    /// Hidden width of the comparison MLP (0 skips it).
    pub mlp_hidden: usize,
    /// Seed of the MLP's initial weights.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data: Gaussian {
                mean: 0.0,
                std: 1.0,
            },
            gen: Gaussian {
                mean: 1.5,
                std: 0.7,
            },
            grid: (-8.0, 8.0, 401),
            eval_grid: (-4.0, 5.0, 181),
            steps: 4000,
            lr_start: 0.05,
            lr_end: 1e-3,
            mlp_hidden: 16,
            seed: 7,
        }
    }
}

/// Thresholds the example asserts.
pub mod tolerance {
    /// max |D − D*| on the evaluation grid, quadratic-logit model.
    pub const D_QUADRATIC: f64 = 1e-6;
    /// |V(D) − (2·JS − 2 ln 2)|, quadratic-logit model.
    pub const V_QUADRATIC: f64 = 1e-9;
    /// max |D − D*| where (p_data + p_g)/2 ≥ [`MASS_CUTOFF`], MLP.
    pub const D_MLP: f64 = 0.03;
    /// |V(D) − (2·JS − 2 ln 2)|, MLP.
    pub const V_MLP: f64 = 5e-4;
    /// The MLP is judged only where the mixture density is at least this.
    pub const MASS_CUTOFF: f64 = 0.01;
}

/// One trained discriminator and how close it came.
#[derive(Clone, Debug)]
pub struct Fit {
    /// A short name for tables and legends.
    pub name: String,
    /// D(x) on the evaluation grid.
    pub d: Vec<f64>,
    /// max |D − D*| over the whole evaluation grid.
    pub max_err: f64,
    /// max |D − D*| where (p_data + p_g)/2 ≥ [`tolerance::MASS_CUTOFF`].
    pub max_err_on_mass: f64,
    /// V(D) by quadrature after training.
    pub value: f64,
    /// V(D) at a few steps during training: (step, V).
    pub trace: Vec<(usize, f64)>,
}

/// What the example prints and plots.
#[derive(Clone, Debug)]
pub struct Report {
    /// The settings used.
    pub config: Config,
    /// The evaluation grid.
    pub xs: Vec<f64>,
    /// D*(x) on the evaluation grid.
    pub d_star: Vec<f64>,
    /// JS(p_data ‖ p_g) in nats, by quadrature.
    pub js: f64,
    /// 2·JS − 2 ln 2, the value of V at D*.
    pub v_star: f64,
    /// The logistic regression on (1, x, x²).
    pub quadratic: Fit,
    /// Its learned (w₀, w₁, w₂).
    pub quadratic_weights: [f64; 3],
    /// The exact (w₀, w₁, w₂) of ln p_data − ln p_g.
    pub exact_weights: [f64; 3],
    /// The MLP, when trained.
    pub mlp: Option<Fit>,
}

impl Report {
    /// The checks of the example: whether each passed, and a line to print.
    pub fn checks(&self) -> Vec<(bool, String)> {
        use tolerance::*;
        let mut c = Vec::new();
        let q = &self.quadratic;
        let v_err = (q.value - self.v_star).abs();
        c.push(check(
            q.max_err,
            D_QUADRATIC,
            "quadratic-logit D: max |D − D*| on the grid",
        ));
        c.push(check(
            v_err,
            V_QUADRATIC,
            "quadratic-logit D: |V(D) − (2·JS − 2 ln 2)|",
        ));
        if let Some(m) = &self.mlp {
            let v_err = (m.value - self.v_star).abs();
            c.push(check(
                m.max_err_on_mass,
                D_MLP,
                "MLP D: max |D − D*| where the densities have mass",
            ));
            c.push(check(v_err, V_MLP, "MLP D: |V(D) − (2·JS − 2 ln 2)|"));
        }
        c
    }

    /// True when every check passed and every number is finite.
    pub fn verified(&self) -> bool {
        self.checks().iter().all(|(ok, _)| *ok)
    }
}

/// A check line: passes when `err` is finite and below `tol`.
fn check(err: f64, tol: f64, what: &str) -> (bool, String) {
    let ok = err.is_finite() && err < tol;
    let mark = if ok { "ok  " } else { "FAIL" };
    (ok, format!("{mark} {what} = {err:.2e} (< {tol:.0e})"))
}

/// Runs the example: the analytic quantities, then both discriminators.
pub fn run(config: &Config) -> Report {
    let (p, g) = (config.data, config.gen);
    let (lo, hi, n) = config.eval_grid;
    let xs = linspace(lo, hi, n);
    let d_star: Vec<f64> = xs
        .iter()
        .map(|&x| sigmoid(p.log_pdf(x) - g.log_pdf(x)))
        .collect();
    let js = js_divergence(p, g);
    let v_star = 2.0 * js - 2.0 * std::f64::consts::LN_2;

    let objective = Objective::new(config);
    let (quadratic, w) = train_quadratic(config, &objective, &xs, &d_star);
    let mlp = (config.mlp_hidden > 0).then(|| train_mlp(config, &objective, &xs, &d_star));

    Report {
        config: config.clone(),
        xs,
        d_star,
        js,
        v_star,
        quadratic,
        quadratic_weights: w,
        exact_weights: exact_log_ratio(p, g),
        mlp,
    }
}

/// JS(p ‖ g) = ½ KL(p ‖ m) + ½ KL(g ‖ m), m = (p + g)/2, by the trapezoid rule on a grid
/// of its own (wider and finer than the training grid, so the two estimates are separate).
pub fn js_divergence(p: Gaussian, g: Gaussian) -> f64 {
    let (xs, ws) = trapezoid_grid(-15.0, 15.0, 12001);
    let mut js = 0.0;
    for (&x, &w) in xs.iter().zip(&ws) {
        let (lp, lg) = (p.log_pdf(x), g.log_pdf(x));
        let lm = log_add_exp(lp, lg) - std::f64::consts::LN_2;
        // Written with log densities so that tails where a density underflows add 0, not NaN.
        js += w * 0.5 * (lp.exp() * (lp - lm) + lg.exp() * (lg - lm));
    }
    js
}

/// (w₀, w₁, w₂) with ln p(x) − ln g(x) = w₀ + w₁x + w₂x².
pub fn exact_log_ratio(p: Gaussian, g: Gaussian) -> [f64; 3] {
    let (a, b) = (1.0 / (2.0 * p.std * p.std), 1.0 / (2.0 * g.std * g.std));
    [
        b * g.mean * g.mean - a * p.mean * p.mean + (g.std / p.std).ln(),
        2.0 * (a * p.mean - b * g.mean),
        b - a,
    ]
}

/// V(D) as a function of D's logits on the quadrature grid.
///
/// The discriminator is a two-class classifier (generated, real) with logits (0, ℓ):
/// log-softmax gives (ln(1 − D), ln D) without overflow for any ℓ, and
/// V = Σᵢ [wᵢ·p_g(xᵢ)·ln(1 − D(xᵢ)) + wᵢ·p_data(xᵢ)·ln D(xᵢ)].
struct Objective {
    /// Grid points, (n × 1).
    x: Tensor<f64>,
    /// Quadrature weights times densities, (n × 2): column 0 for p_g, column 1 for p_data.
    mass: Tensor<f64>,
    /// Zero logits of the "generated" class, (n × 1).
    zeros: Tensor<f64>,
}

impl Objective {
    fn new(config: &Config) -> Self {
        let (lo, hi, n) = config.grid;
        let (xs, ws) = trapezoid_grid(lo, hi, n);
        let mut mass = Vec::with_capacity(2 * n);
        for (&x, &w) in xs.iter().zip(&ws) {
            mass.push(w * config.gen.pdf(x));
            mass.push(w * config.data.pdf(x));
        }
        Objective {
            x: Tensor::from_vec(xs, &[n, 1]),
            mass: Tensor::from_vec(mass, &[n, 2]),
            zeros: Tensor::zeros(&[n, 1]),
        }
    }

    /// V for logits ℓ of shape (n × 1).
    fn value(&self, logits: &Tensor<f64>) -> Tensor<f64> {
        let two_class = Tensor::concat(&[self.zeros.clone(), logits.clone()], 1);
        two_class.log_softmax(1).mul(&self.mass).sum()
    }
}

/// Adam's learning rate at `step`: geometric decay from `lr_start` to `lr_end`, so the last
/// steps take small, precise moves instead of hovering around the optimum.
fn lr_at(config: &Config, step: usize) -> f64 {
    let frac = step as f64 / config.steps.max(1) as f64;
    config.lr_start * (config.lr_end / config.lr_start).powf(frac)
}

/// Maximises V over a model's parameters with Adam; returns V at a few steps.
fn maximise(
    config: &Config,
    params: Vec<(String, Tensor<f64>)>,
    value: impl Fn() -> Tensor<f64>,
) -> Vec<(usize, f64)> {
    let mut adam = Adam::new(
        params,
        AdamConfig {
            lr: config.lr_start,
            ..Default::default()
        },
    );
    let mut trace = Vec::new();
    for step in 0..config.steps {
        adam.config.lr = lr_at(config, step);
        adam.zero_grad();
        let v = value();
        if step % (config.steps / 5).max(1) == 0 {
            trace.push((step, v.item()));
        }
        // Adam minimises, so it is handed −V.
        v.neg().backward();
        adam.step();
    }
    trace
}

/// Fills in a [`Fit`] from D on the evaluation grid and the final V.
fn summarise(
    config: &Config,
    name: &str,
    xs: &[f64],
    d: Vec<f64>,
    d_star: &[f64],
    value: f64,
    trace: Vec<(usize, f64)>,
) -> Fit {
    let (p, g) = (config.data, config.gen);
    let mut max_err: f64 = 0.0;
    let mut max_err_on_mass: f64 = 0.0;
    for ((&x, &d), &ds) in xs.iter().zip(&d).zip(d_star) {
        let err = (d - ds).abs();
        max_err = max_err.max(err);
        if 0.5 * (p.pdf(x) + g.pdf(x)) >= tolerance::MASS_CUTOFF {
            max_err_on_mass = max_err_on_mass.max(err);
        }
    }
    Fit {
        name: name.to_string(),
        d,
        max_err,
        max_err_on_mass,
        value,
        trace,
    }
}

/// Logistic regression on (1, x, x²), started from D = ½ everywhere.
fn train_quadratic(
    config: &Config,
    obj: &Objective,
    xs: &[f64],
    d_star: &[f64],
) -> (Fit, [f64; 3]) {
    let w = Tensor::<f64>::zeros(&[3, 1]).requires_grad_(true);
    let features = |x: &Tensor<f64>| Tensor::concat(&[x.clone(), x.mul(x)], 1);
    // ℓ = w₀ + w₁x + w₂x², as (n × 2)·(2 × 1) + w₀
    let logits = |x: &Tensor<f64>| features(x).matmul(&w.slice(0, 1, 3)).add(&w.slice(0, 0, 1));
    let trace = maximise(config, vec![("w".into(), w.clone())], || {
        obj.value(&logits(&obj.x))
    });

    let value = autograd::no_grad(|| obj.value(&logits(&obj.x)).item());
    let weights = w.to_vec();
    let d = xs
        .iter()
        .map(|&x| sigmoid(weights[0] + weights[1] * x + weights[2] * x * x))
        .collect();
    let fit = summarise(config, "logistic on (x, x²)", xs, d, d_star, value, trace);
    (fit, [weights[0], weights[1], weights[2]])
}

/// A 1 → H → 1 tanh MLP giving D's logit.
fn train_mlp(config: &Config, obj: &Objective, xs: &[f64], d_star: &[f64]) -> Fit {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let h = config.mlp_hidden;
    let net: Sequential<f64> = Sequential::new()
        .with(Dense::new(1, h, Init::GlorotUniform, &mut rng))
        .with(Tanh)
        .with(Dense::new(h, 1, Init::GlorotUniform, &mut rng));
    let trace = maximise(config, net.parameters(), || obj.value(&net.forward(&obj.x)));

    let value = autograd::no_grad(|| obj.value(&net.forward(&obj.x)).item());
    let grid = Tensor::from_vec(xs.to_vec(), &[xs.len(), 1]);
    let logits = autograd::no_grad(|| net.forward(&grid)).to_vec();
    let d = logits.into_iter().map(sigmoid).collect();
    summarise(
        config,
        &format!("MLP 1-{h}-1 tanh"),
        xs,
        d,
        d_star,
        value,
        trace,
    )
}

/// w₀ + w₁·x + w₂·x² with signs written out, e.g. `1.93924 − 3.06122·x + 0.52041·x²`.
fn quadratic(w: [f64; 3]) -> String {
    let term = |v: f64, power: &str| {
        let sign = if v < 0.0 { '−' } else { '+' };
        format!(" {sign} {:.5}{power}", v.abs())
    };
    format!("{:.5}{}{}", w[0], term(w[1], "·x"), term(w[2], "·x²"))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (p, g) = (self.config.data, self.config.gen);
        writeln!(
            f,
            "p_data = N({}, {}²), p_g = N({}, {}²)",
            p.mean, p.std, g.mean, g.std
        )?;
        writeln!(f, "JS(p_data ‖ p_g) = {:.8} nats (quadrature)", self.js)?;
        writeln!(
            f,
            "2·JS − 2 ln 2     = {:.8}  (V at the optimal D*)",
            self.v_star
        )?;
        let (exact, learned) = (self.exact_weights, self.quadratic_weights);
        writeln!(f, "ln p_data − ln p_g = {}  (exact)", quadratic(exact))?;
        writeln!(f, "learned logit      = {}", quadratic(learned))?;
        for fit in std::iter::once(&self.quadratic).chain(&self.mlp) {
            writeln!(f, "\n{}", fit.name)?;
            let trace: Vec<String> = fit
                .trace
                .iter()
                .map(|(s, v)| format!("{s}: {v:.5}"))
                .collect();
            writeln!(f, "  V during training   {}", trace.join(", "))?;
            writeln!(
                f,
                "  V(D) after training = {:.8}, error {:.2e}",
                fit.value,
                (fit.value - self.v_star).abs()
            )?;
            writeln!(
                f,
                "  max |D − D*| on [{}, {}] = {:.2e}; where the densities have mass: {:.2e}",
                self.xs[0],
                self.xs[self.xs.len() - 1],
                fit.max_err,
                fit.max_err_on_mass
            )?;
        }
        if self.mlp.is_some() {
            writeln!(
                f,
                "\n(Where neither density has mass, V does not constrain D: the MLP stays flat \
                 there,"
            )?;
            writeln!(
                f,
                " while the quadratic logit follows D* because its shape is the formula's.)"
            )?;
        }
        writeln!(f)?;
        let lines: Vec<String> = self.checks().into_iter().map(|(_, l)| l).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

/// D(x) of each model against D*(x), over the two densities, as an SVG document.
pub fn plot_svg(report: &Report) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (lo, hi) = (report.xs[0], report.xs[report.xs.len() - 1]);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Trained D(x) against D*(x) = p_data / (p_data + p_g)",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(lo..hi, 0.0..1.05)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("x")
            .light_line_style(WHITE)
            .draw()
            .map_err(plot_err)?;

        let xs = &report.xs;
        let curve = |ys: &[f64]| xs.iter().copied().zip(ys.iter().copied()).collect();
        let density = |d: Gaussian| xs.iter().map(|&x| (x, d.pdf(x))).collect();
        let gray = RGBColor(150, 150, 150).stroke_width(2);
        let orange = RGBColor(230, 140, 20).stroke_width(2);
        let (data, gen) = (density(report.config.data), density(report.config.gen));
        draw_curve(&mut chart, data, gray, false, "p_data")?;
        draw_curve(&mut chart, gen, orange, false, "p_g")?;

        let green = RGBColor(0, 150, 60);
        let mlp = report.mlp.iter().map(|m| (m, green));
        for (fit, color) in std::iter::once((&report.quadratic, BLUE)).chain(mlp) {
            let (style, label) = (color.stroke_width(3), format!("D, {}", fit.name));
            draw_curve(&mut chart, curve(&fit.d), style, false, &label)?;
        }
        let black = BLACK.stroke_width(2);
        draw_curve(&mut chart, curve(&report.d_star), black, true, "D* formula")?;

        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn js_of_equal_distributions_is_zero() {
        let p = Gaussian {
            mean: 0.3,
            std: 1.1,
        };
        assert!(js_divergence(p, p).abs() < 1e-14);
    }

    #[test]
    fn js_of_disjoint_distributions_is_ln_2() {
        let p = Gaussian {
            mean: -6.0,
            std: 0.5,
        };
        let g = Gaussian {
            mean: 6.0,
            std: 0.5,
        };
        let js = js_divergence(p, g);
        assert!((js - std::f64::consts::LN_2).abs() < 1e-12, "JS = {js}");
    }

    #[test]
    fn exact_log_ratio_is_the_log_ratio() {
        let c = Config::default();
        let [w0, w1, w2] = exact_log_ratio(c.data, c.gen);
        for x in [-3.0, -0.5, 0.0, 1.2, 4.0] {
            let direct = c.data.log_pdf(x) - c.gen.log_pdf(x);
            let quad = w0 + w1 * x + w2 * x * x;
            assert!((direct - quad).abs() < 1e-12, "x = {x}: {direct} vs {quad}");
        }
    }
}
