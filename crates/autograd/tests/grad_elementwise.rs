//! Gradient checks for the elementwise ops: the four broadcasting binaries, the scalar forms,
//! and the unary functions and activations. Forward values are compared with plain `f64`
//! arithmetic on the same numbers.

mod common;

use autograd::Tensor;
use common::{check, leaf, leaf_away_from_zero, random_shape, ravel, rng, uniform_leaf, unravel};
use rand::Rng;

/// A broadcasting binary op and the scalar function it applies.
struct BinaryOp {
    name: &'static str,
    op: fn(&Tensor<f64>, &Tensor<f64>) -> Tensor<f64>,
    reference: fn(f64, f64) -> f64,
}

const BINARY_OPS: [BinaryOp; 4] = [
    BinaryOp {
        name: "add",
        op: |a, b| a.add(b),
        reference: |a, b| a + b,
    },
    BinaryOp {
        name: "sub",
        op: |a, b| a.sub(b),
        reference: |a, b| a - b,
    },
    BinaryOp {
        name: "mul",
        op: |a, b| a.mul(b),
        reference: |a, b| a * b,
    },
    BinaryOp {
        name: "div",
        op: |a, b| a.div(b),
        reference: |a, b| a / b,
    },
];

/// Two operand shapes that broadcast together, and the shape they make.
struct BroadcastCase {
    pattern: &'static str,
    lhs: &'static [usize],
    rhs: &'static [usize],
    out: &'static [usize],
}

const BROADCAST_CASES: [BroadcastCase; 10] = [
    BroadcastCase {
        pattern: "same shape",
        lhs: &[3, 4],
        rhs: &[3, 4],
        out: &[3, 4],
    },
    BroadcastCase {
        pattern: "rank-0 scalar on the right",
        lhs: &[3, 4],
        rhs: &[],
        out: &[3, 4],
    },
    BroadcastCase {
        pattern: "rank-0 scalar on the left",
        lhs: &[],
        rhs: &[2, 3],
        out: &[2, 3],
    },
    BroadcastCase {
        pattern: "one-element vector on the left",
        lhs: &[1],
        rhs: &[2, 3],
        out: &[2, 3],
    },
    BroadcastCase {
        pattern: "rank-0 both sides",
        lhs: &[],
        rhs: &[],
        out: &[],
    },
    BroadcastCase {
        pattern: "(N, C) with a row (C)",
        lhs: &[4, 3],
        rhs: &[3],
        out: &[4, 3],
    },
    BroadcastCase {
        pattern: "row (C) with (N, C)",
        lhs: &[3],
        rhs: &[4, 3],
        out: &[4, 3],
    },
    BroadcastCase {
        pattern: "(N, C) with a column (N, 1)",
        lhs: &[4, 3],
        rhs: &[4, 1],
        out: &[4, 3],
    },
    BroadcastCase {
        pattern: "column (N, 1) with a row (1, C)",
        lhs: &[4, 1],
        rhs: &[1, 3],
        out: &[4, 3],
    },
    BroadcastCase {
        pattern: "(4, 1, 3) with (5, 1)",
        lhs: &[4, 1, 3],
        rhs: &[5, 1],
        out: &[4, 5, 3],
    },
];

/// Where output element `out_idx` reads from an operand of shape `shape`: trailing axes
/// aligned, index 0 on axes of size 1 (the NumPy rule, written out directly).
fn source_index(out_idx: &[usize], shape: &[usize]) -> usize {
    let offset = out_idx.len() - shape.len();
    let idx: Vec<usize> = (0..shape.len())
        .map(|i| {
            if shape[i] == 1 {
                0
            } else {
                out_idx[i + offset]
            }
        })
        .collect();
    ravel(&idx, shape)
}

/// The broadcast result computed one element at a time.
fn broadcast_reference(
    a: &Tensor<f64>,
    b: &Tensor<f64>,
    out: &[usize],
    f: fn(f64, f64) -> f64,
) -> Vec<f64> {
    let n: usize = out.iter().product();
    (0..n)
        .map(|o| {
            let idx = unravel(o, out);
            f(
                a.data()[source_index(&idx, a.shape())],
                b.data()[source_index(&idx, b.shape())],
            )
        })
        .collect()
}

