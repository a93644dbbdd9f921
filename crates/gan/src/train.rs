//! The adversarial training loop, generic over the two networks and the data.
//!
//! # One iteration
//!
//! The order is that of PyTorch's DCGAN example, with k discriminator steps:
//!
//! 1. k times: draw a real minibatch x and noise z, run the generator once, fake = G(z);
//!    update D on x labelled 1 and `fake.detach()` labelled 0 (the detach keeps D's loss from
//!    reaching G), with one Adam step on the mean of the two cross-entropies.
//! 2. Freeze D's parameters ([`layers::freeze`]) and pass the last `fake`, whose graph
//!    through G is still recorded, through D again: the generator's loss flows back through
//!    D's input into G, one Adam step updates G, and D is unfrozen.
//!
//! So each iteration runs G forward k times (only the last one recorded) and D forward
//! 2k + 1 times. Both networks stay in training mode throughout, so batch norm in D uses
//! batch statistics in the generator step too, as in the PyTorch example; its running
//! statistics, which training never reads, keep following those batches.
//!
//! # Losses on logits
//!
//! The discriminator ends in a [`layers::Sigmoid`], and its summary shows it, but training
//! runs D without that last layer and applies [`Tensor::bce_with_logits`] to the logits: the
//! same mathematics as the sigmoid followed by cross-entropy, without the clamp that a
//! probability of exactly 0 or 1 would need.
//!
//! # Randomness
//!
//! One `ChaCha8Rng` (stream 0) drives everything in order: the weights (G first, then D),
//! then, for each discriminator step, the indices of the real minibatch and the noise. Its
//! state goes into the checkpoint, so a resumed run draws exactly what the uninterrupted
//! run would have drawn. The fixed noise for sample grids comes from the same seed on
//! stream [`FIXED_NOISE_STREAM`], which leaves the training stream untouched.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use autograd::{no_grad, Tensor};
use layers::checkpoint::{self, Checkpoint, CheckpointError};
use layers::{freeze, Adam, AdamConfig, Module, Optimizer, Sequential};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::history::Record;
use crate::mnist::{scale_to_tanh, Mnist};

/// The ChaCha stream that the fixed sample-grid noise is drawn from.
pub const FIXED_NOISE_STREAM: u64 = 1;

/// Checkpoint tensor prefixes.
const GENERATOR: &str = "generator";
const DISCRIMINATOR: &str = "discriminator";
const OPTIM_G: &str = "optim_g";
const OPTIM_D: &str = "optim_d";

/// Checkpoint metadata keys written by [`Trainer::save`].
const KEY_ITERATION: &str = "iteration";
const KEY_STEPS_G: &str = "optim_g.steps";
const KEY_STEPS_D: &str = "optim_d.steps";
const KEY_RNG_SEED: &str = "rng.seed";
const KEY_RNG_STREAM: &str = "rng.stream";
const KEY_RNG_WORD_POS: &str = "rng.word_pos";

/// What can stop training or a checkpoint round trip.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A loss became NaN or infinite; no optimizer step was taken with it.
    #[error("iteration {iter}: the {loss} loss is {value}; training diverged")]
    NonFinite {
        /// The iteration that failed (1-based: the one being computed).
        iter: u64,
        /// Which loss: `discriminator` or `generator`.
        loss: &'static str,
        /// Its value.
        value: f32,
    },
    /// The checkpoint could not be written or read, or does not fit the models.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A metadata entry the trainer needs is missing or malformed.
    #[error("checkpoint metadata `{key}`: {reason}")]
    Metadata {
        /// The metadata key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The generator's objective.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GeneratorLoss {
    /// Maximise log D(G(z)): minimise −mean ln D(G(z)), the cross-entropy against label 1.
    /// Its gradient is strong where D rejects the fakes, early in training.
    #[default]
    NonSaturating,
    /// Minimise log(1 − D(G(z))), the original minimax game: the loss is
    /// mean ln(1 − D(G(z))) = −(cross-entropy against label 0). Its gradient vanishes when
    /// D confidently rejects the fakes.
    Minimax,
}

