//! The engine around the ops: accumulation, no_grad and detach, release of the graph,
//! f32 against f64, deterministic reductions, shape errors, and the gradient checker itself.

mod common;

use autograd::kernels::gemm::GemmScalar;
use autograd::{gradcheck, is_grad_enabled, no_grad, no_grad_guard, Float, GradFn, Tensor};
use common::{leaf, rng};

/// x = 2, y = 3, z = x·y + x: the worked example of the crate docs.
#[test]
fn worked_example_by_hand() {
    let x = Tensor::<f64>::scalar(2.0).requires_grad_(true);
    let y = Tensor::<f64>::scalar(3.0).requires_grad_(true);
    let z = x.mul(&y).add(&x);
    assert_eq!(z.item(), 8.0);

    z.backward();
    // ∂z/∂x = y + 1 (once through the product, once directly), ∂z/∂y = x.
    assert_eq!(x.grad().unwrap().item(), 4.0);
    assert_eq!(y.grad().unwrap().item(), 2.0);
}

#[test]
fn leaves_accumulate_across_backward_calls_until_zeroed() {
    let x = Tensor::<f64>::from_vec(vec![1.0, -2.0], &[2]).requires_grad_(true);

    // y = Σ x³ twice over: the gradient 3x² is added, not overwritten.
    x.powf(3.0).sum().backward();
    x.powf(3.0).sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), [6.0, 24.0]);

    x.zero_grad();
    x.powf(3.0).sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), [3.0, 12.0]);
}

/// A weight's gradient is written by its GEMM straight into the gradient buffer: β = 1 adds
/// to what is there, and after `zero_grad` the same buffer is overwritten (β = 0), so stale
/// values never leak into the new gradient.
#[test]
fn weight_gradients_accumulate_in_place_and_reuse_their_buffer() {
    // y = x·W + b with x = [[1, 2]], so ∂(Σy)/∂W = xᵀ·1 = [[1, 1], [2, 2]].
    let x = Tensor::<f64>::from_vec(vec![1.0, 2.0], &[1, 2]);
    let w = Tensor::<f64>::from_vec(vec![0.5, -1.0, 3.0, 0.25], &[2, 2]).requires_grad_(true);
    let b = Tensor::<f64>::zeros(&[2]).requires_grad_(true);
    let loss = || x.linear(&w, &b).sum();

    loss().backward();
    loss().backward();
    assert_eq!(w.grad().unwrap().to_vec(), [2.0, 2.0, 4.0, 4.0]);
    let first = w.grad_ref().as_ref().unwrap().as_ptr();

    w.zero_grad();
    assert!(w.grad().is_none());
    loss().backward();
    assert_eq!(w.grad().unwrap().to_vec(), [1.0, 1.0, 2.0, 2.0]);
    assert_eq!(
        w.grad_ref().as_ref().unwrap().as_ptr(),
        first,
        "buffer reused"
    );
}

#[test]
fn intermediate_gradients_are_kept_only_when_asked() {
    let x = Tensor::<f64>::from_vec(vec![0.5, 1.5], &[2]).requires_grad_(true);
    let (h, kept) = (x.mul_scalar(2.0), x.mul_scalar(3.0));
    kept.retain_grad();
    h.add(&kept).sum().backward();

    assert!(h.grad().is_none(), "freed once passed back");
    assert_eq!(kept.grad().unwrap().to_vec(), [1.0, 1.0]);
    assert_eq!(x.grad().unwrap().to_vec(), [5.0, 5.0]);
}

#[test]
fn frozen_parameters_still_pass_gradient_to_the_input() {
    // As in a GAN's generator step: the discriminator's weights are frozen, but the gradient
    // reaches the generated images that went into it.
    let mut r = rng(3);
    let w = leaf(&[3, 2], &mut r);
    w.set_requires_grad(false);
    let x = leaf(&[4, 3], &mut r);

    x.matmul(&w).sum().backward();
    assert!(w.grad().is_none());
    // ∂(Σ x·W)/∂x[i][j] = Σₖ W[j][k]: each row of W summed.
    let row_sums: Vec<f64> = w.to_vec().chunks(2).map(|r| r[0] + r[1]).collect();
    let want: Vec<f64> = (0..4).flat_map(|_| row_sums.clone()).collect();
    common::assert_close("input gradient", &x.grad().unwrap().to_vec(), &want, 1e-15);
}