/// Checks forward values and both gradients of every binary op on one pair of shapes.
fn check_binary(pattern: &str, lhs: &[usize], rhs: &[usize], out: &[usize], seed: u64) {
    let mut rng = rng(seed);
    for op in &BINARY_OPS {
        let a = leaf(lhs, &mut rng);
        // Kept away from zero so that div stays smooth within ε.
        let b = leaf_away_from_zero(rhs, 0.5, &mut rng);
        let name = format!("{} [{pattern}]", op.name);

        let y = (op.op)(&a, &b);
        assert_eq!(y.shape(), out, "{name}: output shape");
        let want = broadcast_reference(&a, &b, out, op.reference);
        assert_eq!(y.to_vec(), want, "{name}: forward values");

        check(&name, &[a, b], |t| (op.op)(&t[0], &t[1]));
    }
}

#[test]
fn binary_ops_in_every_broadcast_pattern() {
    for (seed, case) in BROADCAST_CASES.iter().enumerate() {
        check_binary(case.pattern, case.lhs, case.rhs, case.out, seed as u64);
    }
}

/// Derives an operand shape from an output shape: drop some leading axes, and shrink some
/// of the rest to 1, so that the operand broadcasts back to `out`.
fn shrink_to_operand(out: &[usize], rng: &mut impl Rng) -> Vec<usize> {
    let dropped = rng.gen_range(0..out.len());
    out[dropped..]
        .iter()
        .map(|&d| if rng.gen_bool(0.3) { 1 } else { d })
        .collect()
}

#[test]
fn binary_ops_on_random_broadcast_shapes() {
    for seed in 100..124 {
        let mut r = rng(seed);
        let rank = r.gen_range(1..=3);
        let out: Vec<usize> = (0..rank).map(|_| r.gen_range(2..=4)).collect();
        let (lhs, rhs) = (
            shrink_to_operand(&out, &mut r),
            shrink_to_operand(&out, &mut r),
        );
        // The true output can be smaller than `out` where both operands shrank an axis.
        let out = broadcast_of(&lhs, &rhs);
        check_binary(&format!("seed {seed}"), &lhs, &rhs, &out, seed);
    }
}

/// Broadcast shape of two shapes that are known to be compatible.
fn broadcast_of(a: &[usize], b: &[usize]) -> Vec<usize> {
    let rank = a.len().max(b.len());
    let at = |s: &[usize], i: usize| {
        let offset = rank - s.len();
        if i < offset {
            1
        } else {
            s[i - offset]
        }
    };
    (0..rank).map(|i| at(a, i).max(at(b, i))).collect()
}

#[test]
fn operator_overloads_match_the_methods() {
    let mut r = rng(7);
    let a = leaf(&[2, 3], &mut r);
    let b = leaf_away_from_zero(&[3], 0.5, &mut r);
    assert_eq!((&a + &b).to_vec(), a.add(&b).to_vec());
    assert_eq!((&a - &b).to_vec(), a.sub(&b).to_vec());
    assert_eq!((&a * &b).to_vec(), a.mul(&b).to_vec());
    assert_eq!((&a / &b).to_vec(), a.div(&b).to_vec());
    assert_eq!((-&a).to_vec(), a.neg().to_vec());
}

/// A one-input op, the scalar function it applies, and where its input may be drawn from.
struct UnaryOp {
    name: &'static str,
    op: fn(&Tensor<f64>) -> Tensor<f64>,
    reference: fn(f64) -> f64,
    domain: Domain,
}

/// The inputs an op is checked on.
#[derive(Clone, Copy)]
enum Domain {
    /// Any value from N(0, 1).
    Any,
    /// U(0.2, 3): log, sqrt and fractional powers need x > 0, and stay tame away from 0.
    Positive,
    /// N(0, 1) with |x| ≥ 1e-3, clear of a kink at 0.
    AwayFromKink,
}

