//! Dense and the activation layers: gradient checks; freezing; summaries.

use autograd::{gradcheck, Tensor};
use layers::{
    freeze, BatchNorm, Conv2d, Dense, Flatten, Init, LeakyRelu, Module, Relu, Reshape, Sequential,
    Sigmoid, SummaryRow, Tanh,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Checks `layer.forward(inputs[0])` over every element of x and of every parameter.
fn check(name: &str, layer: &dyn Module<f64>, x: Tensor<f64>) {
    let mut inputs = vec![x.requires_grad_(true)];
    inputs.extend(layer.parameters().into_iter().map(|(_, p)| p));
    let report = gradcheck(name, &inputs, |t| layer.forward(&t[0]));
    let report = report.unwrap_or_else(|e| panic!("{e}"));
    let total: usize = inputs.iter().map(|t| t.numel()).sum();
    assert_eq!(
        report.checked, total,
        "{name}: every input and parameter checked"
    );
}

/// Values in ±[0.1, 2): clear of the kinks of ReLU and LeakyReLU at 0, where central
/// differences straddle two slopes.
fn away_from_zero(shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor<f64> {
    let n = shape.iter().product();
    let sign = |rng: &mut ChaCha8Rng| if rng.gen::<bool>() { 1.0 } else { -1.0 };
    let data = (0..n)
        .map(|_| sign(rng) * rng.gen_range(0.1..2.0))
        .collect();
    Tensor::from_vec(data, shape)
}

#[test]
fn dense_gradients_match_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let dense = Dense::<f64>::new(3, 4, Init::GlorotUniform, &mut rng);
    let bias = dense.bias.as_ref().unwrap();
    bias.data_mut()
        .iter_mut()
        .for_each(|b| *b = rng.gen_range(-1.0..1.0));
    check(
        "Dense",
        &dense,
        Tensor::rand_uniform(&[5, 3], -1.0, 1.0, &mut rng),
    );

    let no_bias = Dense::<f64>::new(4, 2, Init::Normal(0.5), &mut rng).without_bias();
    check(
        "Dense without bias",
        &no_bias,
        Tensor::rand_uniform(&[3, 4], -1.0, 1.0, &mut rng),
    );
}

#[test]
fn activation_gradients_match_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let layers: [(&str, Box<dyn Module<f64>>); 6] = [
        ("ReLU", Box::new(Relu)),
        ("LeakyReLU(0.2)", Box::new(LeakyRelu(0.2))),
        ("Tanh", Box::new(Tanh)),
        ("Sigmoid", Box::new(Sigmoid)),
        ("Flatten", Box::new(Flatten)),
        ("Reshape", Box::new(Reshape(vec![4, 3]))),
    ];
    for (name, layer) in &layers {
        let x = away_from_zero(&[2, 3, 2, 2], &mut rng);
        let out = layer.output_shape(x.shape());
        assert_eq!(layer.forward(&x).shape(), out, "{name}: output_shape");
        check(name, layer.as_ref(), x);
    }
}

#[test]
fn freezing_stops_parameter_gradients_but_not_input_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    // The GAN pattern: the generator trains through a frozen discriminator.
    let generator = Dense::<f64>::new(2, 3, Init::GlorotUniform, &mut rng);
    let discriminator = Sequential::new()
        .with(Dense::new(3, 4, Init::GlorotUniform, &mut rng))
        .with(Tanh)
        .with(Dense::new(4, 1, Init::GlorotUniform, &mut rng));
    freeze(&discriminator, true);

    let z = Tensor::rand_uniform(&[5, 2], -1.0, 1.0, &mut rng).requires_grad_(true);
    discriminator
        .forward(&generator.forward(&z))
        .sum()
        .backward();

    for (name, p) in discriminator.parameters() {
        assert!(p.grad().is_none(), "frozen {name} received a gradient");
    }
    for (name, p) in generator.parameters() {
        assert!(p.grad().is_some(), "generator {name} received no gradient");
    }
    assert!(z.grad().is_some(), "the input received no gradient");

    freeze(&discriminator, false);
    discriminator
        .forward(&generator.forward(&z))
        .sum()
        .backward();
    for (name, p) in discriminator.parameters() {
        assert!(p.grad().is_some(), "unfrozen {name} received no gradient");
    }
}

