//! Backpropagation by hand, beside the engine and finite differences.
//!
//! The network has two inputs, two tanh hidden units and one sigmoid output, trained with
//! binary cross-entropy against a target t:
//!
//! ```text
//! aⱼ = x₁·w₁ⱼ + x₂·w₂ⱼ + bⱼ        (j = 1, 2)
//! hⱼ = tanh aⱼ
//! z  = h₁·v₁ + h₂·v₂ + c
//! ŷ  = σ(z)
//! L  = −[t·ln ŷ + (1 − t)·ln(1 − ŷ)]
//! ```
//!
//! The backward pass applies the chain rule from L back to every value, one factor at a
//! time. Each gradient is computed three ways: by hand in plain `f64` arithmetic, by the
//! engine's `backward` on `Tensor<f64>`, and by central differences of the hand-written
//! forward pass.

use std::fmt;

use autograd::Tensor;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::example_util::{plot_err, PlotError};

/// |hand − engine| allowed for any value or gradient.
pub const ENGINE_TOL: f64 = 1e-9;

/// |hand − finite difference| allowed for any gradient.
pub const NUMERIC_TOL: f64 = 1e-6;

/// Step of the central differences.
const FD_EPS: f64 = 1e-6;

/// The network's inputs, weights and target: small numbers a learner can copy to paper.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Net {
    /// Inputs x₁, x₂.
    pub x: [f64; 2],
    /// `w[i][j]` connects input i to hidden unit j.
    pub w: [[f64; 2]; 2],
    /// Hidden biases b₁, b₂.
    pub b: [f64; 2],
    /// Hidden-to-output weights v₁, v₂.
    pub v: [f64; 2],
    /// Output bias c.
    pub c: f64,
    /// Target t, 0 or 1.
    pub t: f64,
}

impl Default for Net {
    fn default() -> Self {
        Net {
            x: [0.5, -1.0],
            w: [[0.2, -0.4], [0.6, 0.1]],
            b: [0.1, -0.2],
            v: [0.7, -0.5],
            c: 0.3,
            t: 1.0,
        }
    }
}

/// One line of the printed tables: a value, how it is computed, and its three versions.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// The symbol, e.g. `∂L/∂w₂₁`.
    pub symbol: String,
    /// The formula in terms of earlier lines, e.g. `∂L/∂a₁ · x₂`.
    pub formula: String,
    /// Computed by hand in plain `f64`.
    pub hand: f64,
    /// The engine's forward value or gradient.
    pub engine: f64,
    /// The central difference ∂L/∂(this value), for gradients only.
    pub numeric: Option<f64>,
}

/// Everything the example prints, and whether it all agreed.
#[derive(Clone, Debug)]
pub struct Report {
    /// The inputs and weights used.
    pub net: Net,
    /// The forward pass, input to loss.
    pub forward: Vec<Line>,
    /// The backward pass, loss to inputs.
    pub backward: Vec<Line>,
    /// The largest |hand − engine| over both passes.
    pub max_engine_diff: f64,
    /// The largest |hand − finite difference| over the backward pass.
    pub max_numeric_diff: f64,
}

impl Report {
    /// True when every value and gradient agrees within [`ENGINE_TOL`] and [`NUMERIC_TOL`].
    pub fn verified(&self) -> bool {
        self.max_engine_diff < ENGINE_TOL && self.max_numeric_diff < NUMERIC_TOL
    }
}

/// The forward pass in plain `f64`, kept as stages so that finite differences can perturb
/// any intermediate value, not only the weights.
impl Net {
    /// a = x·W + b.
    pub fn pre_hidden(&self) -> [f64; 2] {
        let [x1, x2] = self.x;
        [0, 1].map(|j| x1 * self.w[0][j] + x2 * self.w[1][j] + self.b[j])
    }

    fn loss_from_a(&self, a: [f64; 2]) -> f64 {
        self.loss_from_h(a.map(f64::tanh))
    }

    fn loss_from_h(&self, h: [f64; 2]) -> f64 {
        self.loss_from_z(h[0] * self.v[0] + h[1] * self.v[1] + self.c)
    }

    fn loss_from_z(&self, z: f64) -> f64 {
        self.loss_from_y(crate::example_util::sigmoid(z))
    }

    fn loss_from_y(&self, y: f64) -> f64 {
        -(self.t * y.ln() + (1.0 - self.t) * (1.0 - y).ln())
    }

    /// L(x, W, b, v, c).
    pub fn loss(&self) -> f64 {
        self.loss_from_a(self.pre_hidden())
    }

