//! BatchNorm: the coupled training-mode gradient, running statistics under the Keras
//! momentum convention, and evaluation mode.

use autograd::{gradcheck, Tensor};
use layers::{BatchNorm, Module};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A layer over `c` channels with γ and β drawn away from their initial 1 and 0.
fn layer(c: usize, rng: &mut ChaCha8Rng) -> BatchNorm<f64> {
    let bn = BatchNorm::new(c).momentum(0.8);
    bn.weight
        .data_mut()
        .iter_mut()
        .for_each(|g| *g = rng.gen_range(0.5..2.0));
    bn.bias
        .data_mut()
        .iter_mut()
        .for_each(|b| *b = rng.gen_range(-1.0..1.0));
    bn
}

/// Checks y = bn(x) with respect to x, γ and β (the layer's own handles).
fn check(name: &str, bn: &BatchNorm<f64>, shape: &[usize], rng: &mut ChaCha8Rng) {
    // A shifted, scaled input, so that the statistics are far from 0 and 1.
    let x = Tensor::rand_uniform(shape, -2.0, 3.0, rng).requires_grad_(true);
    let inputs = [x, bn.weight.clone(), bn.bias.clone()];
    let report = gradcheck(name, &inputs, |t| bn.forward(&t[0]));
    let report = report.unwrap_or_else(|e| panic!("{e}"));
    let total: usize = inputs.iter().map(|t| t.numel()).sum();
    assert_eq!(
        report.checked, total,
        "{name}: every input and parameter checked"
    );
}

#[test]
fn training_gradient_couples_the_batch_for_dense_inputs() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let bn = layer(3, &mut rng);
    check("BatchNorm train (N, C)", &bn, &[5, 3], &mut rng);
}

#[test]
fn training_gradient_couples_the_batch_for_images() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let bn = layer(3, &mut rng);
    check("BatchNorm train (N, C, H, W)", &bn, &[2, 3, 3, 2], &mut rng);
}

#[test]
fn evaluation_gradient_treats_running_statistics_as_constants() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let bn = layer(2, &mut rng);
    bn.running_mean.data_mut().copy_from_slice(&[0.3, -1.2]);
    bn.running_var.data_mut().copy_from_slice(&[0.5, 2.5]);
    bn.set_training(false);
    check("BatchNorm eval (N, C, H, W)", &bn, &[3, 2, 2, 3], &mut rng);
    check("BatchNorm eval (N, C)", &bn, &[4, 2], &mut rng);
}

/// Running statistics after two batches, momentum 0.8 (Keras' convention, PyTorch's 0.2),
/// four values per channel, so the unbiased variance is the biased one times 4/3:
///
/// ```text
/// batch 1: channel 0 = 1, 2, 3, 4     mean 2.5   biased var 1.25   unbiased 5/3
///          channel 1 = 2, 4, 6, 8     mean 5     biased var 5      unbiased 20/3
///   mean = 0.8·(0, 0) + 0.2·(2.5, 5)           = (0.5, 1.0)
///   var  = 0.8·(1, 1) + 0.2·(5/3, 20/3)        = (17/15, 32/15)
/// batch 2: channel 0 = 0, 0, 4, 4     mean 2     biased var 4      unbiased 16/3
///          channel 1 = −1, 1, −1, 1   mean 0     biased var 1      unbiased 4/3
///   mean = 0.8·(0.5, 1.0) + 0.2·(2, 0)         = (0.8, 0.8)
///   var  = 0.8·(17/15, 32/15) + 0.2·(16/3, 4/3) = (29.6/15, 29.6/15)
/// ```
const EXPECTED_MEAN: [f64; 2] = [0.8, 0.8];
const EXPECTED_VAR: [f64; 2] = [29.6 / 15.0, 29.6 / 15.0];

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 1e-12, "{what}[{i}]: got {g}, want {w}");
    }
}

