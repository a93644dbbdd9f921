//! Convolution, transposed convolution and batch norm: gradient checks in f64, the im2col
//! path against the direct loops, the adjoint identity, batch-norm statistics, and the
//! shape errors.

use autograd::kernels::im2col::{conv2d_naive, conv_transpose2d_naive};
use autograd::{gradcheck, Conv2dGeometry, FusedActivation, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One convolution test case. For conv2d, h × w is the input; for conv_transpose2d it is the
/// input too, and `output_padding` is used (conv2d cases leave it 0).
#[derive(Clone, Copy, Debug)]
struct ConvCase {
    batch: usize,
    c_in: usize,
    c_out: usize,
    /// (kh, kw)
    kernel: (usize, usize),
    stride: usize,
    padding: usize,
    h: usize,
    w: usize,
    output_padding: usize,
}

impl ConvCase {
    /// x: batch × c_in × h × w.
    fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.c_in, self.h, self.w]
    }

    /// conv2d's weight, c_out × c_in × kh × kw.
    fn conv_weight_shape(&self) -> [usize; 4] {
        [self.c_out, self.c_in, self.kernel.0, self.kernel.1]
    }

    /// conv_transpose2d's weight, c_in × c_out × kh × kw (PyTorch's layout).
    fn transpose_weight_shape(&self) -> [usize; 4] {
        [self.c_in, self.c_out, self.kernel.0, self.kernel.1]
    }

    /// The geometry of conv2d on this case.
    fn conv_geometry(&self) -> Conv2dGeometry {
        Conv2dGeometry {
            batch: self.batch,
            c_in: self.c_in,
            c_out: self.c_out,
            h: self.h,
            w: self.w,
            kh: self.kernel.0,
            kw: self.kernel.1,
            stride: self.stride,
            padding: self.padding,
        }
    }

    /// The geometry of the conv2d that conv_transpose2d on this case is the adjoint of: its
    /// input is the transposed op's output.
    fn transpose_geometry(&self) -> Conv2dGeometry {
        let len = |len, k| {
            Conv2dGeometry::transposed_len(len, k, self.stride, self.padding, self.output_padding)
                .expect("valid transposed case")
        };
        Conv2dGeometry {
            batch: self.batch,
            c_in: self.c_out,
            c_out: self.c_in,
            h: len(self.h, self.kernel.0),
            w: len(self.w, self.kernel.1),
            kh: self.kernel.0,
            kw: self.kernel.1,
            stride: self.stride,
            padding: self.padding,
        }
    }
}

/// Stride 1 and 2, padding 0 to 2, odd and even sizes, square and non-square kernels, a
/// kernel taller than the unpadded input, and a batch spanning three weight-gradient groups.
const CONV_CASES: [ConvCase; 7] = [
    ConvCase {
        batch: 2,
        c_in: 2,
        c_out: 3,
        kernel: (3, 3),
        stride: 1,
        padding: 1,
        h: 5,
        w: 5,
        output_padding: 0,
    },
    ConvCase {
        batch: 2,
        c_in: 3,
        c_out: 2,
        kernel: (3, 3),
        stride: 2,
        padding: 0,
        h: 7,
        w: 6,
        output_padding: 0,
    },
    ConvCase {
        batch: 3,
        c_in: 1,
        c_out: 2,
        kernel: (2, 3),
        stride: 2,
        padding: 2,
        h: 4,
        w: 5,
        output_padding: 0,
    },
    ConvCase {
        batch: 2,
        c_in: 2,
        c_out: 2,
        kernel: (4, 4),
        stride: 2,
        padding: 1,
        h: 6,
        w: 6,
        output_padding: 0,
    },
    ConvCase {
        batch: 2,
        c_in: 2,
        c_out: 1,
        kernel: (1, 1),
        stride: 1,
        padding: 0,
        h: 3,
        w: 4,
        output_padding: 0,
    },
    ConvCase {
        batch: 2,
        c_in: 1,
        c_out: 2,
        kernel: (3, 2),
        stride: 1,
        padding: 2,
        h: 2,
        w: 3,
        output_padding: 0,
    },
    ConvCase {
        batch: 9,
        c_in: 1,
        c_out: 2,
        kernel: (2, 2),
        stride: 1,
        padding: 0,
        h: 3,
        w: 3,
        output_padding: 0,
    },
];