impl GeneratorLoss {
    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            GeneratorLoss::NonSaturating => "non-saturating",
            GeneratorLoss::Minimax => "minimax",
        }
    }

    /// The loss from D's logits on generated samples (a scalar tensor).
    pub fn from_logits(self, fake_logits: &Tensor) -> Tensor {
        match self {
            GeneratorLoss::NonSaturating => fake_logits.bce_with_logits(&ones_like(fake_logits)),
            GeneratorLoss::Minimax => fake_logits.bce_with_logits(&zeros_like(fake_logits)).neg(),
        }
    }
}

impl fmt::Display for GeneratorLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for GeneratorLoss {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "non-saturating" => Ok(GeneratorLoss::NonSaturating),
            "minimax" => Ok(GeneratorLoss::Minimax),
            other => Err(format!(
                "unknown generator loss `{other}`: expected `non-saturating` or `minimax`"
            )),
        }
    }
}

fn ones_like(t: &Tensor) -> Tensor {
    Tensor::ones(t.shape())
}

fn zeros_like(t: &Tensor) -> Tensor {
    Tensor::zeros(t.shape())
}

/// Where real minibatches come from.
pub trait DataSource {
    /// `n` real samples drawn with `rng`, stacked along a new first axis, shaped as the
    /// discriminator expects.
    fn batch(&mut self, n: usize, rng: &mut ChaCha8Rng) -> Tensor;
}

/// Any closure `(n, rng) → batch` is a data source (e.g. a 2-D toy distribution).
impl<F: FnMut(usize, &mut ChaCha8Rng) -> Tensor> DataSource for F {
    fn batch(&mut self, n: usize, rng: &mut ChaCha8Rng) -> Tensor {
        self(n, rng)
    }
}

/// MNIST kept as bytes; each minibatch draws images uniformly with replacement (as the Keras
/// example does) and scales only those to [-1, 1].
pub struct MnistBatches<'a> {
    mnist: &'a Mnist,
}

impl<'a> MnistBatches<'a> {
    /// Batches from `mnist`, shaped (n, 1, rows, cols).
    ///
    /// # Panics
    /// When `mnist` holds no images.
    #[track_caller]
    pub fn new(mnist: &'a Mnist) -> Self {
        assert!(
            mnist.count > 0,
            "MnistBatches: the data set holds no images"
        );
        MnistBatches { mnist }
    }
}

impl DataSource for MnistBatches<'_> {
    fn batch(&mut self, n: usize, rng: &mut ChaCha8Rng) -> Tensor {
        let len = self.mnist.image_len();
        let mut out = vec![0.0; n * len];
        for chunk in out.chunks_exact_mut(len) {
            let index = rng.gen_range(0..self.mnist.count);
            scale_to_tanh(self.mnist.image(index), chunk);
        }
        Tensor::from_vec(out, &[n, 1, self.mnist.rows, self.mnist.cols])
    }
}

/// A generator and a discriminator, with the shapes of one noise vector and one sample.
pub struct Gan {
    /// Noise (N, noise…) → samples (N, sample…).
    pub generator: Sequential,
    /// Samples (N, sample…) → probability of being real (N, 1); its last layer is a sigmoid.
    pub discriminator: Sequential,
    /// Shape of one noise input, without the batch axis.
    pub noise_shape: Vec<usize>,
    /// Shape of one sample, without the batch axis.
    pub sample_shape: Vec<usize>,
}

