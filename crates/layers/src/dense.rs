//! Fully connected layer.

use autograd::Tensor;
use rand::Rng;

use crate::init::Init;
use crate::module::{Module, Scalar};

/// y = x·W + b.
///
/// # Shapes
/// - input: (N, in)
/// - weight: (in, out), bias: (out)
/// - output: (N, out)
pub struct Dense<T: Scalar = f32> {
    /// (in, out)
    pub weight: Tensor<T>,
    /// (out), absent when built without bias.
    pub bias: Option<Tensor<T>>,
}

impl<T: Scalar> Dense<T> {
    /// A layer mapping `inputs` features to `outputs`, with bias, weights from `init`.
    pub fn new<R: Rng + ?Sized>(inputs: usize, outputs: usize, init: Init, rng: &mut R) -> Self {
        let weight = init.weight(&[inputs, outputs], inputs, outputs, rng);
        Dense {
            weight: weight.requires_grad_(true),
            bias: Some(Tensor::zeros(&[outputs]).requires_grad_(true)),
        }
    }

    /// Drops the bias term.
    pub fn without_bias(mut self) -> Self {
        self.bias = None;
        self
    }
}

impl<T: Scalar> Module<T> for Dense<T> {
    fn mixes_samples(&self) -> bool {
        false
    }
    fn forward(&self, x: &Tensor<T>) -> Tensor<T> {
        match &self.bias {
            Some(b) => x.linear(&self.weight, b),
            None => x.matmul(&self.weight),
        }
    }

    fn parameters(&self) -> Vec<(String, Tensor<T>)> {
        let mut p = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            p.push(("bias".to_string(), b.clone()));
        }
        p
    }

    fn describe(&self) -> String {
        let s = self.weight.shape();
        format!("Dense({} → {})", s[0], s[1])
    }

    fn output_shape(&self, input: &[usize]) -> Vec<usize> {
        vec![input[0], self.weight.shape()[1]]
    }
}
