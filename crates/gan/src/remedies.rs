//! Remedies for mode collapse that a discriminator can opt into.
//!
//! # Minibatch standard deviation
//!
//! A discriminator judges each sample on its own, so a generator that puts every sample on
//! one convincing point is not penalised for the lack of variety. [`MinibatchStdDev`]
//! (Karras et al., *Progressive Growing of GANs*, 2018, section 3) gives D one extra feature
//! that describes the whole batch: how much the samples differ from each other. A collapsed
//! batch of fakes shows a spread far below a real batch's, which D can learn to reject.
//!
//! The layer mixes samples ([`layers::Module::mixes_samples`] keeps its default, true), so
//! the trainer ([`crate::train::Trainer`]) runs D on the real and the fake batch
//! separately, and each batch's statistic comes from samples of one kind only.
//!
//! To use it, insert the layer into the discriminator, usually before its last dense layer,
//! and widen that layer by one input:
//!
//! ```
//! use gan::remedies::MinibatchStdDev;
//! use layers::{Dense, Init, LeakyRelu, Module, Sequential, Sigmoid};
//! use rand::SeedableRng;
//!
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let d: Sequential = Sequential::new()
//!     .with(Dense::new(2, 16, Init::GlorotUniform, &mut rng))
//!     .with(LeakyRelu(0.2))
//!     .with(MinibatchStdDev::default())
//!     .with(Dense::new(16 + 1, 1, Init::GlorotUniform, &mut rng))
//!     .with(Sigmoid);
//! assert_eq!(d.output_shape(&[8, 2]), vec![8, 1]);
//! ```

use autograd::Tensor;
use layers::{Module, Scalar};

/// Appends to every sample the batch's mean standard deviation, as one more feature.
///
/// For a batch x of N samples with features j (every position after the batch axis):
///
/// ```text
/// μⱼ = (1/N) Σᵢ xᵢⱼ
/// σⱼ = √( (1/N) Σᵢ (xᵢⱼ − μⱼ)² + ε )
/// s  = mean over j of σⱼ
/// y  = [x, s]   (s repeated for every sample)
/// ```
///
/// The variance divides by N, not N − 1, so that a batch of one is allowed (s = √ε). The
/// ε keeps the square root's derivative 1/(2σⱼ) finite when every sample agrees on a
/// feature, which is exactly the collapsed case this layer is for.
///
/// The forward pass is built from engine ops (mean, sub, mul, sqrt, add, concat), so the
/// gradient reaches every sample through s: ∂s/∂xᵢⱼ = (xᵢⱼ − μⱼ) / (N·F·σⱼ) with F the
/// number of features.
///
/// # Shapes
/// - input (N, F) → output (N, F + 1): s is a new last column;
/// - input (N, C, H, W) → output (N, C + 1, H, W): s is a new constant channel, as in the
///   paper; σ is taken per channel and position, and averaged over all of them.
///
/// In general one slot is added along axis 1, filled with s.
///
/// # Panics
/// `forward` panics when the input has fewer than 2 axes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MinibatchStdDev {
    /// ε under the square root.
    pub eps: f64,
}

impl Default for MinibatchStdDev {
    /// ε = 10⁻⁸, as in the paper's implementation.
    fn default() -> Self {
        MinibatchStdDev { eps: 1e-8 }
    }
}

impl MinibatchStdDev {
    /// s, the mean over features of the per-feature standard deviation across the batch,
    /// with shape (1, 1, …) (as many axes as `x`).
    pub fn statistic<T: Scalar>(&self, x: &Tensor<T>) -> Tensor<T> {
        let mu = x.mean_axes(&[0], true);
        let centred = x.sub(&mu);
        let var = centred.mul(&centred).mean_axes(&[0], true);
        let sigma = var.add_scalar(T::from_f64(self.eps)).sqrt();
        let feature_axes: Vec<isize> = (1..x.shape().len() as isize).collect();
        sigma.mean_axes(&feature_axes, true)
    }
}

impl<T: Scalar> Module<T> for MinibatchStdDev {
    #[track_caller]
    fn forward(&self, x: &Tensor<T>) -> Tensor<T> {
        assert!(
            x.shape().len() >= 2,
            "MinibatchStdDev: input must be (N, features…), got shape {:?}",
            x.shape()
        );
        let s = self.statistic(x);

        // Broadcasting s onto zeros of the new slot's shape repeats it for every sample;
        // add's backward sums those copies back into s's gradient.
        let mut slot = x.shape().to_vec();
        slot[1] = 1;
        let column = Tensor::zeros(&slot).add(&s);
        Tensor::concat(&[x.clone(), column], 1)
    }

    fn parameters(&self) -> Vec<(String, Tensor<T>)> {
        Vec::new()
    }

    fn describe(&self) -> String {
        "MinibatchStdDev".to_string()
    }

    fn output_shape(&self, input: &[usize]) -> Vec<usize> {
        let mut out = input.to_vec();
        if out.len() >= 2 {
            out[1] += 1;
        }
        out
    }
}