impl Gan {
    /// Bundles the two networks.
    ///
    /// # Panics
    /// When the discriminator's last layer is not a sigmoid (training needs its logits), or
    /// when the generator's output shape for `noise_shape` differs from `sample_shape`.
    #[track_caller]
    pub fn new(
        generator: Sequential,
        discriminator: Sequential,
        noise_shape: &[usize],
        sample_shape: &[usize],
    ) -> Gan {
        let last = discriminator.layers().last().map(|l| l.describe());
        assert!(
            last.as_deref() == Some("Sigmoid"),
            "Gan::new: the discriminator must end in a Sigmoid, found {last:?}"
        );
        let made = generator.output_shape(&batch_shape(1, noise_shape));
        assert!(
            made[1..] == *sample_shape,
            "Gan::new: the generator makes {:?} from noise {noise_shape:?}, expected \
             {sample_shape:?}",
            &made[1..]
        );
        Gan {
            generator,
            discriminator,
            noise_shape: noise_shape.to_vec(),
            sample_shape: sample_shape.to_vec(),
        }
    }

    /// D's logits: every layer but the final sigmoid.
    pub fn discriminator_logits(&self, x: &Tensor) -> Tensor {
        let body = self.discriminator.layers().len() - 1;
        self.discriminator.forward_first(x, body)
    }

    /// D's logits on a real and a fake batch. When no layer of D lets samples influence one
    /// another, the two batches go through D as one concatenated batch (the same numbers,
    /// half the passes over D's weights); otherwise, as with batch norm, each batch is run
    /// on its own so that its statistics stay its own.
    pub fn discriminator_logits_pair(&self, real: &Tensor, fake: &Tensor) -> (Tensor, Tensor) {
        if self.discriminator.mixes_samples() {
            return (
                self.discriminator_logits(real),
                self.discriminator_logits(fake),
            );
        }
        let n = real.shape()[0];
        let both = Tensor::concat(&[real.clone(), fake.clone()], 0);
        let logits = self.discriminator_logits(&both);
        let total = logits.shape()[0];
        (logits.slice(0, 0, n), logits.slice(0, n, total))
    }

    /// `n` standard-normal noise vectors drawn from `rng`.
    pub fn noise<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Tensor {
        Tensor::rand_normal(&batch_shape(n, &self.noise_shape), 0.0, 1.0, rng)
    }

    /// G(noise) in evaluation mode (batch norm uses its running statistics, so each sample
    /// depends only on its own noise), recording nothing.
    pub fn generate(&self, noise: &Tensor) -> Tensor {
        self.generator.set_training(false);
        let out = no_grad(|| self.generator.forward(noise));
        self.generator.set_training(true);
        out
    }

    /// `count` samples in evaluation mode from fresh noise, generated `chunk` at a time to
    /// bound memory; returns `count · sample_len` values.
    pub fn generate_many<R: Rng + ?Sized>(
        &self,
        count: usize,
        chunk: usize,
        rng: &mut R,
    ) -> Vec<f32> {
        let mut out = Vec::with_capacity(count * self.sample_len());
        let mut left = count;
        while left > 0 {
            let n = left.min(chunk.max(1));
            out.extend_from_slice(&self.generate(&self.noise(n, rng)).data());
            left -= n;
        }
        out
    }

    /// Values in one sample.
    pub fn sample_len(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// Parameters and buffers of the generator, for checkpoints.
    pub fn generator_state(&self) -> Vec<(String, Tensor)> {
        module_state(&self.generator)
    }

    /// Parameters and buffers of the discriminator, for checkpoints.
    pub fn discriminator_state(&self) -> Vec<(String, Tensor)> {
        module_state(&self.discriminator)
    }

    /// Restores the generator alone (what sampling needs) from a checkpoint.
    pub fn restore_generator(&self, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
        ckpt.restore(GENERATOR, &self.generator_state())
    }
}

fn module_state(m: &Sequential) -> Vec<(String, Tensor)> {
    let mut state = m.parameters();
    state.extend(m.buffers());
    state
}

/// `[n, shape…]`.
fn batch_shape(n: usize, shape: &[usize]) -> Vec<usize> {
    let mut s = vec![n];
    s.extend_from_slice(shape);
    s
}

/// Hyper-parameters of the loop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainOptions {
    /// Real (and fake) samples per minibatch.
    pub batch_size: usize,
    /// Discriminator steps per generator step.
    pub k: usize,
    /// Adam settings, shared by both networks.
    pub adam: AdamConfig,
    /// The generator's objective.
    pub g_loss: GeneratorLoss,
}

