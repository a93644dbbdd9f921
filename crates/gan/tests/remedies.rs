//! The minibatch standard-deviation layer: its value on numbers worked by hand, its shapes,
//! and its gradient against central differences (f64, through the whole batch).

use autograd::gradcheck::gradcheck;
use autograd::Tensor;
use gan::remedies::MinibatchStdDev;
use layers::Module;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The layer without ε, for values that come out exact.
const NO_EPS: MinibatchStdDev = MinibatchStdDev { eps: 0.0 };

#[test]
fn appends_the_mean_feature_std_as_a_column() {
    // Column 0 is {0, 2}: μ = 1, variance ((−1)² + 1²)/2 = 1, σ = 1.
    // Column 1 is {1, 1}: σ = 0.  So s = (1 + 0)/2 = 0.5 on every row.
    let x = Tensor::<f32>::from_vec(vec![0.0, 1.0, 2.0, 1.0], &[2, 2]);
    let y = NO_EPS.forward(&x);
    assert_eq!(y.shape(), &[2, 3]);
    assert_eq!(y.to_vec(), vec![0.0, 1.0, 0.5, 2.0, 1.0, 0.5]);
}

#[test]
fn a_collapsed_batch_gets_sqrt_eps() {
    let x = Tensor::<f64>::from_vec([0.3, -0.7].repeat(5), &[5, 2]);
    let layer = MinibatchStdDev { eps: 1e-6 };
    let y = layer.forward(&x).to_vec();
    for row in y.chunks_exact(3) {
        assert!(
            (row[2] - 1e-3).abs() < 1e-15,
            "s = {} for a collapsed batch",
            row[2]
        );
    }
}

#[test]
fn images_get_a_constant_channel() {
    // Two 2 × 1 × 2 "images": per position σ over the batch is |a − b|/2.
    // Positions: (0, 4) → 2, (1, 1) → 0, (−3, 3) → 3, (2, 0) → 1; s = 6/4 = 1.5.
    let a = [0.0, 1.0, -3.0, 2.0];
    let b = [4.0, 1.0, 3.0, 0.0];
    let x = Tensor::<f64>::from_vec([a, b].concat(), &[2, 2, 1, 2]);
    let y = NO_EPS.forward(&x);
    assert_eq!(y.shape(), &[2, 3, 1, 2]);
    assert_eq!(
        Module::<f64>::output_shape(&NO_EPS, &[2, 2, 1, 2]),
        y.shape()
    );
    let want = [&a[..], &[1.5, 1.5], &b[..], &[1.5, 1.5]].concat();
    assert_eq!(y.to_vec(), want);
}

#[test]
fn has_no_parameters_and_describes_itself() {
    let layer = MinibatchStdDev::default();
    assert!(Module::<f32>::parameters(&layer).is_empty());
    assert_eq!(Module::<f32>::describe(&layer), "MinibatchStdDev");
    assert_eq!(
        Module::<f32>::output_shape(&layer, &[64, 128]),
        vec![64, 129]
    );
}

#[test]
fn gradient_matches_finite_differences_for_features() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x = Tensor::<f64>::rand_normal(&[5, 3], 0.0, 1.0, &mut rng).requires_grad_(true);
    let layer = MinibatchStdDev::default();
    let report = gradcheck("minibatch_stddev (5, 3)", &[x], |t| layer.forward(&t[0]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.checked, 15);
}

#[test]
fn gradient_matches_finite_differences_for_images() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let x = Tensor::<f64>::rand_normal(&[3, 2, 2, 2], 0.5, 2.0, &mut rng).requires_grad_(true);
    let layer = MinibatchStdDev::default();
    let report = gradcheck("minibatch_stddev (3, 2, 2, 2)", &[x], |t| {
        layer.forward(&t[0])
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.checked, 24);
}
