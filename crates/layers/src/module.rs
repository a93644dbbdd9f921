//! The [`Module`] trait and the [`Sequential`] container.

use autograd::kernels::adam::AdamKernel;
use autograd::kernels::gemm::GemmScalar;
use autograd::{Float, FusedActivation, Tensor};

/// Element types layers run in: `f32` for training, `f64` for gradient checks.
pub trait Scalar: Float + GemmScalar + AdamKernel {}
impl<T: Float + GemmScalar + AdamKernel> Scalar for T {}

/// A layer or a network of layers.
pub trait Module<T: Scalar = f32> {
    /// Runs the layer. In training mode ops are recorded for backward (unless inside
    /// `no_grad`); in evaluation mode layers such as batch norm use running statistics.
    fn forward(&self, x: &Tensor<T>) -> Tensor<T>;

    /// Learnable parameters with names relative to this module (`weight`, `bias`, or
    /// `3.weight` inside a container). Cloned handles: updating them updates the layer.
    fn parameters(&self) -> Vec<(String, Tensor<T>)>;

    /// State that is not learned but must be saved (batch-norm running statistics).
    fn buffers(&self) -> Vec<(String, Tensor<T>)> {
        Vec::new()
    }

    /// Switches between training (`true`) and evaluation (`false`) mode.
    fn set_training(&self, _training: bool) {}

    /// A short description for summaries, e.g. `Dense(784 → 512)`.
    fn describe(&self) -> String;

    /// The output shape for an input shape (batch axis included), for summaries.
    fn output_shape(&self, input: &[usize]) -> Vec<usize>;

    /// Whether one sample's output can depend on other samples of the batch (batch norm in
    /// training mode, a minibatch statistic). When it cannot, two batches may be run as one
    /// concatenated batch with the same results. Defaults to `true`, the safe answer for a
    /// layer that does not say.
    fn mixes_samples(&self) -> bool {
        true
    }

    /// The activation this layer is, when a layer before it may apply it as part of its
    /// own op ([`Module::forward_then`]). `None` for any other layer.
    fn as_fused_activation(&self) -> Option<FusedActivation> {
        None
    }

    /// `act(self.forward(x))` as one op, for a layer that can apply the activation to its
    /// own output (batch norm in training mode), saving a pass over memory each way; `None`
    /// when it cannot, and the caller runs the two layers one after the other.
    fn forward_then(&self, _x: &Tensor<T>, _act: FusedActivation) -> Option<Tensor<T>> {
        None
    }

    /// Number of learnable scalars.
    fn param_count(&self) -> usize {
        self.parameters().iter().map(|(_, p)| p.numel()).sum()
    }
}

/// Turns gradient tracking of every parameter of `m` off (`frozen = true`) or back on.
/// A frozen module still passes gradients through to its input.
pub fn freeze<T: Scalar>(m: &dyn Module<T>, frozen: bool) {
    for (_, p) in m.parameters() {
        p.set_requires_grad(!frozen);
    }
}

/// One line of a model summary.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRow {
    /// The layer's position and description, e.g. `0 Dense(100 → 256)`.
    pub layer: String,
    /// Its output shape, batch axis first.
    pub output_shape: Vec<usize>,
    /// Its learnable parameter count.
    pub params: usize,
}

/// Layers applied one after another.
pub struct Sequential<T: Scalar = f32> {
    layers: Vec<Box<dyn Module<T>>>,
}

impl<T: Scalar> Default for Sequential<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Scalar> Sequential<T> {
    /// An empty container.
    pub fn new() -> Self {
        Sequential { layers: Vec::new() }
    }

    /// Appends a layer (builder style).
    pub fn with(mut self, layer: impl Module<T> + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Appends a layer.
    pub fn push(&mut self, layer: impl Module<T> + 'static) {
        self.layers.push(Box::new(layer));
    }

    /// The layers, in order.
    pub fn layers(&self) -> &[Box<dyn Module<T>>] {
        &self.layers
    }

    /// Runs the first `count` layers (all of them when `count` is larger), as
    /// [`Module::forward`] runs them all: a layer followed by an activation it can fuse
    /// ([`Module::forward_then`]) runs both as one op, with the same results.
    pub fn forward_first(&self, x: &Tensor<T>, count: usize) -> Tensor<T> {
        let layers = &self.layers[..count.min(self.layers.len())];
        let mut h = x.clone();
        let mut i = 0;
        while let Some(layer) = layers.get(i) {
            let next = layers.get(i + 1);
            let fused = next
                .and_then(|n| n.as_fused_activation())
                .and_then(|act| layer.forward_then(&h, act));
            (h, i) = match fused {
                Some(y) => (y, i + 2),
                None => (layer.forward(&h), i + 1),
            };
        }
        h
    }

    /// One row per layer for an input of shape `input` (batch axis included), like Keras'
    /// `model.summary()`.
    pub fn summary(&self, input: &[usize]) -> Vec<SummaryRow> {
        let mut shape = input.to_vec();
        let mut rows = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            shape = l.output_shape(&shape);
            rows.push(SummaryRow {
                layer: format!("{i} {}", l.describe()),
                output_shape: shape.clone(),
                params: l.param_count(),
            });
        }
        rows
    }
}

/// Prefixes each name with `prefix.`.
fn prefixed<T: Scalar>(prefix: usize, v: Vec<(String, Tensor<T>)>) -> Vec<(String, Tensor<T>)> {
    v.into_iter()
        .map(|(n, t)| (format!("{prefix}.{n}"), t))
        .collect()
}

impl<T: Scalar> Module<T> for Sequential<T> {
    /// Runs the layers in order; a layer followed by an activation it can fuse
    /// ([`Module::forward_then`]) runs both as one op, with the same results.
    fn forward(&self, x: &Tensor<T>) -> Tensor<T> {
        self.forward_first(x, self.layers.len())
    }

    fn parameters(&self) -> Vec<(String, Tensor<T>)> {
        let per_layer = self.layers.iter().map(|l| l.parameters());
        per_layer
            .enumerate()
            .flat_map(|(i, p)| prefixed(i, p))
            .collect()
    }

    fn buffers(&self) -> Vec<(String, Tensor<T>)> {
        let per_layer = self.layers.iter().map(|l| l.buffers());
        per_layer
            .enumerate()
            .flat_map(|(i, p)| prefixed(i, p))
            .collect()
    }

    fn set_training(&self, training: bool) {
        self.layers.iter().for_each(|l| l.set_training(training));
    }

    fn mixes_samples(&self) -> bool {
        self.layers.iter().any(|l| l.mixes_samples())
    }

    fn describe(&self) -> String {
        format!("Sequential({} layers)", self.layers.len())
    }

    fn output_shape(&self, input: &[usize]) -> Vec<usize> {
        self.layers
            .iter()
            .fold(input.to_vec(), |s, l| l.output_shape(&s))
    }
}