#[test]
fn no_grad_records_nothing() {
    let mut r = rng(4);
    let (x, w) = (leaf(&[2, 3], &mut r), leaf(&[3, 2], &mut r));

    let y = no_grad(|| x.matmul(&w).tanh().sum());
    assert!(!y.requires_grad());
    assert_eq!(x.handle_count(), 1, "no recorded op holds x");
    y.backward();
    assert!(x.grad().is_none());
    assert!(is_grad_enabled(), "recording resumes after the scope");

    {
        let _outer = no_grad_guard();
        drop(no_grad_guard());
        assert!(
            !is_grad_enabled(),
            "an inner guard restores the outer setting, off"
        );
        assert!(!x.add(&x).requires_grad());
    }
    assert!(is_grad_enabled());
    assert!(x.add(&x).requires_grad());
}

#[test]
fn detach_cuts_the_graph() {
    let x = Tensor::<f64>::from_vec(vec![1.5, -2.0, 3.0], &[3]).requires_grad_(true);
    let c = x.detach();
    assert!(!c.requires_grad());
    assert_eq!(c.to_vec(), x.to_vec());

    // y = Σ c·x with c held constant: ∂y/∂x = c, not the 2x of Σ x·x.
    c.mul(&x).sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), [1.5, -2.0, 3.0]);
    assert!(c.grad().is_none());

    // The copy is independent of the original's buffer.
    c.data_mut()[0] = 9.0;
    assert_eq!(x.data()[0], 1.5);
}

/// A two-layer perceptron with a loss, generic over the element type.
fn mlp<T: Float + GemmScalar>(p: &[Tensor<T>], x: &Tensor<T>, t: &Tensor<T>) -> Tensor<T> {
    let h = x.matmul(&p[0]).add(&p[1]).tanh();
    let h = h.matmul(&p[2]).add(&p[3]).leaky_relu(T::from_f64(0.2));
    h.matmul(&p[4]).bce_with_logits(t)
}

/// W₁ (4 × 16), b₁, W₂ (16 × 8), b₂, W₃ (8 × 1), with the scale of a Xavier init.
fn mlp_params(seed: u64) -> Vec<Tensor<f64>> {
    let mut r = rng(seed);
    let shapes: [&[usize]; 5] = [&[4, 16], &[16], &[16, 8], &[8], &[8, 1]];
    shapes
        .iter()
        .map(|s| {
            let std = (1.0 / s[0] as f64).sqrt();
            Tensor::rand_normal(s, 0.0, std, &mut r).requires_grad_(true)
        })
        .collect()
}

fn mlp_batch(seed: u64) -> (Tensor<f64>, Tensor<f64>) {
    let mut r = rng(seed);
    let x = Tensor::rand_normal(&[16, 4], 0.0, 1.0, &mut r);
    let t = Tensor::rand_uniform(&[16, 1], 0.0, 1.0, &mut r);
    t.data_mut()
        .iter_mut()
        .for_each(|v: &mut f64| *v = v.round());
    (x, t)
}

