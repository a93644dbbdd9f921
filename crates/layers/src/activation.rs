//! Activations and reshaping as layers (no parameters).

use autograd::{FusedActivation, Tensor};

use crate::module::{Module, Scalar};

macro_rules! activation {
    ($(#[$doc:meta])* $name:ident, $label:literal, |$x:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $name;

        impl<T: Scalar> Module<T> for $name {
            fn forward(&self, $x: &Tensor<T>) -> Tensor<T> {
                $body
            }
            fn parameters(&self) -> Vec<(String, Tensor<T>)> {
                Vec::new()
            }
            fn describe(&self) -> String {
                $label.to_string()
            }
            fn output_shape(&self, input: &[usize]) -> Vec<usize> {
                input.to_vec()
            }
            fn mixes_samples(&self) -> bool {
                false
            }
        }
    };
}

/// max(x, 0), elementwise.
#[derive(Clone, Copy, Debug, Default)]
pub struct Relu;

impl<T: Scalar> Module<T> for Relu {
    fn forward(&self, x: &Tensor<T>) -> Tensor<T> {
        x.relu()
    }
    fn parameters(&self) -> Vec<(String, Tensor<T>)> {
        Vec::new()
    }
    fn describe(&self) -> String {
        "ReLU".to_string()
    }
    fn output_shape(&self, input: &[usize]) -> Vec<usize> {
        input.to_vec()
    }
    fn mixes_samples(&self) -> bool {
        false
    }
    fn as_fused_activation(&self) -> Option<FusedActivation> {
        Some(FusedActivation::Relu)
    }
}
activation!(
    /// tanh x, elementwise.
    Tanh, "Tanh", |x| x.tanh()
);
activation!(
    /// σ(x) = 1 / (1 + e⁻ˣ), elementwise.
    Sigmoid, "Sigmoid", |x| x.sigmoid()
);

/// x for x > 0, αx otherwise.
#[derive(Clone, Copy, Debug)]
pub struct LeakyRelu(pub f64);

impl<T: Scalar> Module<T> for LeakyRelu {
    fn mixes_samples(&self) -> bool {
        false
    }
    fn forward(&self, x: &Tensor<T>) -> Tensor<T> {
        x.leaky_relu(T::from_f64(self.0))
    }
    fn as_fused_activation(&self) -> Option<FusedActivation> {
        (self.0 > 0.0).then_some(FusedActivation::LeakyRelu(self.0))
    }
    fn parameters(&self) -> Vec<(String, Tensor<T>)> {
        Vec::new()
    }
    fn describe(&self) -> String {
        format!("LeakyReLU({})", self.0)
    }
    fn output_shape(&self, input: &[usize]) -> Vec<usize> {
        input.to_vec()
    }
}

/// (N, d₁, d₂, …) → (N, d₁·d₂·…).
#[derive(Clone, Copy, Debug, Default)]
pub struct Flatten;

impl<T: Scalar> Module<T> for Flatten {
    fn mixes_samples(&self) -> bool {
        false
    }
    fn forward(&self, x: &Tensor<T>) -> Tensor<T> {
        x.flatten_from(1)
    }
    fn parameters(&self) -> Vec<(String, Tensor<T>)> {
        Vec::new()
    }
    fn describe(&self) -> String {
        "Flatten".to_string()
    }
    fn output_shape(&self, input: &[usize]) -> Vec<usize> {
        vec![input[0], input[1..].iter().product()]
    }
}

/// (N, …) → (N, shape…), keeping the batch axis.
#[derive(Clone, Debug)]
pub struct Reshape(pub Vec<usize>);

impl<T: Scalar> Module<T> for Reshape {
    fn mixes_samples(&self) -> bool {
        false
    }
    fn forward(&self, x: &Tensor<T>) -> Tensor<T> {
        let mut s = vec![x.shape()[0]];
        s.extend_from_slice(&self.0);
        x.reshape(&s)
    }
    fn parameters(&self) -> Vec<(String, Tensor<T>)> {
        Vec::new()
    }
    fn describe(&self) -> String {
        format!("Reshape({:?})", self.0)
    }
    fn output_shape(&self, input: &[usize]) -> Vec<usize> {
        let mut s = vec![input[0]];
        s.extend_from_slice(&self.0);
        s
    }
}
