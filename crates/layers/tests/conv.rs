//! Conv2d and ConvTranspose2d: gradient checks with respect to the input and both
//! parameters, exact comparison with direct loops, and the adjoint identity.

use autograd::{gradcheck, Tensor};
use layers::{Conv2d, ConvTranspose2d, Init, Module};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One layer configuration; `output_padding` only applies to the transposed layer.
#[derive(Clone, Copy, Debug)]
struct Case {
    batch: usize,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    output_padding: usize,
    h: usize,
    w: usize,
    bias: bool,
}

#[rustfmt::skip]
const CONV_CASES: [Case; 5] = [
    Case { batch: 2, c_in: 3, c_out: 2, kernel: 3, stride: 1, padding: 0, output_padding: 0,
           h: 5, w: 4, bias: true },
    Case { batch: 2, c_in: 2, c_out: 3, kernel: 3, stride: 2, padding: 1, output_padding: 0,
           h: 6, w: 7, bias: true },
    Case { batch: 3, c_in: 1, c_out: 2, kernel: 4, stride: 2, padding: 2, output_padding: 0,
           h: 5, w: 6, bias: true },
    Case { batch: 2, c_in: 2, c_out: 2, kernel: 2, stride: 1, padding: 2, output_padding: 0,
           h: 3, w: 3, bias: false },
    Case { batch: 2, c_in: 3, c_out: 2, kernel: 1, stride: 2, padding: 0, output_padding: 0,
           h: 4, w: 5, bias: true },
];

#[rustfmt::skip]
const TRANSPOSED_CASES: [Case; 5] = [
    Case { batch: 2, c_in: 3, c_out: 2, kernel: 3, stride: 1, padding: 0, output_padding: 0,
           h: 3, w: 4, bias: true },
    Case { batch: 2, c_in: 2, c_out: 3, kernel: 4, stride: 2, padding: 1, output_padding: 0,
           h: 3, w: 4, bias: true },
    Case { batch: 2, c_in: 2, c_out: 2, kernel: 3, stride: 2, padding: 1, output_padding: 1,
           h: 4, w: 3, bias: true },
    Case { batch: 3, c_in: 1, c_out: 2, kernel: 5, stride: 2, padding: 2, output_padding: 1,
           h: 2, w: 3, bias: true },
    Case { batch: 2, c_in: 2, c_out: 2, kernel: 3, stride: 1, padding: 2, output_padding: 0,
           h: 4, w: 5, bias: false },
];

fn conv(case: &Case, rng: &mut ChaCha8Rng) -> Conv2d<f64> {
    let Case {
        c_in,
        c_out,
        kernel,
        stride,
        padding,
        bias,
        ..
    } = *case;
    let layer = Conv2d::new(
        c_in,
        c_out,
        kernel,
        stride,
        padding,
        bias,
        Init::Normal(0.5),
        rng,
    );
    randomize_bias(layer.bias.as_ref(), rng);
    layer
}

fn conv_transpose(case: &Case, rng: &mut ChaCha8Rng) -> ConvTranspose2d<f64> {
    let Case {
        c_in,
        c_out,
        kernel,
        stride,
        padding,
        output_padding,
        bias,
        ..
    } = *case;
    let layer = ConvTranspose2d::new(
        c_in,
        c_out,
        kernel,
        stride,
        padding,
        output_padding,
        bias,
        Init::Normal(0.5),
        rng,
    );
    randomize_bias(layer.bias.as_ref(), rng);
    layer
}

/// Biases start at zero; a check is stronger with distinct values.
fn randomize_bias(bias: Option<&Tensor<f64>>, rng: &mut ChaCha8Rng) {
    if let Some(b) = bias {
        b.data_mut()
            .iter_mut()
            .for_each(|v| *v = rng.gen_range(-1.0..1.0));
    }
}

/// Integers in −3..=3: sums of their products are exact in f64 in any order.
fn small_ints(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor<f64> {
    let n = shape.iter().product();
    let data = (0..n).map(|_| rng.gen_range(-3..=3) as f64).collect();
    Tensor::from_vec(data, shape)
}

/// The layer's parameters as gradcheck inputs after x: the same handles the layer holds, so
/// the checker's perturbations reach the layer.
fn inputs_and_params(x: Tensor<f64>, layer: &dyn Module<f64>) -> Vec<Tensor<f64>> {
    let mut all = vec![x.requires_grad_(true)];
    all.extend(layer.parameters().into_iter().map(|(_, p)| p));
    all
}

/// Gradient check of `layer.forward(inputs[0])` over every element of every input.
fn check(name: &str, inputs: &[Tensor<f64>], layer: &dyn Module<f64>) {
    let report = gradcheck(name, inputs, |t| layer.forward(&t[0]));
    let report = report.unwrap_or_else(|e| panic!("{e}"));
    let total: usize = inputs.iter().map(|t| t.numel()).sum();
    assert_eq!(
        report.checked, total,
        "{name}: every input and parameter checked"
    );
}

#[test]
fn conv2d_gradients_match_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for case in &CONV_CASES {
        let layer = conv(case, &mut rng);
        let shape = [case.batch, case.c_in, case.h, case.w];
        let x = Tensor::rand_uniform(&shape, -1.0, 1.0, &mut rng);
        let inputs = inputs_and_params(x, &layer);

        check(&format!("Conv2d {case:?}"), &inputs, &layer);
    }
}

#[test]
fn conv_transpose2d_gradients_match_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for case in &TRANSPOSED_CASES {
        let layer = conv_transpose(case, &mut rng);
        let shape = [case.batch, case.c_in, case.h, case.w];
        let x = Tensor::rand_uniform(&shape, -1.0, 1.0, &mut rng);
        let inputs = inputs_and_params(x, &layer);

        check(&format!("ConvTranspose2d {case:?}"), &inputs, &layer);
    }
}