    /// Every intermediate value of the forward pass.
    pub fn forward(&self) -> Forward {
        let a = self.pre_hidden();
        let h = a.map(f64::tanh);
        let z = h[0] * self.v[0] + h[1] * self.v[1] + self.c;
        let y = crate::example_util::sigmoid(z);
        let loss = self.loss_from_y(y);
        Forward { a, h, z, y, loss }
    }
}

/// The intermediate values of the hand-computed forward pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Forward {
    /// Hidden pre-activations a₁, a₂.
    pub a: [f64; 2],
    /// Hidden activations h₁, h₂.
    pub h: [f64; 2],
    /// Output pre-activation z.
    pub z: f64,
    /// Output probability ŷ.
    pub y: f64,
    /// Loss L.
    pub loss: f64,
}

/// A value of the network whose gradient is shown: an intermediate, a weight or an input.
#[derive(Clone, Copy, Debug)]
enum At {
    Y,
    Z,
    H(usize),
    A(usize),
    C,
    V(usize),
    B(usize),
    W(usize, usize),
    X(usize),
}

impl Net {
    /// L with the value `at` increased by d: a weight or input is changed and the whole
    /// forward pass rerun; an intermediate is changed and only the stages after it rerun.
    fn loss_nudged(&self, at: At, d: f64) -> f64 {
        let Forward { a, h, z, y, .. } = self.forward();
        let (mut a, mut h, mut n) = (a, h, *self);
        match at {
            At::Y => return self.loss_from_y(y + d),
            At::Z => return self.loss_from_z(z + d),
            At::H(j) => {
                h[j] += d;
                return self.loss_from_h(h);
            }
            At::A(j) => {
                a[j] += d;
                return self.loss_from_a(a);
            }
            At::C => n.c += d,
            At::V(j) => n.v[j] += d,
            At::B(j) => n.b[j] += d,
            At::W(i, j) => n.w[i][j] += d,
            At::X(i) => n.x[i] += d,
        }
        n.loss()
    }
}

/// ∂f/∂e at e = 0 by central differences.
fn central(f: &dyn Fn(f64) -> f64) -> f64 {
    (f(FD_EPS) - f(-FD_EPS)) / (2.0 * FD_EPS)
}

/// The engine's version of the network: leaves that require gradients, and intermediates
/// that keep theirs ([`Tensor::retain_grad`]) so the tables can show them.
struct EngineGraph {
    x: Tensor<f64>,
    w: Tensor<f64>,
    b: Tensor<f64>,
    v: Tensor<f64>,
    c: Tensor<f64>,
    a: Tensor<f64>,
    h: Tensor<f64>,
    z: Tensor<f64>,
    y: Tensor<f64>,
    loss: Tensor<f64>,
}

impl EngineGraph {
    /// Builds the graph and runs backward once.
    fn run(net: &Net) -> Self {
        let leaf = |v: Vec<f64>, s: &[usize]| Tensor::from_vec(v, s).requires_grad_(true);
        let x = leaf(net.x.to_vec(), &[1, 2]);
        let w = leaf(net.w.concat(), &[2, 2]);
        let b = leaf(net.b.to_vec(), &[2]);
        let v = leaf(net.v.to_vec(), &[2, 1]);
        let c = leaf(vec![net.c], &[1]);

        // (1 × 2)·(2 × 2) + (2) → (1 × 2), then (1 × 2)·(2 × 1) + (1) → (1 × 1)
        let a = x.matmul(&w).add(&b);
        let h = a.tanh();
        let z = h.matmul(&v).add(&c);
        let y = z.sigmoid();
        let loss = y.bce(&Tensor::from_vec(vec![net.t], &[1, 1]));
        for t in [&a, &h, &z, &y] {
            t.retain_grad();
        }
        loss.backward();

        EngineGraph {
            x,
            w,
            b,
            v,
            c,
            a,
            h,
            z,
            y,
            loss,
        }
    }
}

impl EngineGraph {
    /// The engine's gradient of L with respect to the value `at`.
    fn grad(&self, at: At) -> f64 {
        match at {
            At::Y => grad_at(&self.y, 0),
            At::Z => grad_at(&self.z, 0),
            At::H(j) => grad_at(&self.h, j),
            At::A(j) => grad_at(&self.a, j),
            At::C => grad_at(&self.c, 0),
            At::V(j) => grad_at(&self.v, j),
            At::B(j) => grad_at(&self.b, j),
            // W is stored row-major, 2 × 2.
            At::W(i, j) => grad_at(&self.w, 2 * i + j),
            At::X(i) => grad_at(&self.x, i),
        }
    }
}