#[test]
fn summary_lists_each_layer_with_shape_and_parameter_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let model = Sequential::<f32>::new()
        .with(Dense::new(100, 256, Init::Normal(0.02), &mut rng))
        .with(LeakyRelu(0.2))
        .with(BatchNorm::new(256).momentum(0.8))
        .with(Dense::new(256, 784, Init::Normal(0.02), &mut rng))
        .with(Tanh)
        .with(Reshape(vec![1, 28, 28]))
        .with(Conv2d::new(
            1,
            8,
            3,
            2,
            1,
            true,
            Init::GlorotUniform,
            &mut rng,
        ))
        .with(Flatten);

    let row = |layer: &str, output_shape: &[usize], params| SummaryRow {
        layer: layer.to_string(),
        output_shape: output_shape.to_vec(),
        params,
    };
    let expected = [
        row("0 Dense(100 → 256)", &[32, 256], 100 * 256 + 256),
        row("1 LeakyReLU(0.2)", &[32, 256], 0),
        row("2 BatchNorm(256, momentum 0.8)", &[32, 256], 2 * 256),
        row("3 Dense(256 → 784)", &[32, 784], 256 * 784 + 784),
        row("4 Tanh", &[32, 784], 0),
        row("5 Reshape([1, 28, 28])", &[32, 1, 28, 28], 0),
        row("6 Conv2d(1 → 8, k3, s2, p1)", &[32, 8, 14, 14], 8 * 9 + 8),
        row("7 Flatten", &[32, 8 * 14 * 14], 0),
    ];
    assert_eq!(model.summary(&[32, 100]), expected);

    let total: usize = expected.iter().map(|r| r.params).sum();
    assert_eq!(model.param_count(), total);
    let x = Tensor::zeros(&[2, 100]);
    assert_eq!(model.forward(&x).shape(), model.output_shape(x.shape()));
}

#[test]
fn sequential_names_parameters_and_buffers_by_position() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let model = Sequential::<f32>::new()
        .with(Dense::new(3, 4, Init::GlorotUniform, &mut rng))
        .with(Relu)
        .with(BatchNorm::new(4));
    let names = |v: Vec<(String, Tensor<f32>)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(
        names(model.parameters()),
        ["0.weight", "0.bias", "2.weight", "2.bias"]
    );
    assert_eq!(names(model.buffers()), ["2.running_mean", "2.running_var"]);
}

/// A network whose batch norms are followed by ReLU and LeakyReLU, which `Sequential`
/// runs as fused ops in training mode.
fn normed_net(rng: &mut ChaCha8Rng) -> Sequential {
    Sequential::new()
        .with(Conv2d::new(2, 4, 3, 1, 1, false, Init::Normal(0.5), rng))
        .with(BatchNorm::new(4))
        .with(Relu)
        .with(Flatten)
        .with(Dense::new(4 * 5 * 5, 6, Init::GlorotUniform, rng))
        .with(BatchNorm::new(6))
        .with(LeakyRelu(0.2))
}

/// The output, the gradient of every parameter and the running statistics of `net` after
/// one training forward and backward pass; with `fused`, through `Sequential::forward`,
/// else layer by layer.
fn one_step(net: &Sequential, fused: bool) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let x = Tensor::<f32>::rand_normal(&[7, 2, 5, 5], 0.0, 1.0, &mut rng);
    let y = match fused {
        true => net.forward(&x),
        false => net.layers().iter().fold(x, |h, l| l.forward(&h)),
    };
    y.sum().backward();
    let mut out = vec![y.to_vec()];
    out.extend(
        net.parameters()
            .iter()
            .map(|(_, p)| p.grad().expect("grad").to_vec()),
    );
    out.extend(net.buffers().iter().map(|(_, b)| b.to_vec()));
    out
}

