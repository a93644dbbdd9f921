//! The training loop on tiny synthetic data: it learns something, it resumes bit for bit,
//! the frozen discriminator stays frozen, and the two generator losses have their values.

use std::path::PathBuf;

use autograd::Tensor;
use gan::history::Record;
use gan::mnist::{Mnist, MNIST_SIDE};
use gan::models::ModelKind;
use gan::train::{DataSource, GeneratorLoss, MnistBatches, TrainError, TrainOptions, Trainer};
use layers::{checkpoint, AdamConfig, Module};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn options(batch_size: usize) -> TrainOptions {
    TrainOptions {
        batch_size,
        k: 1,
        adam: AdamConfig {
            lr: 2e-4,
            beta1: 0.5,
            ..AdamConfig::default()
        },
        g_loss: GeneratorLoss::NonSaturating,
    }
}

fn trainer(model: ModelKind, seed: u64, batch_size: usize) -> Trainer {
    Trainer::from_seed(seed, options(batch_size), |rng| model.build(100, rng))
}

/// Every value of every named tensor, as bits, for exact comparison.
fn bits(named: &[(String, Tensor)]) -> Vec<(String, Vec<u32>)> {
    let to_bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect();
    named.iter().map(|(n, t)| (n.clone(), to_bits(t))).collect()
}

fn record_bits(records: &[Record]) -> Vec<[u32; 7]> {
    let row = |r: &Record| {
        let v = [r.d_loss, r.g_loss, r.d_acc, r.d_real, r.d_fake, r.js];
        let mut out = [r.iter as u32; 7];
        for (o, x) in out[1..].iter_mut().zip(v) {
            *o = x.to_bits();
        }
        out
    };
    records.iter().map(row).collect()
}

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gan-train-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn a_few_iterations_of_each_model_change_the_weights_and_keep_losses_finite() {
    let mnist = Mnist::noise(16, 7);
    for (model, batch) in [(ModelKind::Mlp, 8), (ModelKind::Dcgan, 4)] {
        let mut t = trainer(model, 1, batch);
        let g0 = bits(&t.gan.generator.parameters());
        let d0 = bits(&t.gan.discriminator.parameters());

        let mut data = MnistBatches::new(&mnist);
        for want_iter in 1..=3 {
            let r = t.step(&mut data).unwrap();
            assert_eq!(r.iter, want_iter, "{model}");
            let values = [r.d_loss, r.g_loss, r.d_acc, r.d_real, r.d_fake, r.js];
            assert!(values.iter().all(|v| v.is_finite()), "{model}: {r:?}");
            assert!((0.0..=1.0).contains(&r.d_acc), "{model}: {r:?}");
        }

        assert_eq!(t.iteration(), 3);
        assert_ne!(
            bits(&t.gan.generator.parameters()),
            g0,
            "{model}: G did not change"
        );
        assert_ne!(
            bits(&t.gan.discriminator.parameters()),
            d0,
            "{model}: D did not change"
        );
    }
}

#[test]
fn stopping_and_resuming_gives_the_uninterrupted_run_bit_for_bit() {
    let mnist = Mnist::noise(16, 7);
    for (model, batch, half) in [(ModelKind::Mlp, 4, 3), (ModelKind::Dcgan, 2, 1)] {
        let mut data = MnistBatches::new(&mnist);
        let mut straight = trainer(model, 5, batch);
        let records: Vec<Record> = (0..2 * half)
            .map(|_| straight.step(&mut data).unwrap())
            .collect();

        let mut first = trainer(model, 5, batch);
        let mut resumed_records: Vec<Record> =
            (0..half).map(|_| first.step(&mut data).unwrap()).collect();
        let path = temp_file(&format!("{model}.safetensors"));
        first.save(&path, &Default::default()).unwrap();
        drop(first);

        // A different seed: restoring must replace the weights and the random stream.
        let mut second = trainer(model, 99, batch);
        second.restore(&checkpoint::load(&path).unwrap()).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(second.iteration(), half);
        resumed_records.extend((0..half).map(|_| second.step(&mut data).unwrap()));

        assert_eq!(
            record_bits(&resumed_records),
            record_bits(&records),
            "{model}: records"
        );
        assert_eq!(
            bits(&second.checkpoint_tensors()),
            bits(&straight.checkpoint_tensors()),
            "{model}: weights, statistics or optimizer moments differ"
        );
        assert_eq!(
            second.checkpoint_metadata(),
            straight.checkpoint_metadata(),
            "{model}"
        );
        assert_eq!(
            bits(&[("noise".into(), second.fixed_noise(4))]),
            bits(&[("noise".into(), straight.fixed_noise(4))])
        );
    }
}

#[test]
fn drawing_the_fixed_noise_leaves_the_training_stream_alone() {
    let mnist = Mnist::noise(8, 7);
    let mut data = MnistBatches::new(&mnist);
    let (mut a, mut b) = (trainer(ModelKind::Mlp, 3, 4), trainer(ModelKind::Mlp, 3, 4));
    let noise = a.fixed_noise(100);
    assert_eq!(noise.shape(), &[100, 100]);
    let ra = a.step(&mut data).unwrap();
    let rb = b.step(&mut data).unwrap();
    assert_eq!(record_bits(&[ra]), record_bits(&[rb]));
}