/// The gradient of `t` at flat index `i`, or NaN when backward did not reach it (which
/// then fails the comparison instead of hiding).
fn grad_at(t: &Tensor<f64>, i: usize) -> f64 {
    t.grad_ref().as_ref().map_or(f64::NAN, |g| g[i])
}

/// Runs the example: forward and backward by hand, by the engine, and by finite differences.
pub fn run(net: Net) -> Report {
    let e = EngineGraph::run(&net);
    let forward = forward_lines(&net, &e);
    let backward = backward_lines(&net, &e);

    let engine_diffs = forward
        .iter()
        .chain(&backward)
        .map(|l| (l.hand - l.engine).abs());
    let numeric_diffs = backward
        .iter()
        .filter_map(|l| l.numeric.map(|n| (l.hand - n).abs()));
    Report {
        net,
        max_engine_diff: engine_diffs.fold(0.0, nan_max),
        max_numeric_diff: numeric_diffs.fold(0.0, nan_max),
        forward,
        backward,
    }
}

/// max that lets a NaN through, so a missing gradient cannot pass a check.
fn nan_max(acc: f64, v: f64) -> f64 {
    if v.is_nan() || acc.is_nan() {
        f64::NAN
    } else {
        acc.max(v)
    }
}

fn line(symbol: &str, formula: &str, hand: f64, engine: f64, numeric: Option<f64>) -> Line {
    Line {
        symbol: symbol.to_string(),
        formula: formula.to_string(),
        hand,
        engine,
        numeric,
    }
}

/// The forward pass, one value per line.
fn forward_lines(net: &Net, e: &EngineGraph) -> Vec<Line> {
    let Forward { a, h, z, y, loss } = net.forward();

    let (ea, eh) = (e.a.to_vec(), e.h.to_vec());
    vec![
        line("a₁", "x₁·w₁₁ + x₂·w₂₁ + b₁", a[0], ea[0], None),
        line("a₂", "x₁·w₁₂ + x₂·w₂₂ + b₂", a[1], ea[1], None),
        line("h₁", "tanh a₁", h[0], eh[0], None),
        line("h₂", "tanh a₂", h[1], eh[1], None),
        line("z", "h₁·v₁ + h₂·v₂ + c", z, e.z.item(), None),
        line("ŷ", "σ(z) = 1 / (1 + e⁻ᶻ)", y, e.y.item(), None),
        line(
            "L",
            "−[t·ln ŷ + (1 − t)·ln(1 − ŷ)]",
            loss,
            e.loss.item(),
            None,
        ),
    ]
}