const UNARY_OPS: [UnaryOp; 16] = [
    UnaryOp {
        name: "add_scalar",
        op: |x| x.add_scalar(1.5),
        reference: |x| x + 1.5,
        domain: Domain::Any,
    },
    UnaryOp {
        name: "sub_scalar",
        op: |x| x.sub_scalar(0.75),
        reference: |x| x - 0.75,
        domain: Domain::Any,
    },
    UnaryOp {
        name: "rsub_scalar",
        op: |x| x.rsub_scalar(2.0),
        reference: |x| 2.0 - x,
        domain: Domain::Any,
    },
    UnaryOp {
        name: "mul_scalar",
        op: |x| x.mul_scalar(-3.0),
        reference: |x| -3.0 * x,
        domain: Domain::Any,
    },
    UnaryOp {
        name: "div_scalar",
        op: |x| x.div_scalar(4.0),
        reference: |x| x / 4.0,
        domain: Domain::Any,
    },
    UnaryOp {
        name: "neg",
        op: |x| x.neg(),
        reference: |x| -x,
        domain: Domain::Any,
    },
    UnaryOp {
        name: "exp",
        op: |x| x.exp(),
        reference: f64::exp,
        domain: Domain::Any,
    },
    UnaryOp {
        name: "log",
        op: |x| x.log(),
        reference: f64::ln,
        domain: Domain::Positive,
    },
    UnaryOp {
        name: "sqrt",
        op: |x| x.sqrt(),
        reference: f64::sqrt,
        domain: Domain::Positive,
    },
    UnaryOp {
        name: "powf(2.5)",
        op: |x| x.powf(2.5),
        reference: |x| x.powf(2.5),
        domain: Domain::Positive,
    },
    UnaryOp {
        name: "powf(-1.5)",
        op: |x| x.powf(-1.5),
        reference: |x| x.powf(-1.5),
        domain: Domain::Positive,
    },
    UnaryOp {
        name: "tanh",
        op: |x| x.tanh(),
        reference: f64::tanh,
        domain: Domain::Any,
    },
    UnaryOp {
        name: "sigmoid",
        op: |x| x.sigmoid(),
        reference: |x| 1.0 / (1.0 + (-x).exp()),
        domain: Domain::Any,
    },
    UnaryOp {
        name: "relu",
        op: |x| x.relu(),
        reference: |x| x.max(0.0),
        domain: Domain::AwayFromKink,
    },
    UnaryOp {
        name: "leaky_relu(0.2)",
        op: |x| x.leaky_relu(0.2),
        reference: |x| if x > 0.0 { x } else { 0.2 * x },
        domain: Domain::AwayFromKink,
    },
    UnaryOp {
        name: "leaky_relu(0.01)",
        op: |x| x.leaky_relu(0.01),
        reference: |x| if x > 0.0 { x } else { 0.01 * x },
        domain: Domain::AwayFromKink,
    },
];

#[test]
fn unary_ops_on_random_shapes() {
    for (k, u) in UNARY_OPS.iter().enumerate() {
        for seed in 0..4 {
            let mut r = rng(1000 * k as u64 + seed);
            let rank = r.gen_range(0..=3);
            let shape = random_shape(&mut r, rank, 4);
            let x = match u.domain {
                Domain::Any => leaf(&shape, &mut r),
                Domain::Positive => uniform_leaf(&shape, 0.2, 3.0, &mut r),
                Domain::AwayFromKink => leaf_away_from_zero(&shape, 1e-3, &mut r),
            };

            let y = (u.op)(&x);
            assert_eq!(y.shape(), x.shape(), "{}: output shape", u.name);
            let want: Vec<f64> = x.data().iter().map(|&v| (u.reference)(v)).collect();
            common::assert_close(u.name, &y.to_vec(), &want, 1e-15);

            check(u.name, &[x], |t| (u.op)(&t[0]));
        }
    }
}

#[test]
fn relu_family_takes_both_branches() {
    // Half the inputs on each side of the kink, so both branches of each rule are checked.
    let x = Tensor::<f64>::from_vec(vec![-2.0, -0.3, -1e-3, 1e-3, 0.4, 1.7], &[2, 3]);
    let x = x.requires_grad_(true);
    check("relu", [x.clone()], |t| t[0].relu());
    check("leaky_relu", [x.clone()], |t| t[0].leaky_relu(0.1));

    // The checker leaves its own gradient in the leaf; start afresh.
    x.zero_grad();
    x.relu().sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
}

#[test]
fn sigmoid_is_stable_for_large_inputs() {
    let x = Tensor::<f64>::from_vec(vec![-800.0, -40.0, 40.0, 800.0], &[4]).requires_grad_(true);
    let y = x.sigmoid();
    assert!(y.data().iter().all(|v| v.is_finite()), "{:?}", y);
    assert_eq!(y.data()[3], 1.0);
    check("sigmoid (saturated)", &[x], |t| t[0].sigmoid());
}