/// Transposed cases: the DCGAN upsampling step (kernel 4, stride 2, padding 1), output
/// padding 1 with and without padding, stride 1, non-square and even kernels, and 1 × 1
/// inputs without padding (DCGAN's first layer, a single product).
const TRANSPOSE_CASES: [ConvCase; 9] = [
    ConvCase {
        batch: 3,
        c_in: 4,
        c_out: 2,
        kernel: (3, 2),
        stride: 1,
        padding: 0,
        h: 1,
        w: 1,
        output_padding: 0,
    },
    ConvCase {
        batch: 2,
        c_in: 3,
        c_out: 3,
        kernel: (4, 4),
        stride: 2,
        padding: 0,
        h: 1,
        w: 1,
        output_padding: 0,
    },
    ConvCase {
        batch: 2,
        c_in: 3,
        c_out: 2,
        kernel: (4, 4),
        stride: 2,
        padding: 1,
        h: 3,
        w: 3,
        output_padding: 0,
    },
    ConvCase {
        batch: 2,
        c_in: 2,
        c_out: 3,
        kernel: (3, 3),
        stride: 2,
        padding: 1,
        h: 3,
        w: 4,
        output_padding: 1,
    },
    ConvCase {
        batch: 2,
        c_in: 2,
        c_out: 2,
        kernel: (3, 3),
        stride: 1,
        padding: 0,
        h: 4,
        w: 3,
        output_padding: 0,
    },
    ConvCase {
        batch: 3,
        c_in: 1,
        c_out: 2,
        kernel: (3, 2),
        stride: 1,
        padding: 2,
        h: 5,
        w: 4,
        output_padding: 0,
    },
    ConvCase {
        batch: 2,
        c_in: 2,
        c_out: 1,
        kernel: (3, 3),
        stride: 2,
        padding: 0,
        h: 2,
        w: 3,
        output_padding: 1,
    },
    ConvCase {
        batch: 2,
        c_in: 1,
        c_out: 2,
        kernel: (2, 2),
        stride: 2,
        padding: 0,
        h: 3,
        w: 2,
        output_padding: 0,
    },
    ConvCase {
        batch: 9,
        c_in: 2,
        c_out: 1,
        kernel: (3, 3),
        stride: 2,
        padding: 2,
        h: 3,
        w: 3,
        output_padding: 1,
    },
];

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A leaf with values from N(0, 1) that requires a gradient.
fn leaf(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor<f64> {
    Tensor::rand_normal(shape, 0.0, 1.0, rng).requires_grad_(true)
}

/// Small integers in −5..=5, so that every sum in a convolution is exact in f64.
fn ints(shape: &[usize], seed: usize) -> Tensor<f64> {
    let n = shape.iter().product();
    let data = (0..n)
        .map(|i| ((i * 7 + seed * 13) % 11) as f64 - 5.0)
        .collect();
    Tensor::from_vec(data, shape)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Runs the gradient checker and panics with its report on failure.
#[track_caller]
fn check(name: &str, inputs: &[Tensor<f64>], f: impl Fn(&[Tensor<f64>]) -> Tensor<f64>) {
    if let Err(e) = gradcheck(name, inputs, f) {
        panic!("{e}");
    }
}

#[test]
fn conv2d_gradients_wrt_input_weight_and_bias() {
    for (k, case) in CONV_CASES.iter().enumerate() {
        let mut r = rng(k as u64);
        let x = leaf(&case.input_shape(), &mut r);
        let w = leaf(&case.conv_weight_shape(), &mut r);
        let b = leaf(&[case.c_out], &mut r);
        let (s, p) = (case.stride, case.padding);
        check(&format!("conv2d {case:?}"), &[x, w, b], |t| {
            t[0].conv2d(&t[1], Some(&t[2]), s, p)
        });
    }
}

#[test]
fn conv2d_without_bias_and_with_frozen_weight() {
    let case = CONV_CASES[1];
    let mut r = rng(20);
    let x = leaf(&case.input_shape(), &mut r);
    let w = leaf(&case.conv_weight_shape(), &mut r);
    let (s, p) = (case.stride, case.padding);
    check("conv2d no bias", &[x.clone(), w.clone()], |t| {
        t[0].conv2d(&t[1], None, s, p)
    });

    let frozen = w.detach();
    check("conv2d frozen weight", &[x], |t| {
        t[0].conv2d(&frozen, None, s, p)
    });
}

/// conv2d keeps x's columns for ∂L/∂W only when the weight takes a gradient at forward
/// time; a weight unfrozen between forward and backward gets the same gradient from columns
/// unfolded again, and x's gradient does not depend on which path ran.
#[test]
fn conv2d_weight_gradient_from_kept_or_unfolded_columns() {
    let case = CONV_CASES[1];
    let mut r = rng(21);
    let x = leaf(&case.input_shape(), &mut r);
    let w = leaf(&case.conv_weight_shape(), &mut r);
    let (s, p) = (case.stride, case.padding);
    let grads = |freeze_during_forward: bool| {
        x.zero_grad();
        w.zero_grad();
        w.set_requires_grad(!freeze_during_forward);
        let y = x.conv2d(&w, None, s, p);
        w.set_requires_grad(true);
        y.mul(&ints(y.shape(), 4)).sum().backward();
        (x.grad().unwrap().to_vec(), w.grad().unwrap().to_vec())
    };
    let (gx_kept, gw_kept) = grads(false);
    let (gx_again, gw_again) = grads(true);
    assert_eq!(gw_kept, gw_again, "weight gradient");
    assert_eq!(gx_kept, gx_again, "input gradient");
    assert!(
        gw_kept.iter().any(|&v| v != 0.0),
        "a gradient reached the weight"
    );
}

#[test]
fn conv2d_matches_the_direct_convolution() {
    for (k, case) in CONV_CASES.iter().enumerate() {
        let g = case.conv_geometry();
        let x = ints(&case.input_shape(), k);
        let w = ints(&case.conv_weight_shape(), k + 1);
        let b = ints(&[case.c_out], k + 2);
        let y = x.conv2d(&w, Some(&b), case.stride, case.padding);
        assert_eq!(y.shape(), g.output_shape(), "{case:?}");
        let expected = conv2d_naive(&g, &x.data(), &w.data(), Some(&b.data()));
        assert_eq!(y.to_vec(), expected, "{case:?}");
    }
}

#[test]
fn conv_transpose2d_gradients_wrt_input_weight_and_bias() {
    for (k, case) in TRANSPOSE_CASES.iter().enumerate() {
        let mut r = rng(100 + k as u64);
        let x = leaf(&case.input_shape(), &mut r);
        let w = leaf(&case.transpose_weight_shape(), &mut r);
        let b = leaf(&[case.c_out], &mut r);
        let (s, p, op) = (case.stride, case.padding, case.output_padding);
        check(&format!("conv_transpose2d {case:?}"), &[x, w, b], |t| {
            t[0].conv_transpose2d(&t[1], Some(&t[2]), s, p, op)
        });
    }
}

#[test]
fn conv_transpose2d_matches_the_direct_scatter() {
    for (k, case) in TRANSPOSE_CASES.iter().enumerate() {
        let g = case.transpose_geometry();
        let x = ints(&case.input_shape(), k);
        let w = ints(&case.transpose_weight_shape(), k + 1);
        let b = ints(&[case.c_out], k + 2);
        let (s, p, op) = (case.stride, case.padding, case.output_padding);
        let y = x.conv_transpose2d(&w, Some(&b), s, p, op);
        assert_eq!(y.shape(), g.input_shape(), "{case:?}");
        let expected = conv_transpose2d_naive(&g, &x.data(), &w.data(), Some(&b.data()));
        assert_eq!(y.to_vec(), expected, "{case:?}");
    }
}

#[test]
fn conv_transpose2d_is_the_adjoint_of_conv2d() {
    // ⟨conv2d(z), x⟩ = ⟨z, conv_transpose2d(x)⟩ with the same weight and no bias; exact in
    // small integers.
    for (k, case) in TRANSPOSE_CASES.iter().enumerate() {
        let g = case.transpose_geometry();
        let x = ints(&case.input_shape(), k);
        let w = ints(&case.transpose_weight_shape(), k + 3);
        let z = ints(&g.input_shape(), k + 5);
        let (s, p, op) = (case.stride, case.padding, case.output_padding);
        let conv_z = z.conv2d(&w, None, s, p);
        let adj_x = x.conv_transpose2d(&w, None, s, p, op);
        assert_eq!(conv_z.shape(), x.shape(), "{case:?}");
        assert_eq!(adj_x.shape(), z.shape(), "{case:?}");
        assert_eq!(
            dot(&conv_z.data(), &x.data()),
            dot(&z.data(), &adj_x.data()),
            "{case:?}"
        );
    }
}

#[test]
fn output_padding_without_padding_holds_only_the_bias() {
    // Input 2 × 2, kernel 3, stride 2: inputs reach rows and columns 0..=4 of the 6 × 6
    // output; row 5 and column 5 come from output_padding = 1.
    let x = ints(&[2, 2, 2, 2], 1);
    let w = ints(&[2, 3, 3, 3], 2);
    let b = Tensor::from_vec(vec![0.25, -1.5, 3.0], &[3]);
    let y = x.conv_transpose2d(&w, Some(&b), 2, 0, 1);
    assert_eq!(y.shape(), [2, 3, 6, 6]);
    let y = y.to_vec();
    for (plane, values) in y.chunks(36).enumerate() {
        let bias = b.data()[plane % 3];
        for i in 0..6 {
            assert_eq!(values[5 * 6 + i], bias, "row 5, plane {plane}");
            assert_eq!(values[i * 6 + 5], bias, "column 5, plane {plane}");
        }
    }
}

/// Gradients of a conv2d and a conv_transpose2d whose batch spans five weight-gradient
/// groups, computed on a pool of `threads` threads.
fn conv_grads_on(threads: usize) -> Vec<f64> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    pool.install(|| {
        let mut r = rng(7);
        let x = leaf(&[19, 3, 8, 8], &mut r);
        let w = leaf(&[4, 3, 3, 3], &mut r);
        let wt = leaf(&[4, 2, 4, 4], &mut r);
        let y = x
            .conv2d(&w, None, 1, 1)
            .conv_transpose2d(&wt, None, 2, 1, 0);
        let upstream: Vec<f64> = (0..y.numel()).map(|i| (i as f64 * 0.37).sin()).collect();
        y.backward_with(&upstream);
        [x, w, wt]
            .iter()
            .flat_map(|t| t.grad().expect("gradient").to_vec())
            .collect()
    })
}

#[test]
fn conv_gradients_do_not_depend_on_the_thread_count() {
    let one = conv_grads_on(1);
    let three = conv_grads_on(3);
    let same_bits = one
        .iter()
        .zip(&three)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(same_bits, "gradients differ between 1 and 3 threads");
}

#[test]
fn batch_norm_train_gradients_rank_2_and_4() {
    for (k, shape) in [&[5, 3][..], &[3, 2, 3, 2][..]].into_iter().enumerate() {
        let mut r = rng(200 + k as u64);
        let c = shape[1];
        let x = leaf(shape, &mut r);
        let gamma = Tensor::rand_normal(&[c], 1.0, 0.5, &mut r).requires_grad_(true);
        let beta = leaf(&[c], &mut r);
        check(
            &format!("batch_norm_train {shape:?}"),
            &[x, gamma, beta],
            |t| t[0].batch_norm_train(&t[1], &t[2], 1e-5).0,
        );
    }
}

#[test]
fn batch_norm_with_a_fused_activation_passes_the_gradient_check() {
    let acts = [FusedActivation::Relu, FusedActivation::LeakyRelu(0.2)];
    for (k, shape) in [&[5, 3][..], &[3, 2, 3, 2][..]].into_iter().enumerate() {
        for act in acts {
            let mut r = rng(260 + k as u64);
            let c = shape[1];
            let x = leaf(shape, &mut r);
            let gamma = Tensor::rand_normal(&[c], 1.0, 0.5, &mut r).requires_grad_(true);
            let beta = leaf(&[c], &mut r);
            check(
                &format!("batch_norm_train_then {shape:?} {act:?}"),
                &[x, gamma, beta],
                |t| t[0].batch_norm_train_then(&t[1], &t[2], 1e-5, act).0,
            );
        }
    }
}

/// The fused op against batch norm and the activation as two ops, in f32: the same output
/// and the same gradients of x, γ and β, to the bit.
#[test]
fn batch_norm_with_a_fused_activation_equals_the_two_ops() {
    let acts = [
        FusedActivation::Identity,
        FusedActivation::Relu,
        FusedActivation::LeakyRelu(0.2),
    ];
    for (k, shape) in [&[37, 5][..], &[6, 4, 5, 3][..]].into_iter().enumerate() {
        for act in acts {
            let run = |fused: bool| {
                let mut r = rng(300 + k as u64);
                let c = shape[1];
                let leaf = |s: &[usize], r: &mut ChaCha8Rng| {
                    Tensor::<f32>::rand_normal(s, 0.0, 1.0, r).requires_grad_(true)
                };
                let (x, gamma, beta) =
                    (leaf(shape, &mut r), leaf(&[c], &mut r), leaf(&[c], &mut r));
                let upstream = Tensor::<f32>::rand_normal(shape, 0.0, 1.0, &mut r);
                let y = match fused {
                    true => x.batch_norm_train_then(&gamma, &beta, 1e-5, act).0,
                    false => {
                        let v = x.batch_norm_train(&gamma, &beta, 1e-5).0;
                        match act {
                            FusedActivation::Identity => v,
                            FusedActivation::Relu => v.relu(),
                            FusedActivation::LeakyRelu(a) => v.leaky_relu(a as f32),
                        }
                    }
                };
                y.backward_with(&upstream.data());
                let grads = [&x, &gamma, &beta].map(|t| t.grad().expect("a gradient").to_vec());
                (y.to_vec(), grads)
            };
            let (fused, separate) = (run(true), run(false));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fused.0), bits(&separate.0), "{shape:?} {act:?}: y");
            for (name, (f, s)) in ["x", "γ", "β"].iter().zip(fused.1.iter().zip(&separate.1)) {
                assert_eq!(bits(f), bits(s), "{shape:?} {act:?}: ∂L/∂{name}");
            }
            let negative = fused.0.iter().filter(|&&v| v < 0.0).count();
            if act == FusedActivation::Relu {
                assert_eq!(negative, 0, "{shape:?}: ReLU output below zero");
            }
        }
    }
}

