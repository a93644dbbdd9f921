//! The two MNIST GANs: the classic fully connected one (`mlp`) and a DCGAN (`dcgan`).
//!
//! Every model takes and makes images of shape (N, 1, 28, 28) with values in [-1, 1], so the
//! same data pipeline, grids and discriminator input serve both. Each discriminator ends in a
//! [`Sigmoid`]: it outputs the probability that its input is real.

use std::fmt;
use std::str::FromStr;

use layers::{
    BatchNorm, Conv2d, ConvTranspose2d, Dense, Flatten, Init, LeakyRelu, Relu, Reshape, Sequential,
    Sigmoid, Tanh,
};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::mnist::MNIST_SIDE;
use crate::train::Gan;

/// Pixels in one MNIST image.
const IMAGE_LEN: usize = MNIST_SIDE * MNIST_SIDE;

/// Shape of one image sample, channels first: (1, 28, 28).
pub const IMAGE_SHAPE: [usize; 3] = [1, MNIST_SIDE, MNIST_SIDE];

/// Slope of every LeakyReLU, as in both reference models.
const LEAK: f64 = 0.2;

/// Which architecture to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// The fully connected GAN of the classic Keras example.
    Mlp,
    /// The convolutional GAN of the DCGAN guidelines.
    Dcgan,
}

impl ModelKind {
    /// Builds the generator and the discriminator (in that order, from `rng`) for noise of
    /// `noise_dim` values.
    pub fn build<R: Rng + ?Sized>(self, noise_dim: usize, rng: &mut R) -> Gan {
        match self {
            ModelKind::Mlp => {
                let generator = mlp_generator(noise_dim, rng);
                let discriminator = mlp_discriminator(rng);
                Gan::new(generator, discriminator, &[noise_dim], &IMAGE_SHAPE)
            }
            ModelKind::Dcgan => {
                let generator = dcgan_generator(noise_dim, rng);
                let discriminator = dcgan_discriminator(rng);
                Gan::new(generator, discriminator, &[noise_dim, 1, 1], &IMAGE_SHAPE)
            }
        }
    }

    /// The name used on the command line and in files: `mlp` or `dcgan`.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Mlp => "mlp",
            ModelKind::Dcgan => "dcgan",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mlp" => Ok(ModelKind::Mlp),
            "dcgan" => Ok(ModelKind::Dcgan),
            other => Err(format!(
                "unknown model `{other}`: expected `mlp` or `dcgan`"
            )),
        }
    }
}

/// The Keras example's generator: noise (N, noise_dim) through Dense 256, 512 and 1024, each
/// followed by LeakyReLU(0.2) and BatchNorm (Keras momentum 0.8), then Dense 784 with tanh,
/// reshaped to an image. Glorot-uniform weights, Keras' default.
///
/// # Shapes
/// (N, noise_dim) → (N, 1, 28, 28)
pub fn mlp_generator<R: Rng + ?Sized>(noise_dim: usize, rng: &mut R) -> Sequential {
    let mut g = Sequential::new();
    let mut width = noise_dim;
    for next in [256, 512, 1024] {
        g.push(Dense::new(width, next, Init::GlorotUniform, rng));
        g.push(LeakyRelu(LEAK));
        g.push(BatchNorm::new(next).momentum(0.8));
        width = next;
    }
    g.with(Dense::new(width, IMAGE_LEN, Init::GlorotUniform, rng))
        .with(Tanh)
        .with(Reshape(IMAGE_SHAPE.to_vec()))
}

/// The Keras example's discriminator: flatten, Dense 512 and 256 with LeakyReLU(0.2), then
/// Dense 1 with sigmoid.
///
/// # Shapes
/// (N, 1, 28, 28) → (N, 1)
pub fn mlp_discriminator<R: Rng + ?Sized>(rng: &mut R) -> Sequential {
    Sequential::new()
        .with(Flatten)
        .with(Dense::new(IMAGE_LEN, 512, Init::GlorotUniform, rng))
        .with(LeakyRelu(LEAK))
        .with(Dense::new(512, 256, Init::GlorotUniform, rng))
        .with(LeakyRelu(LEAK))
        .with(Dense::new(256, 1, Init::GlorotUniform, rng))
        .with(Sigmoid)
}

/// Weights N(0, 0.02²), as the DCGAN paper prescribes.
const DCGAN_INIT: Init = Init::Normal(0.02);

/// The DCGAN's batch norm with PyTorch's defaults, as in its DCGAN example: momentum 0.1
/// in PyTorch's convention (0.9 in this layer's Keras convention) and ε = 10⁻⁵.
fn dcgan_batch_norm(channels: usize) -> BatchNorm {
    BatchNorm::new(channels).momentum(0.9).eps(1e-5)
}

/// The DCGAN generator: noise (N, noise_dim, 1, 1) → ConvTranspose2d to 256 × 7 × 7 →
/// BatchNorm → ReLU → ConvTranspose2d to 128 × 14 × 14 → BatchNorm → ReLU →
/// ConvTranspose2d to 1 × 28 × 28 → tanh.
///
/// Layers followed by batch norm have no bias: the norm's shift β would cancel it.
///
/// # Shapes
/// (N, noise_dim, 1, 1) → (N, 1, 28, 28)
pub fn dcgan_generator<R: Rng + ?Sized>(noise_dim: usize, rng: &mut R) -> Sequential {
    Sequential::new()
        .with(ConvTranspose2d::new(
            noise_dim, 256, 7, 1, 0, 0, false, DCGAN_INIT, rng,
        ))
        .with(dcgan_batch_norm(256))
        .with(Relu)
        .with(ConvTranspose2d::new(
            256, 128, 4, 2, 1, 0, false, DCGAN_INIT, rng,
        ))
        .with(dcgan_batch_norm(128))
        .with(Relu)
        .with(ConvTranspose2d::new(
            128, 1, 4, 2, 1, 0, true, DCGAN_INIT, rng,
        ))
        .with(Tanh)
}

/// The DCGAN discriminator: Conv2d to 64 × 14 × 14 → LeakyReLU(0.2) → Conv2d to
/// 128 × 7 × 7 → BatchNorm → LeakyReLU(0.2) → Flatten → Dense 1 → sigmoid.
///
/// # Shapes
/// (N, 1, 28, 28) → (N, 1)
pub fn dcgan_discriminator<R: Rng + ?Sized>(rng: &mut R) -> Sequential {
    let side = MNIST_SIDE / 4;
    Sequential::new()
        .with(Conv2d::new(1, 64, 4, 2, 1, true, DCGAN_INIT, rng))
        .with(LeakyRelu(LEAK))
        .with(Conv2d::new(64, 128, 4, 2, 1, false, DCGAN_INIT, rng))
        .with(dcgan_batch_norm(128))
        .with(LeakyRelu(LEAK))
        .with(Flatten)
        .with(Dense::new(128 * side * side, 1, DCGAN_INIT, rng))
        .with(Sigmoid)
}
