//! Gradient checks for matrix products, the three losses, and composed graphs (small MLPs,
//! and tensors used more than once so that accumulation is exercised).

mod common;

use autograd::Tensor;
use common::{assert_close, check, leaf, random_shape, rng, uniform_leaf};
use rand::Rng;

/// C = A·B by the textbook triple loop, for row-major A (m × k) and B (k × n).
fn matmul_reference(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

/// The sizes of one product: (batch ×) m × k times (batch ×) k × n.
#[derive(Debug)]
struct MatmulCase {
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
}

impl MatmulCase {
    fn random(seed: u64) -> Self {
        let mut r = rng(seed);
        let [batch, m, k, n] = random_shape(&mut r, 4, 5)[..] else {
            unreachable!()
        };
        MatmulCase { batch, m, k, n }
    }
}

#[test]
fn matmul_2d() {
    for seed in 0..8 {
        let MatmulCase { m, k, n, .. } = MatmulCase::random(seed);
        let mut r = rng(seed);
        let (a, b) = (leaf(&[m, k], &mut r), leaf(&[k, n], &mut r));

        let c = a.matmul(&b);
        assert_eq!(c.shape(), [m, n]);
        let want = matmul_reference(&a.data(), &b.data(), m, k, n);
        assert_close("matmul", &c.to_vec(), &want, 1e-14);

        check(&format!("matmul {m}×{k}·{k}×{n}"), &[a, b], |t| {
            t[0].matmul(&t[1])
        });
    }
}

#[test]
fn linear_is_matmul_plus_bias() {
    for seed in 20..26 {
        let MatmulCase { m, k, n, .. } = MatmulCase::random(seed);
        let mut r = rng(seed);
        let (x, w, b) = (
            leaf(&[m, k], &mut r),
            leaf(&[k, n], &mut r),
            leaf(&[n], &mut r),
        );

        let y = x.linear(&w, &b);
        assert_eq!(y.shape(), [m, n]);
        let mut want = matmul_reference(&x.data(), &w.data(), m, k, n);
        for (i, v) in want.iter_mut().enumerate() {
            *v += b.data()[i % n];
        }
        assert_close("linear", &y.to_vec(), &want, 1e-14);

        check(
            &format!("linear {m}×{k}·{k}×{n} + {n}"),
            &[x, w, b],
            |t| t[0].linear(&t[1], &t[2]),
        );
    }
}

#[test]
#[should_panic(expected = "linear")]
fn linear_rejects_a_bias_of_the_wrong_length() {
    let x = Tensor::<f64>::zeros(&[2, 3]);
    let w = Tensor::<f64>::zeros(&[3, 4]);
    x.linear(&w, &Tensor::zeros(&[3]));
}

#[test]
fn matmul_batched() {
    for seed in 10..16 {
        let case = MatmulCase::random(seed);
        let MatmulCase { batch, m, k, n } = case;
        let mut r = rng(seed);
        let (a, b) = (leaf(&[batch, m, k], &mut r), leaf(&[batch, k, n], &mut r));

        let c = a.matmul(&b);
        assert_eq!(c.shape(), [batch, m, n]);
        for i in 0..batch {
            let ai = &a.data()[i * m * k..(i + 1) * m * k];
            let bi = &b.data()[i * k * n..(i + 1) * k * n];
            let ci = &c.data()[i * m * n..(i + 1) * m * n];
            assert_close(
                "batched matmul",
                ci,
                &matmul_reference(ai, bi, m, k, n),
                1e-14,
            );
        }

        check(&format!("batched matmul {case:?}"), &[a, b], |t| {
            t[0].matmul(&t[1])
        });
    }
}

#[test]
fn matmul_batched_with_shared_rhs() {
    for seed in 20..26 {
        let case = MatmulCase::random(seed);
        let MatmulCase { batch, m, k, n } = case;
        let mut r = rng(seed);
        let (a, b) = (leaf(&[batch, m, k], &mut r), leaf(&[k, n], &mut r));

        // Every batch entry uses the same B, so B's gradient sums over the batch.
        let c = a.matmul(&b);
        assert_eq!(c.shape(), [batch, m, n]);
        let want = matmul_reference(&a.data(), &b.data(), batch * m, k, n);
        assert_close("shared-rhs matmul", &c.to_vec(), &want, 1e-14);

        check(&format!("shared-rhs matmul {case:?}"), &[a, b], |t| {
            t[0].matmul(&t[1])
        });
    }
}

#[test]
fn matmul_with_one_constant_operand() {
    let mut r = rng(30);
    let a = leaf(&[3, 4], &mut r);
    let b = Tensor::<f64>::rand_normal(&[4, 2], 0.0, 1.0, &mut r);
    check("matmul, constant rhs", &[a.clone(), b.clone()], |t| {
        t[0].matmul(&t[1])
    });
    assert!(b.grad().is_none(), "a constant receives no gradient");

    let (a, b) = (a.detach(), b.requires_grad_(true));
    check("matmul, constant lhs", &[a, b], |t| t[0].matmul(&t[1]));
}

/// −[t ln p + (1 − t) ln(1 − p)], one element of binary cross-entropy.
fn bce_term(p: f64, t: f64) -> f64 {
    -(t * p.ln() + (1.0 - t) * (1.0 - p).ln())
}

#[test]
fn bce_on_probabilities() {
    for seed in 0..4 {
        let mut r = rng(seed);
        let shape = random_shape(&mut r, 2, 4);
        // Well inside (ε, 1 − ε), where the clamp is inactive.
        let p = uniform_leaf(&shape, 0.05, 0.95, &mut r);
        let hard = seed % 2 == 0;
        let t = Tensor::<f64>::rand_uniform(&shape, 0.0, 1.0, &mut r);
        if hard {
            t.data_mut().iter_mut().for_each(|v| *v = v.round());
        }

        let n = p.numel() as f64;
        let (ps, ts) = (p.to_vec(), t.to_vec());
        let want = ps
            .iter()
            .zip(&ts)
            .map(|(&p, &t)| bce_term(p, t))
            .sum::<f64>()
            / n;
        assert_close("bce", &p.bce(&t).to_vec(), &[want], 1e-14);

        check(
            &format!("bce (hard targets: {hard})"),
            &[p, t.clone()],
            |x| x[0].bce(&t),
        );
    }
}

#[test]
fn bce_clamps_saturated_probabilities() {
    // p = 0 with t = 1 would cost −ln 0 = ∞; the clamp makes it −ln ε ≈ 16.1 instead.
    let p = Tensor::<f64>::from_vec(vec![0.0, 1.0, 0.5], &[3]).requires_grad_(true);
    let t = Tensor::<f64>::from_vec(vec![1.0, 0.0, 1.0], &[3]);
    let loss = p.bce(&t);
    let eps = autograd::BCE_EPS;
    let want = (bce_term(eps, 1.0) + bce_term(1.0 - eps, 0.0) + bce_term(0.5, 1.0)) / 3.0;
    assert_close("clamped bce", &loss.to_vec(), &[want], 1e-12);

    loss.backward();
    let g = p.grad().unwrap().to_vec();
    assert_eq!(g[..2], [0.0, 0.0], "no gradient where the clamp is active");
    assert_close("bce grad", &g[2..], &[(0.5 - 1.0) / 0.25 / 3.0], 1e-14);
}

#[test]
fn bce_with_logits() {
    for seed in 0..4 {
        let mut r = rng(seed);
        let shape = random_shape(&mut r, 2, 4);
        let x = Tensor::<f64>::rand_normal(&shape, 0.0, 3.0, &mut r).requires_grad_(true);
        let t = Tensor::<f64>::rand_uniform(&shape, 0.0, 1.0, &mut r);

        // The same value as σ then BCE, for logits small enough that σ does not saturate.
        let sigma = |x: f64| 1.0 / (1.0 + (-x).exp());
        let n = x.numel() as f64;
        let (xs, ts) = (x.to_vec(), t.to_vec());
        let terms = xs.iter().zip(&ts).map(|(&x, &t)| bce_term(sigma(x), t));
        let want = terms.sum::<f64>() / n;
        assert_close(
            "bce_with_logits",
            &x.bce_with_logits(&t).to_vec(),
            &[want],
            1e-12,
        );

        check("bce_with_logits", &[x, t.clone()], |p| {
            p[0].bce_with_logits(&t)
        });
    }
}

#[test]
fn bce_with_logits_is_finite_for_large_logits() {
    let x = Tensor::<f64>::from_vec(vec![-60.0, 60.0, -800.0, 800.0], &[4]).requires_grad_(true);
    let t = Tensor::<f64>::from_vec(vec![1.0, 0.0, 0.0, 1.0], &[4]);

    // Wrong by 60 twice, right by a mile twice: L = (60 + 60 + 0 + 0) / 4.
    assert_close("loss", &x.bce_with_logits(&t).to_vec(), &[30.0], 1e-12);
    check("bce_with_logits (large)", &[x, t.clone()], |p| {
        p[0].bce_with_logits(&t)
    });
}

#[test]
fn mse_on_both_sides() {
    for seed in 0..4 {
        let mut r = rng(seed);
        let rank = r.gen_range(1..=3);
        let shape = random_shape(&mut r, rank, 4);
        let (a, b) = (leaf(&shape, &mut r), leaf(&shape, &mut r));

        let (xs, ys) = (a.to_vec(), b.to_vec());
        let squares = xs.iter().zip(&ys).map(|(x, y)| (x - y) * (x - y));
        let want = squares.sum::<f64>() / a.numel() as f64;
        assert_close("mse", &a.mse(&b).to_vec(), &[want], 1e-14);

        check("mse", &[a, b], |t| t[0].mse(&t[1]));
    }
}

/// Inputs and parameters of a two-layer perceptron: x (batch × d_in), W₁, b₁, W₂, b₂.
fn mlp_params(seed: u64, batch: usize, d_in: usize, hidden: usize) -> Vec<Tensor<f64>> {
    let mut r = rng(seed);
    let scale = (1.0 / d_in as f64).sqrt();
    vec![
        leaf(&[batch, d_in], &mut r),
        Tensor::rand_normal(&[d_in, hidden], 0.0, scale, &mut r).requires_grad_(true),
        leaf(&[hidden], &mut r),
        Tensor::rand_normal(&[hidden, 1], 0.0, scale, &mut r).requires_grad_(true),
        leaf(&[1], &mut r),
    ]
}

#[test]
fn mlp_with_each_loss() {
    let t = Tensor::<f64>::from_vec(vec![1.0, 0.0, 1.0, 1.0, 0.0], &[5, 1]);
    let p = mlp_params(1, 5, 4, 6);

    // The input x also requires a gradient: a GAN's generator learns through it.
    check("mlp, leaky_relu + bce_with_logits", &p, |p| {
        let h = p[0].matmul(&p[1]).add(&p[2]).leaky_relu(0.2);
        h.matmul(&p[3]).add(&p[4]).bce_with_logits(&t)
    });
    check("mlp, tanh + sigmoid + bce", &p, |p| {
        let h = p[0].matmul(&p[1]).add(&p[2]).tanh();
        h.matmul(&p[3]).add(&p[4]).sigmoid().bce(&t)
    });
    check("mlp, relu + mse", &p, |p| {
        let h = p[0].matmul(&p[1]).add(&p[2]).relu();
        h.matmul(&p[3]).add(&p[4]).mse(&t)
    });
}

#[test]
fn tensors_used_twice_accumulate() {
    let mut r = rng(2);
    let x = leaf(&[3, 4], &mut r);
    let w = Tensor::<f64>::rand_normal(&[4, 4], 0.0, 0.5, &mut r).requires_grad_(true);

    // W appears in both layers, x in the first layer and in the loss.
    check("shared weight, reused input", &[x, w], |p| {
        let h = p[0].matmul(&p[1]).tanh();
        let out = h.matmul(&p[1]).add(&p[0]);
        out.mse(&p[0].mul_scalar(0.5)).add(&p[0].mul(&p[0]).mean())
    });
}