#[test]
fn conv2d_with_a_fused_activation_passes_the_gradient_check() {
    let acts = [FusedActivation::Relu, FusedActivation::LeakyRelu(0.2)];
    for (k, case) in CONV_CASES.iter().enumerate().take(3) {
        for act in acts {
            let mut r = rng(400 + k as u64);
            let x = leaf(&case.input_shape(), &mut r);
            let w = leaf(&case.conv_weight_shape(), &mut r);
            let b = leaf(&[case.c_out], &mut r);
            let (s, p) = (case.stride, case.padding);
            check(&format!("conv2d_then {case:?} {act:?}"), &[x, w, b], |t| {
                t[0].conv2d_then(&t[1], Some(&t[2]), s, p, act)
            });
        }
    }
}

/// conv2d with a fused activation against the two ops, in f32, on the im2col path and on
/// the Winograd path, with and without a bias: the same output and gradients, to the bit.
#[test]
fn conv2d_with_a_fused_activation_equals_the_two_ops() {
    let acts = [FusedActivation::Relu, FusedActivation::LeakyRelu(0.2)];
    // (batch, c_in, c_out, side, kernel, stride, padding): 1 input channel takes im2col,
    // 16 and 16 with a 4 × 4 kernel, stride 2 and padding 1 take Winograd.
    let shapes = [
        (3, 1, 5, 9, 4, 2, 1),
        (2, 16, 16, 8, 4, 2, 1),
        (2, 3, 4, 6, 3, 1, 0),
    ];
    for (k, &(n, c_in, c_out, side, kernel, stride, padding)) in shapes.iter().enumerate() {
        for act in acts {
            for with_bias in [true, false] {
                let run = |fused: bool| {
                    let mut r = rng(500 + k as u64);
                    let leaf = |s: &[usize], r: &mut ChaCha8Rng| {
                        Tensor::<f32>::rand_normal(s, 0.0, 1.0, r).requires_grad_(true)
                    };
                    let x = leaf(&[n, c_in, side, side], &mut r);
                    let w = leaf(&[c_out, c_in, kernel, kernel], &mut r);
                    let b = leaf(&[c_out], &mut r);
                    let b = with_bias.then_some(&b);
                    let y = match fused {
                        true => x.conv2d_then(&w, b, stride, padding, act),
                        false => {
                            let v = x.conv2d(&w, b, stride, padding);
                            match act {
                                FusedActivation::Relu => v.relu(),
                                FusedActivation::LeakyRelu(a) => v.leaky_relu(a as f32),
                                FusedActivation::Identity => v,
                            }
                        }
                    };
                    let upstream = Tensor::<f32>::rand_normal(y.shape(), 0.0, 1.0, &mut r);
                    y.backward_with(&upstream.data());
                    let mut out = vec![y.to_vec(), x.grad().unwrap().to_vec()];
                    out.push(w.grad().unwrap().to_vec());
                    out.extend(b.map(|b| b.grad().unwrap().to_vec()));
                    out
                };
                let (fused, separate) = (run(true), run(false));
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                for (i, (f, s)) in fused.iter().zip(&separate).enumerate() {
                    let what = format!("shape {k} {act:?} bias {with_bias}: tensor {i}");
                    assert_eq!(bits(f), bits(s), "{what}");
                }
            }
        }
    }
}