/// The discriminator's statistics on one step, measured before its update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiscriminatorStats {
    /// ½ [BCE(D(x), 1) + BCE(D(fake), 0)].
    pub loss: f32,
    /// Fraction of real and fake samples classified correctly (D > ½ means real).
    pub accuracy: f32,
    /// Mean D(x) over the real batch.
    pub mean_real: f32,
    /// Mean D(G(z)) over the fake batch.
    pub mean_fake: f32,
}

/// The two networks, their optimizers, the random generator and the iteration count.
pub struct Trainer {
    /// The networks being trained.
    pub gan: Gan,
    /// The loop's hyper-parameters.
    pub options: TrainOptions,
    opt_g: Adam,
    opt_d: Adam,
    rng: ChaCha8Rng,
    iter: u64,
}

impl Trainer {
    /// A trainer at iteration 0. `rng` continues the stream that built `gan`.
    ///
    /// # Panics
    /// When `options.batch_size` or `options.k` is 0.
    #[track_caller]
    pub fn new(gan: Gan, options: TrainOptions, rng: ChaCha8Rng) -> Trainer {
        assert!(
            options.batch_size > 0 && options.k > 0,
            "Trainer::new: batch size ({}) and k ({}) must be at least 1",
            options.batch_size,
            options.k
        );
        let opt_g = Adam::new(gan.generator.parameters(), options.adam);
        let opt_d = Adam::new(gan.discriminator.parameters(), options.adam);
        Trainer {
            gan,
            options,
            opt_g,
            opt_d,
            rng,
            iter: 0,
        }
    }

    /// Seeds a `ChaCha8Rng` with `seed`, builds the networks with `build` from it and
    /// returns a trainer that continues the same stream.
    pub fn from_seed(
        seed: u64,
        options: TrainOptions,
        build: impl FnOnce(&mut ChaCha8Rng) -> Gan,
    ) -> Trainer {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let gan = build(&mut rng);
        Trainer::new(gan, options, rng)
    }

    /// Iterations completed.
    pub fn iteration(&self) -> u64 {
        self.iter
    }

    /// `count` noise vectors that depend only on the seed (stream [`FIXED_NOISE_STREAM`]):
    /// the same at every call, before and after a resume.
    pub fn fixed_noise(&self, count: usize) -> Tensor {
        let mut rng = ChaCha8Rng::from_seed(self.rng.get_seed());
        rng.set_stream(FIXED_NOISE_STREAM);
        self.gan.noise(count, &mut rng)
    }

    /// Runs one iteration (k discriminator steps, one generator step) and returns its
    /// record, numbered from 1.
    ///
    /// A NaN or infinite loss returns [`TrainError::NonFinite`] before the optimizer step
    /// that would have used it; the trainer should then be dropped, as the iteration was
    /// left half done.
    pub fn step<S: DataSource + ?Sized>(&mut self, data: &mut S) -> Result<Record, TrainError> {
        let iter = self.iter + 1;
        let n = self.options.batch_size;

        let mut last = None;
        for d_step in 1..=self.options.k {
            let real = data.batch(n, &mut self.rng);
            let z = self.gan.noise(n, &mut self.rng);
            // Only the fake that the generator step reuses needs its graph.
            let fake = match d_step == self.options.k {
                true => self.gan.generator.forward(&z),
                false => no_grad(|| self.gan.generator.forward(&z)),
            };
            let stats = self.discriminator_step(&real, &fake.detach())?;
            last = Some((fake, stats));
        }
        let (fake, d) = last.expect("k ≥ 1 is checked in Trainer::new");
        let g_loss = self.generator_step(&fake)?;

        self.iter = iter;
        Ok(Record::new(
            iter,
            d.loss,
            g_loss,
            d.accuracy,
            d.mean_real,
            d.mean_fake,
        ))
    }

