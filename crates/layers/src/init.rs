//! Weight initialisers.

use autograd::Tensor;
use rand::Rng;

use crate::module::Scalar;

/// How a layer's weights start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Glorot (Xavier) uniform: U(−l, l) with l = √(6 / (fan_in + fan_out)); biases zero.
    /// Keras' default, used by the classic GAN example.
    GlorotUniform,
    /// N(0, std²) weights and zero biases; the DCGAN paper uses std = 0.02.
    Normal(f64),
}

impl Init {
    /// A weight tensor of `shape` with the given fans, drawn from `rng`.
    pub fn weight<T: Scalar, R: Rng + ?Sized>(
        self,
        shape: &[usize],
        fan_in: usize,
        fan_out: usize,
        rng: &mut R,
    ) -> Tensor<T> {
        match self {
            Init::GlorotUniform => {
                let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
                Tensor::rand_uniform(shape, -limit, limit, rng)
            }
            Init::Normal(std) => Tensor::rand_normal(shape, 0.0, std, rng),
        }
    }
}