#[test]
#[should_panic(expected = "a fused leaky ReLU needs a positive slope, got -0.5")]
fn batch_norm_with_a_leaky_relu_of_negative_slope_panics() {
    let x = Tensor::<f64>::ones(&[4, 2]);
    let (gamma, beta) = (Tensor::ones(&[2]), Tensor::zeros(&[2]));
    let _ = x.batch_norm_train_then(&gamma, &beta, 1e-5, FusedActivation::LeakyRelu(-0.5));
}

#[test]
fn batch_norm_eval_gradients_rank_2_and_4() {
    for (k, shape) in [&[4, 3][..], &[2, 3, 2, 3][..]].into_iter().enumerate() {
        let mut r = rng(300 + k as u64);
        let c = shape[1];
        let x = leaf(shape, &mut r);
        let gamma = Tensor::rand_normal(&[c], 1.0, 0.5, &mut r).requires_grad_(true);
        let beta = leaf(&[c], &mut r);
        let mean = Tensor::<f64>::rand_normal(&[c], 0.0, 1.0, &mut r).to_vec();
        let var = Tensor::<f64>::rand_uniform(&[c], 0.5, 2.0, &mut r).to_vec();
        check(
            &format!("batch_norm_eval {shape:?}"),
            &[x, gamma, beta],
            |t| t[0].batch_norm_eval(&t[1], &t[2], &mean, &var, 1e-5),
        );
    }
}