    /// One Adam step of D on L_D = ½ [BCE(D(x), 1) + BCE(D(fake), 0)], with `fake` taken as
    /// a constant. Part of [`Trainer::step`]; public for experiments that train D alone.
    ///
    /// A non-finite loss returns [`TrainError::NonFinite`] and leaves D unchanged.
    pub fn discriminator_step(
        &mut self,
        real: &Tensor,
        fake: &Tensor,
    ) -> Result<DiscriminatorStats, TrainError> {
        let iter = self.iter + 1;
        self.opt_d.zero_grad();
        let (real_logits, fake_logits) = self.gan.discriminator_logits_pair(real, fake);
        let real_loss = real_logits.bce_with_logits(&ones_like(&real_logits));
        let fake_loss = fake_logits.bce_with_logits(&zeros_like(&fake_logits));
        let loss = real_loss.add(&fake_loss).mul_scalar(0.5);

        let value = finite(iter, "discriminator", loss.item())?;
        loss.backward();
        self.opt_d.step();

        let (real_p, fake_p) = (probabilities(&real_logits), probabilities(&fake_logits));
        // Keras' binary accuracy: predicted real when D's output exceeds ½.
        let right = real_p.iter().filter(|&&p| p > 0.5).count()
            + fake_p.iter().filter(|&&p| p <= 0.5).count();
        Ok(DiscriminatorStats {
            loss: value,
            accuracy: right as f32 / (real_p.len() + fake_p.len()) as f32,
            mean_real: mean(&real_p),
            mean_fake: mean(&fake_p),
        })
    }

    /// One Adam step of G through the frozen D, where `fake` = G(z) still carries its graph;
    /// returns the generator loss. D's parameters are left exactly as they were.
    ///
    /// A non-finite loss returns [`TrainError::NonFinite`] and leaves G unchanged.
    pub fn generator_step(&mut self, fake: &Tensor) -> Result<f32, TrainError> {
        let iter = self.iter + 1;
        // Frozen, D's parameters take no gradient, while its input still passes one on.
        freeze(&self.gan.discriminator, true);
        self.opt_g.zero_grad();
        let logits = self.gan.discriminator_logits(fake);
        let loss = self.options.g_loss.from_logits(&logits);

        let value = finite(iter, "generator", loss.item());
        if value.is_ok() {
            loss.backward();
            self.opt_g.step();
        }
        freeze(&self.gan.discriminator, false);
        value
    }

    /// Everything a resume needs, as named tensors: both networks (parameters and batch-norm
    /// statistics) and both optimizers' moments.
    pub fn checkpoint_tensors(&self) -> Vec<(String, Tensor)> {
        let mut t = checkpoint::prefixed(GENERATOR, self.gan.generator_state());
        t.extend(checkpoint::prefixed(
            DISCRIMINATOR,
            self.gan.discriminator_state(),
        ));
        t.extend(checkpoint::prefixed(OPTIM_G, self.opt_g.state()));
        t.extend(checkpoint::prefixed(OPTIM_D, self.opt_d.state()));
        t
    }