/// y[n, o, i, j] = b[o] + Σ_c Σ_u Σ_v w[o, c, u, v] · x[n, c, s·i + u − p, s·j + v − p]
fn direct_conv(case: &Case, x: &[f64], w: &[f64], b: Option<&[f64]>) -> Vec<f64> {
    let Case {
        batch,
        c_in,
        c_out,
        kernel: k,
        stride: s,
        padding: p,
        h,
        w: width,
        ..
    } = *case;
    let (oh, ow) = ((h + 2 * p - k) / s + 1, (width + 2 * p - k) / s + 1);
    let mut y = vec![0.0; batch * c_out * oh * ow];
    for n in 0..batch {
        for o in 0..c_out {
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = b.map_or(0.0, |b| b[o]);
                    for c in 0..c_in {
                        for u in 0..k {
                            for v in 0..k {
                                // Taps that land in the zero padding add nothing.
                                let (r, q) = (s * i + u, s * j + v);
                                if r < p || q < p || r - p >= h || q - p >= width {
                                    continue;
                                }
                                let xi = ((n * c_in + c) * h + r - p) * width + q - p;
                                acc += w[((o * c_in + c) * k + u) * k + v] * x[xi];
                            }
                        }
                    }
                    y[((n * c_out + o) * oh + i) * ow + j] = acc;
                }
            }
        }
    }
    y
}

#[test]
fn conv2d_equals_direct_loops_exactly() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for case in &CONV_CASES {
        let layer = conv(case, &mut rng);
        let weight = small_ints(layer.weight.shape(), &mut rng);
        layer.weight.data_mut().copy_from_slice(&weight.data());
        if let Some(b) = &layer.bias {
            b.data_mut()
                .copy_from_slice(&small_ints(b.shape(), &mut rng).data());
        }
        let x = small_ints(&[case.batch, case.c_in, case.h, case.w], &mut rng);

        let y = layer.forward(&x);
        let bias = layer.bias.as_ref().map(|b| b.to_vec());
        let expected = direct_conv(case, &x.data(), &layer.weight.data(), bias.as_deref());
        assert_eq!(
            y.shape(),
            layer.output_shape(x.shape()),
            "{case:?}: output_shape"
        );
        assert_eq!(*y.data(), expected[..], "{case:?}");
    }
}

/// ⟨conv2d(z, w), x⟩ = ⟨z, conv_transpose2d(x, w)⟩ for the same weight tensor: the
/// transposed layer is the adjoint of the convolution from its output back to its input.
#[test]
fn conv_transpose2d_is_the_adjoint_of_conv2d() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for case in &TRANSPOSED_CASES {
        let up = conv_transpose(
            &Case {
                bias: false,
                ..*case
            },
            &mut rng,
        );
        let down_case = Case {
            c_in: case.c_out,
            c_out: case.c_in,
            bias: false,
            ..*case
        };
        let down = conv(&down_case, &mut rng);
        let weight = small_ints(up.weight.shape(), &mut rng);
        up.weight.data_mut().copy_from_slice(&weight.data());
        down.weight.data_mut().copy_from_slice(&weight.data());

        let x = small_ints(&[case.batch, case.c_in, case.h, case.w], &mut rng);
        let up_x = up.forward(&x);
        let z = small_ints(up_x.shape(), &mut rng);
        let down_z = down.forward(&z);
        assert_eq!(
            down_z.shape(),
            x.shape(),
            "{case:?}: conv maps back to x's shape"
        );

        let dot = |a: &Tensor<f64>, b: &Tensor<f64>| -> f64 {
            a.data()
                .iter()
                .zip(b.data().iter())
                .map(|(p, q)| p * q)
                .sum()
        };
        assert_eq!(dot(&down_z, &x), dot(&z, &up_x), "{case:?}");
        assert_eq!(
            up_x.shape(),
            up.output_shape(x.shape()),
            "{case:?}: output_shape"
        );
    }
}

#[test]
fn describe_gives_the_geometry() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let c = Conv2d::<f32>::new(1, 64, 4, 2, 1, true, Init::Normal(0.02), &mut rng);
    assert_eq!(c.describe(), "Conv2d(1 → 64, k4, s2, p1)");
    assert_eq!(c.output_shape(&[8, 1, 28, 28]), [8, 64, 14, 14]);
    assert_eq!(c.param_count(), 64 * 16 + 64);

    let t = ConvTranspose2d::<f32>::new(64, 1, 4, 2, 1, 0, false, Init::GlorotUniform, &mut rng);
    assert_eq!(t.describe(), "ConvTranspose2d(64 → 1, k4, s2, p1)");
    assert_eq!(t.output_shape(&[8, 64, 14, 14]), [8, 1, 28, 28]);
    assert_eq!(t.weight.shape(), [64, 1, 4, 4]);
    assert!(t.parameters().iter().all(|(n, _)| n != "bias"));
}

#[test]
fn glorot_limit_uses_the_kernel_area_in_both_fans() {
    // l = √(6 / (c_in·k² + c_out·k²)) = √(6 / (2·9 + 4·9)) = √(1/9) = 1/3
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let c = Conv2d::<f64>::new(2, 4, 3, 1, 1, true, Init::GlorotUniform, &mut rng);
    let max = c.weight.data().iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(
        max <= 1.0 / 3.0 && max > 0.25,
        "largest |w| {max} for limit 1/3"
    );
}

#[test]
#[should_panic(expected = "output_padding 2 must be less than stride 2")]
fn conv_transpose2d_rejects_output_padding_at_the_stride() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    ConvTranspose2d::<f32>::new(1, 1, 3, 2, 1, 2, true, Init::GlorotUniform, &mut rng);
}