#[test]
fn batch_norm_output_has_zero_mean_and_unit_variance_per_channel() {
    let (n, c, plane) = (16, 3, 4 * 4);
    let mut r = rng(400);
    // Channel k is drawn from N(3k − 2, (k + 1)²), far from normalised.
    let x = Tensor::<f64>::rand_normal(&[n, c, 4, 4], 0.0, 1.0, &mut r);
    for (i, v) in x.data_mut().iter_mut().enumerate() {
        let k = (i / plane % c) as f64;
        *v = (k + 1.0) * *v + 3.0 * k - 2.0;
    }
    let eps = 1e-5;
    let (y, mean, var) = x.batch_norm_train(&Tensor::ones(&[c]), &Tensor::zeros(&[c]), eps);

    let y = y.to_vec();
    let m = (n * plane) as f64;
    let channel = |t: &[f64], k: usize| -> Vec<f64> {
        t.chunks(plane)
            .skip(k)
            .step_by(c)
            .flatten()
            .copied()
            .collect()
    };
    for k in 0..c {
        let xs = channel(&x.data(), k);
        let x_mean = xs.iter().sum::<f64>() / m;
        let x_var = xs.iter().map(|v| (v - x_mean).powi(2)).sum::<f64>() / m;
        assert!((mean[k] - x_mean).abs() < 1e-12, "channel {k} mean");
        assert!((var[k] - x_var).abs() < 1e-12, "channel {k} variance");

        let ys = channel(&y, k);
        let y_mean = ys.iter().sum::<f64>() / m;
        let y_var = ys.iter().map(|v| (v - y_mean).powi(2)).sum::<f64>() / m;
        assert!(y_mean.abs() < 1e-12, "channel {k}: mean {y_mean}");
        // ε in the denominator makes the variance σ²/(σ² + ε), just below 1.
        assert!((y_var - 1.0).abs() < 1e-5, "channel {k}: variance {y_var}");
    }
}