#[test]
fn running_statistics_follow_hand_computed_values_for_dense_inputs() {
    let bn = BatchNorm::<f64>::new(2).momentum(0.8);
    // (N, C) = (4, 2), row by row: sample n holds (channel 0, channel 1).
    bn.forward(&Tensor::from_vec(
        vec![1., 2., 2., 4., 3., 6., 4., 8.],
        &[4, 2],
    ));
    bn.forward(&Tensor::from_vec(
        vec![0., -1., 0., 1., 4., -1., 4., 1.],
        &[4, 2],
    ));

    assert_close(&bn.running_mean.data(), &EXPECTED_MEAN, "running_mean");
    assert_close(&bn.running_var.data(), &EXPECTED_VAR, "running_var");
}

#[test]
fn running_statistics_follow_hand_computed_values_for_images() {
    let bn = BatchNorm::<f64>::new(2).momentum(0.8);
    // (N, C, H, W) = (2, 2, 1, 2): the same four values per channel as the dense test,
    // spread over two samples and two pixels.
    bn.forward(&Tensor::from_vec(
        vec![1., 2., 2., 4., 3., 4., 6., 8.],
        &[2, 2, 1, 2],
    ));
    bn.forward(&Tensor::from_vec(
        vec![0., 0., -1., 1., 4., 4., -1., 1.],
        &[2, 2, 1, 2],
    ));

    assert_close(&bn.running_mean.data(), &EXPECTED_MEAN, "running_mean");
    assert_close(&bn.running_var.data(), &EXPECTED_VAR, "running_var");
}

#[test]
fn evaluation_mode_normalises_with_the_running_statistics() {
    let bn = BatchNorm::<f64>::new(2).momentum(0.8);
    bn.forward(&Tensor::from_vec(
        vec![1., 2., 2., 4., 3., 6., 4., 8.],
        &[4, 2],
    ));
    bn.forward(&Tensor::from_vec(
        vec![0., -1., 0., 1., 4., -1., 4., 1.],
        &[4, 2],
    ));
    bn.weight.data_mut().copy_from_slice(&[2.0, -1.0]);
    bn.bias.data_mut().copy_from_slice(&[0.5, 0.25]);

    bn.set_training(false);
    let y = bn.forward(&Tensor::from_vec(vec![2.8, 0.8, 0.8, 3.8], &[2, 2]));

    // y = γ·(x − 0.8)/√(29.6/15 + 0.001) + β, with ε = 10⁻³ (the Keras default)
    let s = (29.6f64 / 15.0 + 1e-3).sqrt();
    let expected = [2.0 * 2.0 / s + 0.5, 0.25, 0.5, -3.0 / s + 0.25];
    assert_close(&y.data(), &expected, "eval output");
    assert_close(
        &bn.running_mean.data(),
        &EXPECTED_MEAN,
        "running_mean after eval",
    );
    assert_close(
        &bn.running_var.data(),
        &EXPECTED_VAR,
        "running_var after eval",
    );
}

#[test]
fn training_output_has_the_batch_normalised_per_channel() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let bn = BatchNorm::<f64>::new(3).eps(1e-9);
    let y = bn.forward(&Tensor::rand_uniform(&[2, 3, 4, 5], -2.0, 5.0, &mut rng));

    // With γ = 1 and β = 0 every channel comes out with mean 0 and variance 1 (up to ε).
    let y = y.data();
    for c in 0..3 {
        let vals: Vec<f64> = (0..2)
            .flat_map(|n| y[(n * 3 + c) * 20..][..20].to_vec())
            .collect();
        let mean = vals.iter().sum::<f64>() / 40.0;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 40.0;
        assert!(
            mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-6,
            "channel {c}: {mean}, {var}"
        );
    }
}

#[test]
fn names_parameters_and_buffers_like_pytorch() {
    let bn = BatchNorm::<f32>::new(4);
    let names = |v: Vec<(String, Tensor<f32>)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names(bn.parameters()), ["weight", "bias"]);
    assert_eq!(names(bn.buffers()), ["running_mean", "running_var"]);
    assert_eq!(bn.param_count(), 8);
    assert!(bn.is_training());
    assert_eq!(bn.describe(), "BatchNorm(4, momentum 0.99)");
}

#[test]
#[should_panic(expected = "BatchNorm: input is 4 × 3 (expected (N, 2) or (N, 2, H, W))")]
fn rejects_the_wrong_channel_count() {
    BatchNorm::<f32>::new(2).forward(&Tensor::zeros(&[4, 3]));
}