#[test]
fn f32_agrees_with_f64_within_f32_precision() {
    let p64 = mlp_params(5);
    let (x64, t64) = mlp_batch(6);
    let p32: Vec<Tensor<f32>> = p64.iter().map(|p| p.cast().requires_grad_(true)).collect();
    let (x32, t32) = (x64.cast::<f32>(), t64.cast::<f32>());

    let (l64, l32) = (mlp(&p64, &x64, &t64), mlp(&p32, &x32, &t32));
    let tol = 16.0 * f32::EPSILON as f64;
    let (a, b) = (l32.item() as f64, l64.item());
    assert!((a - b).abs() <= tol * b.abs(), "loss: f32 {a} vs f64 {b}");

    l64.backward();
    l32.backward();
    for (i, (p, q)) in p32.iter().zip(&p64).enumerate() {
        let (g32, g64) = (p.grad().unwrap().cast::<f64>(), q.grad().unwrap());
        // Relative to the tensor's largest gradient: a tiny entry is a sum of larger terms
        // that cancel, and inherits their rounding error.
        let scale = g64.data().iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (j, (a, b)) in g32.data().iter().zip(g64.data().iter()).enumerate() {
            let err = (a - b).abs();
            assert!(err <= tol * scale, "param {i} [{j}]: f32 {a} vs f64 {b}");
        }
    }
}

#[test]
fn backward_releases_the_graph() {
    let p = mlp_params(7);
    let (x, t) = mlp_batch(8);
    let loss = mlp(&p, &x, &t);
    assert!(
        p[0].handle_count() > 1,
        "while the graph is alive it holds W₁"
    );

    // The graph is released by backward itself, even while `loss` lives on.
    loss.backward();
    for (i, w) in p.iter().enumerate() {
        assert_eq!(w.handle_count(), 1, "param {i} still held after backward");
    }
    assert_eq!(x.handle_count(), 1, "the input is released too");
}

#[test]
fn dropping_an_unused_graph_releases_it() {
    let p = mlp_params(9);
    let (x, t) = mlp_batch(10);
    let loss = mlp(&p, &x, &t);
    drop(loss);
    assert!(p.iter().all(|w| w.handle_count() == 1));
}

#[test]
fn graph_does_not_grow_over_two_thousand_steps() {
    let p: Vec<Tensor<f32>> = mlp_params(11)
        .iter()
        .map(|p| p.cast().requires_grad_(true))
        .collect();
    let (x, t) = mlp_batch(12);
    let (x, t) = (x.cast::<f32>(), t.cast::<f32>());
    let lr = 0.1;
    let mut losses = vec![];

    for step in 0..2000 {
        let loss = mlp(&p, &x, &t);
        loss.backward();
        losses.push(loss.item());
        drop(loss);

        // Plain SGD, outside the graph.
        for (i, w) in p.iter().enumerate() {
            assert_eq!(w.handle_count(), 1, "step {step}: param {i} still held");
            let g = w.grad().unwrap();
            let mut data = w.data_mut();
            data.iter_mut()
                .zip(g.data().iter())
                .for_each(|(v, g)| *v -= lr * g);
            drop(data);
            w.zero_grad();
        }
    }
    assert!(
        losses[1999] < 0.5 * losses[0],
        "training made progress: {losses:?}"
    );
}

/// Runs `f` inside a rayon pool of `threads` threads.
fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(f)
}

#[test]
fn reductions_are_deterministic_across_thread_counts() {
    // Values of mixed magnitude, so that a different summation order changes the rounding.
    let n = 1 << 20;
    let mut r = rng(13);
    let data = Tensor::<f32>::rand_normal(&[n], 0.0, 1.0, &mut r).to_vec();
    let data: Vec<f32> = data
        .iter()
        .enumerate()
        .map(|(i, v)| v * (1 + i % 997) as f32)
        .collect();

    let run = |threads| {
        in_pool(threads, || {
            let x = Tensor::from_vec(data.clone(), &[n]);
            (x.sum().item().to_bits(), x.mean().item().to_bits())
        })
    };
    let one = run(1);
    assert_eq!(run(2), one, "sum and mean bits, 1 vs 2 threads");
    assert_eq!(run(3), one, "sum and mean bits, 1 vs 3 threads");

    // And the sum is right to f32 precision.
    let exact: f64 = data.iter().map(|&v| v as f64).sum();
    let got = f32::from_bits(one.0) as f64;
    let mass: f64 = data.iter().map(|&v| v.abs() as f64).sum();
    assert!((got - exact).abs() <= 1e-6 * mass, "sum {got} vs {exact}");
}