#[test]
fn batch_norm_eval_with_the_batch_statistics_equals_train() {
    let mut r = rng(500);
    let x = Tensor::<f64>::rand_normal(&[6, 2, 3, 3], 1.0, 2.0, &mut r);
    let gamma = Tensor::<f64>::rand_normal(&[2], 1.0, 0.5, &mut r);
    let beta = Tensor::<f64>::rand_normal(&[2], 0.0, 1.0, &mut r);
    let (train, mean, var) = x.batch_norm_train(&gamma, &beta, 1e-5);
    let eval = x.batch_norm_eval(&gamma, &beta, &mean, &var, 1e-5);
    for (a, b) in train.to_vec().iter().zip(eval.to_vec()) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
}

#[test]
#[should_panic(expected = "conv2d: lhs is 1 × 3 × 5 × 5 but rhs is 4 × 2 × 3 × 3")]
fn conv2d_channel_mismatch_names_both_shapes() {
    Tensor::<f64>::zeros(&[1, 3, 5, 5]).conv2d(&Tensor::zeros(&[4, 2, 3, 3]), None, 1, 0);
}

#[test]
#[should_panic(expected = "conv2d: lhs is 4 × 3 × 3 × 3 but rhs is 3 (the bias needs 4 values")]
fn conv2d_bias_of_wrong_length() {
    let b = Tensor::<f64>::zeros(&[3]);
    Tensor::<f64>::zeros(&[1, 3, 5, 5]).conv2d(&Tensor::zeros(&[4, 3, 3, 3]), Some(&b), 1, 0);
}

#[test]
#[should_panic(expected = "conv2d: lhs is 1 × 1 × 2 × 2 but rhs is 1 × 1 × 5 × 5 (kernel 5 × 5")]
fn conv2d_kernel_larger_than_padded_input() {
    Tensor::<f64>::zeros(&[1, 1, 2, 2]).conv2d(&Tensor::zeros(&[1, 1, 5, 5]), None, 1, 1);
}

#[test]
#[should_panic(expected = "conv2d: lhs is 3 × 5 × 5 but rhs is 4 × 3 × 3 × 3 (need x of")]
fn conv2d_needs_rank_4() {
    Tensor::<f64>::zeros(&[3, 5, 5]).conv2d(&Tensor::zeros(&[4, 3, 3, 3]), None, 1, 0);
}

#[test]
#[should_panic(expected = "conv2d: input is 1 × 1 × 5 × 5 (stride must be at least 1)")]
fn conv2d_stride_zero() {
    Tensor::<f64>::zeros(&[1, 1, 5, 5]).conv2d(&Tensor::zeros(&[1, 1, 3, 3]), None, 0, 0);
}

#[test]
#[should_panic(expected = "conv_transpose2d: lhs is 1 × 2 × 3 × 3 but rhs is 3 × 2 × 3 × 3")]
fn conv_transpose2d_channel_mismatch() {
    let w = Tensor::<f64>::zeros(&[3, 2, 3, 3]);
    Tensor::<f64>::zeros(&[1, 2, 3, 3]).conv_transpose2d(&w, None, 1, 0, 0);
}

#[test]
#[should_panic(expected = "output padding must be below the stride")]
fn conv_transpose2d_output_padding_at_least_stride() {
    let w = Tensor::<f64>::zeros(&[2, 1, 3, 3]);
    Tensor::<f64>::zeros(&[1, 2, 3, 3]).conv_transpose2d(&w, None, 2, 1, 2);
}