    /// The scalar state: iteration, optimizer step counts and the random generator's seed,
    /// stream and word position.
    pub fn checkpoint_metadata(&self) -> BTreeMap<String, String> {
        let seed: String = self
            .rng
            .get_seed()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let entries = [
            (KEY_ITERATION, self.iter.to_string()),
            (KEY_STEPS_G, self.opt_g.steps().to_string()),
            (KEY_STEPS_D, self.opt_d.steps().to_string()),
            (KEY_RNG_SEED, seed),
            (KEY_RNG_STREAM, self.rng.get_stream().to_string()),
            (KEY_RNG_WORD_POS, self.rng.get_word_pos().to_string()),
        ];
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    /// Writes the checkpoint atomically; `extra` metadata (a run's configuration, …) is
    /// stored beside the trainer's own keys, which take precedence.
    pub fn save(
        &self,
        path: &std::path::Path,
        extra: &BTreeMap<String, String>,
    ) -> Result<(), TrainError> {
        let mut metadata = extra.clone();
        metadata.extend(self.checkpoint_metadata());
        checkpoint::save(path, &self.checkpoint_tensors(), &metadata)?;
        Ok(())
    }

    /// Restores a state written by [`Trainer::save`] into this trainer, whose networks must
    /// have the same architecture. The metadata is checked before anything changes; a
    /// network or optimizer that does not fit returns an error after the parts before it
    /// were restored, so the trainer should then be dropped.
    pub fn restore(&mut self, ckpt: &Checkpoint) -> Result<(), TrainError> {
        let iter = parse_key::<u64>(ckpt, KEY_ITERATION)?;
        let steps_g = parse_key::<u64>(ckpt, KEY_STEPS_G)?;
        let steps_d = parse_key::<u64>(ckpt, KEY_STEPS_D)?;
        let rng = restore_rng(ckpt)?;

        ckpt.restore(GENERATOR, &self.gan.generator_state())?;
        ckpt.restore(DISCRIMINATOR, &self.gan.discriminator_state())?;
        let optimizer_error = |key: &str, reason: String| TrainError::Metadata {
            key: key.to_string(),
            reason,
        };
        self.opt_g
            .load_state(steps_g, &ckpt.tensors_under(OPTIM_G))
            .map_err(|e| optimizer_error(OPTIM_G, e))?;
        self.opt_d
            .load_state(steps_d, &ckpt.tensors_under(OPTIM_D))
            .map_err(|e| optimizer_error(OPTIM_D, e))?;

        self.rng = rng;
        self.iter = iter;
        Ok(())
    }
}

/// D's outputs σ(x) from its logits x, as plain numbers.
fn probabilities(logits: &Tensor) -> Vec<f32> {
    no_grad(|| logits.sigmoid()).to_vec()
}

fn mean(v: &[f32]) -> f32 {
    v.iter().sum::<f32>() / v.len() as f32
}

fn finite(iter: u64, loss: &'static str, value: f32) -> Result<f32, TrainError> {
    match value.is_finite() {
        true => Ok(value),
        false => Err(TrainError::NonFinite { iter, loss, value }),
    }
}

fn metadata<'a>(ckpt: &'a Checkpoint, key: &str) -> Result<&'a str, TrainError> {
    ckpt.metadata
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| TrainError::Metadata {
            key: key.to_string(),
            reason: "missing".to_string(),
        })
}

fn parse_key<T: FromStr>(ckpt: &Checkpoint, key: &str) -> Result<T, TrainError>
where
    T::Err: fmt::Display,
{
    let text = metadata(ckpt, key)?;
    text.parse().map_err(|e| TrainError::Metadata {
        key: key.to_string(),
        reason: format!("`{text}` is not a valid number: {e}"),
    })
}

/// Rebuilds the training generator from its seed (64 hex digits), stream and word position.
fn restore_rng(ckpt: &Checkpoint) -> Result<ChaCha8Rng, TrainError> {
    let text = metadata(ckpt, KEY_RNG_SEED)?;
    let bad_seed = || TrainError::Metadata {
        key: KEY_RNG_SEED.to_string(),
        reason: format!("`{text}` is not 64 hexadecimal digits"),
    };
    if text.len() != 64 || !text.is_ascii() {
        return Err(bad_seed());
    }
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad_seed())?;
    }

    let mut rng = ChaCha8Rng::from_seed(seed);
    rng.set_stream(parse_key(ckpt, KEY_RNG_STREAM)?);
    rng.set_word_pos(parse_key(ckpt, KEY_RNG_WORD_POS)?);
    Ok(rng)
}
