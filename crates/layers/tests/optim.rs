//! Adam and SGD: updates computed by hand, and a small network trained to near-zero loss.

use autograd::Tensor;
use layers::{Adam, AdamConfig, Dense, Init, Module, Optimizer, Sequential, Sgd, Tanh};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One parameter θ = (1, −2) with a gradient set by hand (no graph needed).
fn parameter() -> Vec<(String, Tensor<f64>)> {
    let theta = Tensor::from_vec(vec![1.0, -2.0], &[2]).requires_grad_(true);
    vec![("theta".to_string(), theta)]
}

fn step_with(opt: &mut dyn Optimizer<f64>, theta: &Tensor<f64>, grad: &[f64]) {
    opt.zero_grad();
    theta.accumulate_grad(grad);
    opt.step();
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() < 1e-12,
            "{what}[{i}]: got {g:.15}, want {w:.15}"
        );
    }
}

/// α = 0.1, β₁ = 0.9, β₂ = 0.999, ε = 10⁻⁷; gradients g₁ = (0.5, −0.1), g₂ = (−0.5, 0.3).
///
/// ```text
/// step 1: m = 0.1·g₁ = (0.05, −0.01)              m̂ = m / 0.1   = (0.5, −0.1)
///         v = 0.001·g₁² = (0.00025, 0.00001)      v̂ = v / 0.001 = (0.25, 0.01)
///         θ = (1, −2) − 0.1·(0.5/(0.5 + ε), −0.1/(0.1 + ε))
/// step 2: m = 0.9·m + 0.1·g₂ = (−0.005, 0.021)    m̂ = m / 0.19
///         v = 0.999·v + 0.001·g₂² = (0.00049975, 0.00009999)
///         v̂ = v / 0.001999 = (0.25, 0.05002…)     (1 − 0.999² = 0.001999)
///         θ ← θ − 0.1·m̂ / (√v̂ + ε)
/// ```
#[test]
fn adam_matches_two_steps_by_hand() {
    let params = parameter();
    let theta = params[0].1.clone();
    let config = AdamConfig {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-7,
    };
    let mut adam = Adam::new(params, config);
    let eps = 1e-7;

    step_with(&mut adam, &theta, &[0.5, -0.1]);
    let after_one = [
        1.0 - 0.1 * 0.5 / (0.5 + eps),
        -2.0 + 0.1 * 0.1 / (0.1 + eps),
    ];
    assert_close(&theta.data(), &after_one, "θ after step 1");

    step_with(&mut adam, &theta, &[-0.5, 0.3]);
    let v_hat_1: f64 = 0.00009999 / 0.001999;
    let after_two = [
        after_one[0] - 0.1 * (-0.005 / 0.19) / (0.25f64.sqrt() + eps),
        after_one[1] - 0.1 * (0.021 / 0.19) / (v_hat_1.sqrt() + eps),
    ];
    assert_close(&theta.data(), &after_two, "θ after step 2");
    assert_eq!(adam.steps(), 2);
}

/// α = 0.1, μ = 0.9; gradients g₁ = (0.5, −0.1), g₂ = (−0.5, 0.3).
///
/// ```text
/// step 1: u = g₁ = (0.5, −0.1)                        θ = (1, −2) − 0.1·u = (0.95, −1.99)
/// step 2: u = 0.9·u + g₂ = (0.45 − 0.5, −0.09 + 0.3) = (−0.05, 0.21)
///                                                    θ = (0.95 + 0.005, −1.99 − 0.021)
/// ```
#[test]
fn sgd_momentum_matches_two_steps_by_hand() {
    let params = parameter();
    let theta = params[0].1.clone();
    let mut sgd = Sgd::new(params, 0.1, 0.9);

    step_with(&mut sgd, &theta, &[0.5, -0.1]);
    assert_close(&theta.data(), &[0.95, -1.99], "θ after step 1");
    step_with(&mut sgd, &theta, &[-0.5, 0.3]);
    assert_close(&theta.data(), &[0.955, -2.011], "θ after step 2");
}

#[test]
fn adam_state_round_trip_continues_identically() {
    let (a, b, r) = (parameter(), parameter(), parameter());
    let (theta_a, theta_b, theta_r) = (a[0].1.clone(), b[0].1.clone(), r[0].1.clone());
    let mut first = Adam::new(a, AdamConfig::default());
    let mut reference = Adam::new(b, AdamConfig::default());
    step_with(&mut first, &theta_a, &[0.3, -0.7]);
    step_with(&mut reference, &theta_b, &[0.3, -0.7]);

    // Resume from θ and the state of `first` in a fresh optimizer.
    let mut resumed = Adam::new(r, AdamConfig::default());
    theta_r.data_mut().copy_from_slice(&theta_a.data());
    resumed.load_state(first.steps(), &first.state()).unwrap();

    step_with(&mut resumed, &theta_r, &[-0.2, 0.4]);
    step_with(&mut reference, &theta_b, &[-0.2, 0.4]);
    assert_eq!(*theta_r.data(), *theta_b.data());
    assert_eq!(resumed.steps(), 2);
}

/// XOR: not linearly separable, so the hidden layer has to do real work.
#[test]
fn adam_trains_a_small_network_on_xor() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let model = Sequential::<f32>::new()
        .with(Dense::new(2, 16, Init::GlorotUniform, &mut rng))
        .with(Tanh)
        .with(Dense::new(16, 1, Init::GlorotUniform, &mut rng));
    let config = AdamConfig {
        lr: 0.02,
        ..AdamConfig::default()
    };
    let mut adam = Adam::new(model.parameters(), config);

    let x = Tensor::from_vec(vec![0., 0., 0., 1., 1., 0., 1., 1.], &[4, 2]);
    let target = Tensor::from_vec(vec![0., 1., 1., 0.], &[4, 1]);
    let mut loss = f32::INFINITY;
    for _ in 0..1000 {
        adam.zero_grad();
        let l = model.forward(&x).mse(&target);
        l.backward();
        adam.step();
        loss = l.item();
    }
    assert!(loss < 1e-3, "XOR loss after 1000 Adam steps: {loss}");
}