#[test]
fn matmul_is_deterministic_across_thread_counts() {
    // Large enough (256 × 64 × 300 multiply-adds) for the row-blocked parallel path.
    let mut r = rng(14);
    let a = Tensor::<f32>::rand_normal(&[256, 64], 0.0, 1.0, &mut r).to_vec();
    let b = Tensor::<f32>::rand_normal(&[64, 300], 0.0, 1.0, &mut r).to_vec();
    let run = |threads| {
        in_pool(threads, || {
            let a = Tensor::from_vec(a.clone(), &[256, 64]).requires_grad_(true);
            let b = Tensor::from_vec(b.clone(), &[64, 300]);
            let c = a.matmul(&b);
            c.mul(&c).sum().backward();
            let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            (bits(c.to_vec()), bits(a.grad().unwrap().to_vec()))
        })
    };
    assert!(
        run(1) == run(2),
        "matmul and its gradient differ between 1 and 2 threads"
    );
}

/// y = x + b for x (rows × cols) and b (cols), with a deliberately wrong backward for b:
/// it takes the first row of the upstream gradient instead of summing over the rows.
fn bias_add_bad(x: &Tensor<f64>, b: &Tensor<f64>) -> Tensor<f64> {
    let (rows, cols) = (x.shape()[0], x.shape()[1]);
    let y: Vec<f64> = (0..rows * cols)
        .map(|i| x.data()[i] + b.data()[i % cols])
        .collect();
    let gf = GradFn::new(
        "bias_add_bad",
        vec![x.clone(), b.clone()],
        move |inp, _, g| {
            inp[0].accumulate_grad(g);
            inp[1].accumulate_grad(&g[..cols]);
        },
    );
    Tensor::from_op(vec![rows, cols], y, gf)
}

#[test]
fn wrong_broadcast_reduction_is_caught() {
    let mut r = rng(15);
    let (x, b) = (leaf(&[3, 4], &mut r), leaf(&[4], &mut r));
    let err = gradcheck("bias_add_bad", &[x.clone(), b.clone()], |t| {
        bias_add_bad(&t[0], &t[1])
    })
    .unwrap_err();

    // x's gradient is right; every element of b's is wrong, and the first is reported.
    assert_eq!(
        (err.op.as_str(), err.input, &err.index[..]),
        ("bias_add_bad", 1, &[0][..])
    );
    assert_eq!(err.failures, 4);
    assert!((err.analytic - err.numeric).abs() > err.tolerance);
    assert!(err.worst_error >= (err.analytic - err.numeric).abs());

    // The message names the op, the input, the index and both values.
    let msg = err.to_string();
    for part in [
        "bias_add_bad".to_string(),
        "input 1".to_string(),
        "[0]".to_string(),
        format!("{:.9e}", err.analytic),
        format!("{:.9e}", err.numeric),
    ] {
        assert!(msg.contains(&part), "{part:?} missing from: {msg}");
    }

    // The same op with the sum over rows passes.
    let report = gradcheck("bias_add", &[x, b], |t| t[0].add(&t[1])).unwrap();
    assert_eq!(report.checked, 12 + 4);
}

#[test]
#[should_panic(expected = "gradcheck offset_bad: zero upstream gradient")]
fn rule_that_ignores_the_upstream_gradient_is_caught() {
    let x = Tensor::<f64>::from_vec(vec![0.5, 2.0], &[2]).requires_grad_(true);
    let _ = gradcheck("offset_bad", &[x], |t| {
        let gf = GradFn::new("offset_bad", vec![t[0].clone()], |inp, _, g| {
            // Deliberately wrong: g + 1 where g alone is right.
            inp[0].accumulate_grad_vec(g.iter().map(|g| g + 1.0).collect());
        });
        Tensor::from_op(vec![2], t[0].to_vec(), gf)
    });
}