#[test]
fn the_generator_step_leaves_the_frozen_discriminator_unchanged() {
    let mnist = Mnist::noise(8, 7);
    for model in [ModelKind::Mlp, ModelKind::Dcgan] {
        let mut t = trainer(model, 2, 4);
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let real = MnistBatches::new(&mnist).batch(4, &mut rng);
        let fake = t.gan.generator.forward(&t.gan.noise(4, &mut rng));
        // One discriminator step first, so that D's optimizer has moments it could apply.
        t.discriminator_step(&real, &fake.detach()).unwrap();

        let d_before = bits(&t.gan.discriminator.parameters());
        let g_before = bits(&t.gan.generator.parameters());
        t.generator_step(&fake).unwrap();

        assert_eq!(
            bits(&t.gan.discriminator.parameters()),
            d_before,
            "{model}: D moved"
        );
        assert_ne!(
            bits(&t.gan.generator.parameters()),
            g_before,
            "{model}: G did not move"
        );
        for (name, p) in t.gan.discriminator.parameters() {
            assert!(p.requires_grad(), "{model}: D's {name} is still frozen");
        }
    }
}

#[test]
fn the_generator_losses_have_their_textbook_values_and_gradients() {
    // D(G(z)) = p for two fixed samples; logits x = ln(p / (1 − p)).
    let p = [0.2f64, 0.7];
    let logit = |p: f64| (p / (1.0 - p)).ln() as f32;
    let cases = [
        // non-saturating: −mean ln p, ∂/∂x = (σ(x) − 1) / n
        (
            GeneratorLoss::NonSaturating,
            -(p[0].ln() + p[1].ln()) / 2.0,
            [-0.4, -0.15],
        ),
        // minimax: mean ln(1 − p), ∂/∂x = −σ(x) / n
        (
            GeneratorLoss::Minimax,
            ((1.0 - p[0]).ln() + (1.0 - p[1]).ln()) / 2.0,
            [-0.1, -0.35],
        ),
    ];
    for (kind, want, want_grad) in cases {
        let x =
            Tensor::from_vec(p.iter().map(|&p| logit(p)).collect(), &[2, 1]).requires_grad_(true);
        let loss = kind.from_logits(&x);
        assert!(
            (f64::from(loss.item()) - want).abs() < 1e-6,
            "{kind}: {} vs {want}",
            loss.item()
        );

        loss.backward();
        let grad = x.grad().unwrap().to_vec();
        for (g, w) in grad.iter().zip(want_grad) {
            assert!(
                (f64::from(*g) - w).abs() < 1e-6,
                "{kind}: gradient {grad:?} vs {want_grad:?}"
            );
        }
    }
}

#[test]
fn a_nan_loss_stops_with_the_iteration_and_leaves_the_discriminator_alone() {
    let mut t = trainer(ModelKind::Mlp, 4, 4);
    let d_before = bits(&t.gan.discriminator.parameters());
    let mut poisoned = |n: usize, _: &mut ChaCha8Rng| Tensor::full(&[n, 1, 28, 28], f32::NAN);

    match t.step(&mut poisoned) {
        Err(TrainError::NonFinite {
            iter: 1,
            loss,
            value,
        }) => {
            assert_eq!(loss, "discriminator");
            assert!(value.is_nan());
        }
        other => panic!("expected a non-finite error at iteration 1, got {other:?}"),
    }
    assert_eq!(bits(&t.gan.discriminator.parameters()), d_before);
}

#[test]
fn restoring_a_checkpoint_of_another_model_is_an_error() {
    let path = temp_file("mlp-for-dcgan.safetensors");
    trainer(ModelKind::Mlp, 1, 2)
        .save(&path, &Default::default())
        .unwrap();
    let mut dcgan = trainer(ModelKind::Dcgan, 1, 2);
    let err = dcgan
        .restore(&checkpoint::load(&path).unwrap())
        .unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(err, TrainError::Checkpoint(_)), "{err}");
    assert!(err.to_string().contains("generator"), "{err}");
}

/// The MLP discriminator treats samples independently, so a real and a fake batch go
/// through it as one batch, with the same logits as two separate passes; the DCGAN one has
/// batch norm and must not be batched (its statistics would mix real and fake).
#[test]
fn real_and_fake_share_one_discriminator_pass_only_without_batch_norm() {
    for (model, batched) in [(ModelKind::Mlp, true), (ModelKind::Dcgan, false)] {
        let t = trainer(model, 3, 4);
        let gan = &t.gan;
        assert_eq!(!gan.discriminator.mixes_samples(), batched, "{model:?}");
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let shape = [4, 1, MNIST_SIDE, MNIST_SIDE];
        let real = Tensor::rand_normal(&shape, 0.0, 1.0, &mut rng);
        let fake = Tensor::rand_normal(&[3, 1, MNIST_SIDE, MNIST_SIDE], 0.0, 1.0, &mut rng);
        let (r, f) = gan.discriminator_logits_pair(&real, &fake);
        assert_eq!(
            (r.shape(), f.shape()),
            (&[4, 1][..], &[3, 1][..]),
            "{model:?}"
        );
        let (r1, f1) = (
            gan.discriminator_logits(&real),
            gan.discriminator_logits(&fake),
        );
        assert_eq!(r.to_vec(), r1.to_vec(), "{model:?}: real logits");
        assert_eq!(f.to_vec(), f1.to_vec(), "{model:?}: fake logits");
    }
}