#[test]
fn sequential_fuses_batch_norm_and_activation_without_changing_results() {
    let fused = one_step(&normed_net(&mut ChaCha8Rng::seed_from_u64(7)), true);
    let separate = one_step(&normed_net(&mut ChaCha8Rng::seed_from_u64(7)), false);
    assert_eq!(fused.len(), separate.len());
    for (i, (f, s)) in fused.iter().zip(&separate).enumerate() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(f), bits(s), "tensor {i} differs");
    }
    // The ReLU after the first norm did act: some outputs of the first block are clipped.
    let net = normed_net(&mut ChaCha8Rng::seed_from_u64(7));
    let x = Tensor::<f32>::rand_normal(&[7, 2, 5, 5], 0.0, 1.0, &mut ChaCha8Rng::seed_from_u64(3));
    let first = net.layers()[..3].iter().fold(x, |h, l| l.forward(&h));
    assert!(first.to_vec().contains(&0.0));
}

#[test]
fn batch_norm_in_evaluation_mode_does_not_fuse() {
    let bn = BatchNorm::<f32>::new(3);
    let x = Tensor::<f32>::ones(&[2, 3]);
    assert!(bn
        .forward_then(&x, autograd::FusedActivation::Relu)
        .is_some());
    bn.set_training(false);
    assert!(bn
        .forward_then(&x, autograd::FusedActivation::Relu)
        .is_none());
    assert_eq!(
        Module::<f32>::as_fused_activation(&LeakyRelu(0.2)),
        Some(autograd::FusedActivation::LeakyRelu(0.2))
    );
    assert_eq!(Module::<f32>::as_fused_activation(&LeakyRelu(-0.1)), None);
    assert_eq!(Module::<f32>::as_fused_activation(&Tanh), None);
}

/// A layer that records whether `Sequential` asked it to apply the next layer's activation.
struct Probe(std::cell::Cell<Option<autograd::FusedActivation>>);

impl Module<f32> for Probe {
    fn forward(&self, x: &Tensor<f32>) -> Tensor<f32> {
        x.clone()
    }
    fn forward_then(&self, x: &Tensor<f32>, act: autograd::FusedActivation) -> Option<Tensor<f32>> {
        self.0.set(Some(act));
        Some(x.relu())
    }
    fn parameters(&self) -> Vec<(String, Tensor<f32>)> {
        Vec::new()
    }
    fn describe(&self) -> String {
        "Probe".to_string()
    }
    fn output_shape(&self, input: &[usize]) -> Vec<usize> {
        input.to_vec()
    }
}

#[test]
fn sequential_offers_a_layer_the_activation_after_it() {
    let probe = std::rc::Rc::new(Probe(std::cell::Cell::new(None)));
    struct Shared(std::rc::Rc<Probe>);
    impl Module<f32> for Shared {
        fn forward(&self, x: &Tensor<f32>) -> Tensor<f32> {
            self.0.forward(x)
        }
        fn forward_then(
            &self,
            x: &Tensor<f32>,
            act: autograd::FusedActivation,
        ) -> Option<Tensor<f32>> {
            self.0.forward_then(x, act)
        }
        fn parameters(&self) -> Vec<(String, Tensor<f32>)> {
            Vec::new()
        }
        fn describe(&self) -> String {
            self.0.describe()
        }
        fn output_shape(&self, input: &[usize]) -> Vec<usize> {
            input.to_vec()
        }
    }
    let net = Sequential::new()
        .with(Shared(probe.clone()))
        .with(LeakyRelu(0.5));
    let y = net.forward(&Tensor::from_vec(vec![-1.0, 2.0], &[1, 2]));
    assert_eq!(
        probe.0.get(),
        Some(autograd::FusedActivation::LeakyRelu(0.5))
    );
    // The probe's fused op (a ReLU) replaced both layers: the leaky ReLU did not run again.
    assert_eq!(y.to_vec(), vec![0.0, 2.0]);
}