#[test]
fn constant_inputs_are_held_fixed() {
    let mut r = rng(16);
    let x = leaf(&[2, 3], &mut r);
    let t = Tensor::<f64>::rand_uniform(&[2, 3], 0.0, 1.0, &mut r);
    let report = gradcheck("bce_with_logits", &[x, t], |p| p[0].bce_with_logits(&p[1])).unwrap();
    assert_eq!(report.checked, 6, "only x is perturbed");
}

fn zeros(shape: &[usize]) -> Tensor<f64> {
    Tensor::zeros(shape)
}

#[test]
#[should_panic(expected = "add: lhs is 2 × 3 but rhs is 4")]
fn add_names_both_shapes() {
    zeros(&[2, 3]).add(&zeros(&[4]));
}

#[test]
#[should_panic(expected = "sub: lhs is 2 × 3 but rhs is 3 × 2")]
fn sub_names_both_shapes() {
    zeros(&[2, 3]).sub(&zeros(&[3, 2]));
}

#[test]
#[should_panic(expected = "mul: lhs is 4 × 1 × 3 but rhs is 5 × 2")]
fn mul_names_both_shapes() {
    zeros(&[4, 1, 3]).mul(&zeros(&[5, 2]));
}

#[test]
#[should_panic(expected = "div: lhs is 3 but rhs is 2")]
fn div_names_both_shapes() {
    zeros(&[3]).div(&zeros(&[2]));
}

#[test]
#[should_panic(expected = "matmul: lhs is 3 × 4 but rhs is 5 × 2")]
fn matmul_names_both_shapes() {
    zeros(&[3, 4]).matmul(&zeros(&[5, 2]));
}

#[test]
#[should_panic(expected = "matmul: lhs is 2 × 3 × 4 but rhs is 3 × 4 × 5")]
fn batched_matmul_names_both_shapes() {
    zeros(&[2, 3, 4]).matmul(&zeros(&[3, 4, 5]));
}

#[test]
#[should_panic(expected = "matmul: lhs is 4 but rhs is 4 × 2")]
fn matmul_rejects_a_vector() {
    zeros(&[4]).matmul(&zeros(&[4, 2]));
}

#[test]
#[should_panic(expected = "mse: lhs is 2 × 3 but rhs is 3 × 2")]
fn mse_names_both_shapes() {
    zeros(&[2, 3]).mse(&zeros(&[3, 2]));
}

#[test]
#[should_panic(expected = "bce: lhs is 4 but rhs is 4 × 1")]
fn bce_names_both_shapes() {
    zeros(&[4]).bce(&zeros(&[4, 1]));
}

#[test]
#[should_panic(expected = "bce_with_logits: lhs is 4 × 1 but rhs is 4")]
fn bce_with_logits_names_both_shapes() {
    zeros(&[4, 1]).bce_with_logits(&zeros(&[4]));
}

#[test]
#[should_panic(expected = "concat: lhs is 2 × 3 but rhs is 2 × 4")]
fn concat_names_both_shapes() {
    Tensor::concat(&[zeros(&[2, 3]), zeros(&[2, 4])], 0);
}

#[test]
#[should_panic(expected = "reshape: lhs is 2 × 3 but rhs is 4 × 2")]
fn reshape_names_both_shapes() {
    zeros(&[2, 3]).reshape(&[4, 2]);
}

#[test]
#[should_panic(expected = "sum_axes: input is 2 × 3 (axis 2 is out of range)")]
fn reduction_axis_out_of_range() {
    zeros(&[2, 3]).sum_axes(&[2], false);
}

#[test]
#[should_panic(expected = "backward: input is 2 × 3")]
fn backward_needs_a_scalar() {
    zeros(&[2, 3]).requires_grad_(true).backward();
}

#[test]
#[should_panic(expected = "slice: input is 3 × 4 (range 2..5 on axis 1 of size 4)")]
fn slice_past_the_end() {
    zeros(&[3, 4]).slice(1, 2, 5);
}

#[test]
#[should_panic(expected = "permute: input is 2 × 3 ([0, 0] is not a permutation of its axes)")]
fn permute_needs_a_permutation() {
    zeros(&[2, 3]).permute(&[0, 0]);
}
