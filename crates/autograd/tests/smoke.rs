use autograd::{gradcheck, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn mlp_with_loss_passes_gradcheck() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x = Tensor::<f64>::rand_normal(&[4, 3], 0.0, 1.0, &mut rng).requires_grad_(true);
    let w1 = Tensor::<f64>::rand_normal(&[3, 5], 0.0, 0.5, &mut rng).requires_grad_(true);
    let b1 = Tensor::<f64>::rand_normal(&[5], 0.0, 0.5, &mut rng).requires_grad_(true);
    let w2 = Tensor::<f64>::rand_normal(&[5, 1], 0.0, 0.5, &mut rng).requires_grad_(true);
    let t = Tensor::<f64>::from_vec(vec![1.0, 0.0, 1.0, 0.0], &[4, 1]);
    let r = gradcheck("mlp", &[x, w1, b1, w2], |p| {
        let h = p[0].matmul(&p[1]).add(&p[2]).tanh();
        h.matmul(&p[3]).bce_with_logits(&t)
    })
    .unwrap();
    assert_eq!(r.checked, 12 + 15 + 5 + 5);
}

#[test]
fn wrong_backward_is_caught() {
    use autograd::GradFn;
    let x = Tensor::<f64>::from_vec(vec![0.3, -0.7], &[2]).requires_grad_(true);
    let err = gradcheck("bad_square", &[x], |p| {
        let y: Vec<f64> = p[0].data().iter().map(|v| v * v).collect();
        let gf = GradFn::new("bad_square", vec![p[0].clone()], |inp, _, g| {
            // deliberately wrong: 3x instead of 2x
            let gi: Vec<f64> = inp[0]
                .data()
                .iter()
                .zip(g)
                .map(|(x, g)| 3.0 * x * g)
                .collect();
            inp[0].accumulate_grad_vec(gi);
        });
        Tensor::from_op(vec![2], y, gf)
    })
    .unwrap_err();
    assert_eq!(err.failures, 2);
    assert!(err.to_string().contains("bad_square"));
}