/// The backward pass, from the loss down to the inputs, one chain-rule factor per line.
fn backward_lines(net: &Net, e: &EngineGraph) -> Vec<Line> {
    let Forward { h, y, .. } = net.forward();
    let [x1, x2] = net.x;

    // Each gradient is the one above it times one local derivative.
    let dy = (y - net.t) / (y * (1.0 - y));
    let dz = dy * y * (1.0 - y); // the two factors cancel into ŷ − t
    let dh = [dz * net.v[0], dz * net.v[1]];
    let da = [0, 1].map(|j| dh[j] * (1.0 - h[j] * h[j]));
    // Each input feeds both hidden units, so its gradient is the sum over both paths.
    let dx = [0, 1].map(|i| da[0] * net.w[i][0] + da[1] * net.w[i][1]);

    let rows = [
        ("∂L/∂ŷ", "(ŷ − t) / (ŷ(1 − ŷ))", dy, At::Y),
        ("∂L/∂z", "∂L/∂ŷ · ŷ(1 − ŷ) = ŷ − t", dz, At::Z),
        ("∂L/∂c", "∂L/∂z · 1", dz, At::C),
        ("∂L/∂v₁", "∂L/∂z · h₁", dz * h[0], At::V(0)),
        ("∂L/∂v₂", "∂L/∂z · h₂", dz * h[1], At::V(1)),
        ("∂L/∂h₁", "∂L/∂z · v₁", dh[0], At::H(0)),
        ("∂L/∂h₂", "∂L/∂z · v₂", dh[1], At::H(1)),
        ("∂L/∂a₁", "∂L/∂h₁ · (1 − h₁²)", da[0], At::A(0)),
        ("∂L/∂a₂", "∂L/∂h₂ · (1 − h₂²)", da[1], At::A(1)),
        ("∂L/∂b₁", "∂L/∂a₁ · 1", da[0], At::B(0)),
        ("∂L/∂b₂", "∂L/∂a₂ · 1", da[1], At::B(1)),
        ("∂L/∂w₁₁", "∂L/∂a₁ · x₁", da[0] * x1, At::W(0, 0)),
        ("∂L/∂w₁₂", "∂L/∂a₂ · x₁", da[1] * x1, At::W(0, 1)),
        ("∂L/∂w₂₁", "∂L/∂a₁ · x₂", da[0] * x2, At::W(1, 0)),
        ("∂L/∂w₂₂", "∂L/∂a₂ · x₂", da[1] * x2, At::W(1, 1)),
        ("∂L/∂x₁", "∂L/∂a₁·w₁₁ + ∂L/∂a₂·w₁₂", dx[0], At::X(0)),
        ("∂L/∂x₂", "∂L/∂a₁·w₂₁ + ∂L/∂a₂·w₂₂", dx[1], At::X(1)),
    ];
    let to_line = |(symbol, formula, hand, at): (&str, &str, f64, At)| {
        let numeric = central(&|d| net.loss_nudged(at, d));
        line(symbol, formula, hand, e.grad(at), Some(numeric))
    };
    rows.into_iter().map(to_line).collect()
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = &self.net;
        writeln!(
            f,
            "inputs   x₁ = {}, x₂ = {}, target t = {}",
            n.x[0], n.x[1], n.t
        )?;
        writeln!(
            f,
            "hidden   w₁₁ = {}, w₁₂ = {}, w₂₁ = {}, w₂₂ = {}, b₁ = {}, b₂ = {}",
            n.w[0][0], n.w[0][1], n.w[1][0], n.w[1][1], n.b[0], n.b[1]
        )?;
        writeln!(f, "output   v₁ = {}, v₂ = {}, c = {}", n.v[0], n.v[1], n.c)?;

        writeln!(f, "\nforward pass")?;
        writeln!(
            f,
            "  {:<8} {:<34} {:>10} {:>10}",
            "value", "formula", "by hand", "engine"
        )?;
        for l in &self.forward {
            writeln!(
                f,
                "  {:<8} {:<34} {:>10.6} {:>10.6}",
                l.symbol, l.formula, l.hand, l.engine
            )?;
        }

        writeln!(f, "\nbackward pass (chain rule, loss to inputs)")?;
        writeln!(
            f,
            "  {:<8} {:<34} {:>10} {:>10} {:>10}",
            "gradient", "formula", "by hand", "engine", "finite Δ"
        )?;
        for l in &self.backward {
            let numeric = l.numeric.unwrap_or(f64::NAN);
            writeln!(
                f,
                "  {:<8} {:<34} {:>10.6} {:>10.6} {:>10.6}",
                l.symbol, l.formula, l.hand, l.engine, numeric
            )?;
        }

        writeln!(f)?;
        writeln!(
            f,
            "max |hand − engine|      = {:.1e} (tolerance {ENGINE_TOL:.0e})",
            self.max_engine_diff
        )?;
        write!(
            f,
            "max |hand − finite diff| = {:.1e} (tolerance {NUMERIC_TOL:.0e}, step {FD_EPS:.0e})",
            self.max_numeric_diff
        )
    }
}

/// Column spacing, box size and row positions of the graph figure, in pixels.
const COL: i32 = 184;
const BOX: (i32, i32) = (128, 50);
const ROWS: [i32; 2] = [95, 215];
const MID_ROW: i32 = 155;

/// One node of the figure: its centre, its label and value, and ∂L/∂(node).
struct Node {
    at: (i32, i32),
    name: &'static str,
    value: f64,
    grad: f64,
}