#[test]
#[should_panic(expected = "batch_norm_train: lhs is 4 × 3 × 2 × 2 but rhs is 2 (γ needs 3 values")]
fn batch_norm_gamma_of_wrong_length() {
    let x = Tensor::<f64>::zeros(&[4, 3, 2, 2]);
    x.batch_norm_train(&Tensor::ones(&[2]), &Tensor::zeros(&[3]), 1e-5);
}

#[test]
#[should_panic(expected = "batch_norm_eval: input is 4 × 3 × 2 (need N × C or N × C × H × W)")]
fn batch_norm_rejects_rank_3() {
    let x = Tensor::<f64>::zeros(&[4, 3, 2]);
    x.batch_norm_eval(
        &Tensor::ones(&[3]),
        &Tensor::zeros(&[3]),
        &[0.0; 3],
        &[1.0; 3],
        1e-5,
    );
}

#[test]
#[should_panic(expected = "batch_norm_eval: lhs is 4 × 3 but rhs is 2 (var needs 3 values")]
fn batch_norm_eval_statistics_of_wrong_length() {
    let x = Tensor::<f64>::zeros(&[4, 3]);
    x.batch_norm_eval(
        &Tensor::ones(&[3]),
        &Tensor::zeros(&[3]),
        &[0.0; 3],
        &[1.0; 2],
        1e-5,
    );
}

/// A dense batch (N × C) takes a row-at-a-time path; the same values laid out as one image
/// per channel (1 × C × N × 1) take the per-channel path. Both sum each channel over n in
/// the same order, so outputs, statistics and gradients agree to the bit: on a small batch,
/// and on one large enough that the dense path splits its rows and channels over threads.
#[test]
fn batch_norm_rows_match_the_per_channel_path_bitwise() {
    for (n, c) in [(7, 5), (70, 600)] {
        rows_match_per_channel(n, c);
    }
}

/// Batch norm on a large dense batch (its loops split over threads) gives the same bits on
/// one thread and on three.
#[test]
fn batch_norm_on_a_large_dense_batch_does_not_depend_on_the_thread_count() {
    let run = |threads: usize| {
        autograd::threads::pool(threads).install(|| {
            let mut r = rng(601);
            let x = Tensor::<f32>::rand_normal(&[70, 600], 0.5, 2.0, &mut r).requires_grad_(true);
            let gamma = Tensor::<f32>::rand_normal(&[600], 1.0, 0.5, &mut r).requires_grad_(true);
            let beta = Tensor::<f32>::zeros(&[600]).requires_grad_(true);
            let weights = Tensor::<f32>::rand_normal(&[70, 600], 0.0, 1.0, &mut r);
            let (y, mean, var) = x.batch_norm_train(&gamma, &beta, 1e-5);
            y.mul(&weights).sum().backward();
            let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let grads = [&x, &gamma, &beta].map(|t| bits(t.grad().unwrap().to_vec()));
            (bits(y.to_vec()), bits(mean), bits(var), grads)
        })
    };
    assert!(run(1) == run(3), "1 and 3 threads differ");
}

fn rows_match_per_channel(n: usize, c: usize) {
    let mut r = rng(600);
    let x = Tensor::<f32>::rand_normal(&[n, c], 0.5, 2.0, &mut r).requires_grad_(true);
    let gamma = Tensor::<f32>::rand_normal(&[c], 1.0, 0.5, &mut r).requires_grad_(true);
    let beta = Tensor::<f32>::rand_normal(&[c], 0.0, 1.0, &mut r).requires_grad_(true);
    let weights = Tensor::<f32>::rand_normal(&[n, c], 0.0, 1.0, &mut r);

    let (y, mean, var) = x.batch_norm_train(&gamma, &beta, 1e-5);
    y.mul(&weights).sum().backward();
    let grads = [&x, &gamma, &beta].map(|t| t.grad().unwrap().to_vec());

    // The same values, channel-major: 1 × C × N × 1.
    let xc = Tensor::<f32>::from_vec(x.transpose(0, 1).to_vec(), &[1, c, n, 1]);
    let xc = xc.requires_grad_(true);
    [&gamma, &beta].iter().for_each(|t| t.zero_grad());
    let (yc, mean_c, var_c) = xc.batch_norm_train(&gamma, &beta, 1e-5);
    let wc = weights.transpose(0, 1).reshape(&[1, c, n, 1]);
    yc.mul(&wc).sum().backward();

    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let back = |t: &Tensor<f32>| t.reshape(&[c, n]).transpose(0, 1).to_vec();
    assert_eq!(bits(&y.to_vec()), bits(&back(&yc)), "outputs");
    assert_eq!(
        (bits(&mean), bits(&var)),
        (bits(&mean_c), bits(&var_c)),
        "statistics"
    );
    assert_eq!(bits(&grads[0]), bits(&back(&xc.grad().unwrap())), "∂L/∂x");
    assert_eq!(
        bits(&grads[1]),
        bits(&gamma.grad().unwrap().to_vec()),
        "∂L/∂γ"
    );
    assert_eq!(
        bits(&grads[2]),
        bits(&beta.grad().unwrap().to_vec()),
        "∂L/∂β"
    );
}