/// The network as a graph, each node with its forward value (black) and its gradient
/// (red), as an SVG document.
pub fn plot_svg(report: &Report) -> Result<String, PlotError> {
    let col = |i: i32| 76 + COL * i;
    let find = |lines: &[Line], s: &str| lines.iter().find(|l| l.symbol == s).map(|l| l.hand);
    let fwd = |s: &str| find(&report.forward, s).unwrap_or(f64::NAN);
    let grad = |s: &str| find(&report.backward, &format!("∂L/∂{s}")).unwrap_or(f64::NAN);
    let node = |at, name, value| Node {
        at,
        name,
        value,
        grad: if name == "L" { 1.0 } else { grad(name) },
    };
    let x = report.net.x;
    let nodes = [
        node((col(0), ROWS[0]), "x₁", x[0]),
        node((col(0), ROWS[1]), "x₂", x[1]),
        node((col(1), ROWS[0]), "a₁", fwd("a₁")),
        node((col(1), ROWS[1]), "a₂", fwd("a₂")),
        node((col(2), ROWS[0]), "h₁", fwd("h₁")),
        node((col(2), ROWS[1]), "h₂", fwd("h₂")),
        node((col(3), MID_ROW), "z", fwd("z")),
        node((col(4), MID_ROW), "ŷ", fwd("ŷ")),
        node((col(5), MID_ROW), "L", fwd("L")),
    ];
    // (from, to, label): indices into `nodes`.
    let edges = [
        (0, 2, "w₁₁"),
        (0, 3, "w₁₂"),
        (1, 2, "w₂₁"),
        (1, 3, "w₂₂"),
        (2, 4, "tanh"),
        (3, 5, "tanh"),
        (4, 6, "v₁"),
        (5, 6, "v₂"),
        (6, 7, "σ"),
        (7, 8, "BCE"),
    ];

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1072, 330)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let title = "Forward values (black) and gradients ∂L/∂· (red), t = ";
        let centre = Pos::new(HPos::Center, VPos::Center);
        let font = |size: i32, color: &'static RGBColor| {
            TextStyle::from(("sans-serif", size).into_font())
                .color(color)
                .pos(centre)
        };
        let title = format!("{title}{}", report.net.t);
        root.draw(&Text::new(title, (536, 24), font(18, &BLACK)))
            .map_err(plot_err)?;
        for &(from, to, label) in &edges {
            draw_edge(&root, &nodes[from], &nodes[to], label, &font(13, &BLUE))?;
        }
        for n in &nodes {
            draw_node(&root, n, &font(14, &BLACK), &font(14, &RED))?;
        }
        let net = &report.net;
        let caption = format!(
            "w = [[{}, {}], [{}, {}]];  b = ({}, {});  v = ({}, {});  c = {}",
            net.w[0][0],
            net.w[0][1],
            net.w[1][0],
            net.w[1][1],
            net.b[0],
            net.b[1],
            net.v[0],
            net.v[1],
            net.c
        );
        root.draw(&Text::new(caption, (536, 300), font(14, &BLACK)))
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// A box with `name = value` above `∂L/∂name = grad`.
fn draw_node(
    area: &Area<'_>,
    n: &Node,
    black: &TextStyle,
    red: &TextStyle,
) -> Result<(), PlotError> {
    let (cx, cy) = n.at;
    let (w, h) = (BOX.0 / 2, BOX.1 / 2);
    let outline = Rectangle::new([(cx - w, cy - h), (cx + w, cy + h)], BLACK.stroke_width(1));
    let fill = Rectangle::new([(cx - w, cy - h), (cx + w, cy + h)], WHITE.filled());
    area.draw(&fill).map_err(plot_err)?;
    area.draw(&outline).map_err(plot_err)?;
    let value = Text::new(
        format!("{} = {:.4}", n.name, n.value),
        (cx, cy - 11),
        black.clone(),
    );
    let grad = Text::new(
        format!("∂L/∂{} = {:.4}", n.name, n.grad),
        (cx, cy + 11),
        red.clone(),
    );
    area.draw(&value).map_err(plot_err)?;
    area.draw(&grad).map_err(plot_err)
}

/// A line from the right side of one box to the left side of the next, with its label.
fn draw_edge(
    area: &Area<'_>,
    a: &Node,
    b: &Node,
    label: &str,
    style: &TextStyle,
) -> Result<(), PlotError> {
    let start = (a.at.0 + BOX.0 / 2, a.at.1);
    let end = (b.at.0 - BOX.0 / 2, b.at.1);
    let gray = RGBColor(120, 120, 120).stroke_width(1);
    area.draw(&PathElement::new([start, end], gray))
        .map_err(plot_err)?;
    // Level edges: label above the middle. Slanted ones: label beside the first third, on
    // the side the line slants away from.
    let (t, dx, dy) = match b.at.1.cmp(&a.at.1) {
        std::cmp::Ordering::Equal => (0.5, 0, -9),
        std::cmp::Ordering::Greater => (0.3, 10, -9),
        std::cmp::Ordering::Less => (0.3, 10, 10),
    };
    let lerp = |p: i32, q: i32| p + ((q - p) as f64 * t).round() as i32;
    let at = (lerp(start.0, end.0) + dx, lerp(start.1, end.1) + dy);
    area.draw(&Text::new(label.to_string(), at, style.clone()))
        .map_err(plot_err)
}