/// 4 × 4 kernels with stride 2 and padding 1 and at least 16 channels on both sides take
/// the Winograd path (`autograd::kernels::winograd`): an even input, an odd one, and a
/// transposed convolution with output padding.
const WINOGRAD_CASES: [ConvCase; 3] = [
    ConvCase {
        batch: 2,
        c_in: 16,
        c_out: 16,
        kernel: (4, 4),
        stride: 2,
        padding: 1,
        h: 6,
        w: 6,
        output_padding: 0,
    },
    ConvCase {
        batch: 1,
        c_in: 16,
        c_out: 17,
        kernel: (4, 4),
        stride: 2,
        padding: 1,
        h: 9,
        w: 5,
        output_padding: 0,
    },
    ConvCase {
        batch: 1,
        c_in: 17,
        c_out: 16,
        kernel: (4, 4),
        stride: 2,
        padding: 1,
        h: 3,
        w: 2,
        output_padding: 1,
    },
];

#[track_caller]
fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-12 * w.abs().max(1.0),
            "{what}[{i}]: {g} against {w}"
        );
    }
}

#[test]
fn winograd_convolutions_match_the_direct_loops() {
    for (k, case) in WINOGRAD_CASES.iter().enumerate() {
        let (s, p, op) = (case.stride, case.padding, case.output_padding);
        let b = ints(&[case.c_out], k + 2);
        if op == 0 {
            let g = case.conv_geometry();
            let (x, w) = (
                ints(&case.input_shape(), k),
                ints(&case.conv_weight_shape(), k + 1),
            );
            let y = x.conv2d(&w, Some(&b), s, p);
            let want = conv2d_naive(&g, &x.data(), &w.data(), Some(&b.data()));
            assert_close(&format!("conv2d {case:?}"), &y.to_vec(), &want);
        }
        let g = case.transpose_geometry();
        let (x, w) = (
            ints(&case.input_shape(), k),
            ints(&case.transpose_weight_shape(), k),
        );
        let y = x.conv_transpose2d(&w, Some(&b), s, p, op);
        let want = conv_transpose2d_naive(&g, &x.data(), &w.data(), Some(&b.data()));
        assert_close(&format!("conv_transpose2d {case:?}"), &y.to_vec(), &want);
    }
}

#[test]
fn winograd_convolutions_pass_the_gradient_check() {
    for (k, case) in WINOGRAD_CASES.iter().enumerate() {
        let mut r = rng(200 + k as u64);
        let (s, p, op) = (case.stride, case.padding, case.output_padding);
        let b = leaf(&[case.c_out], &mut r);
        let x = leaf(&case.input_shape(), &mut r);
        if op == 0 {
            let w = leaf(&case.conv_weight_shape(), &mut r);
            check(
                &format!("conv2d {case:?}"),
                &[x.clone(), w, b.clone()],
                |t| t[0].conv2d(&t[1], Some(&t[2]), s, p),
            );
        }
        let w = leaf(&case.transpose_weight_shape(), &mut r);
        check(&format!("conv_transpose2d {case:?}"), &[x, w, b], |t| {
            t[0].conv_transpose2d(&t[1], Some(&t[2]), s, p, op)
        });
    }
}

/// Forward keeps the transforms that backward needs only for inputs that take a gradient
/// then; an input unfrozen between forward and backward gets the same gradient from
/// transforms computed again.
#[test]
fn winograd_gradients_from_kept_or_recomputed_transforms() {
    let case = WINOGRAD_CASES[0];
    let (s, p) = (case.stride, case.padding);
    let mut r = rng(210);
    let x = leaf(&case.input_shape(), &mut r);
    let w = leaf(&case.conv_weight_shape(), &mut r);
    let grads = |frozen: &Tensor<f64>, transposed: bool| {
        x.zero_grad();
        w.zero_grad();
        frozen.set_requires_grad(false);
        let y = match transposed {
            false => x.conv2d(&w, None, s, p),
            true => x.conv_transpose2d(&w, None, s, p, 0),
        };
        frozen.set_requires_grad(true);
        y.mul(&ints(y.shape(), 4)).sum().backward();
        (x.grad().unwrap().to_vec(), w.grad().unwrap().to_vec())
    };
    for transposed in [false, true] {
        let (gx, gw) = grads(&Tensor::from_vec(vec![0.0], &[1]), transposed);
        assert!(
            gw.iter().any(|&v| v != 0.0),
            "a gradient reached the weight"
        );
        for frozen in [&x, &w] {
            let (gx_again, gw_again) = grads(frozen, transposed);
            assert_eq!(gx, gx_again, "input gradient, transposed: {transposed}");
            assert_eq!(gw, gw_again, "weight gradient, transposed: {transposed}");
        }
    }
}
