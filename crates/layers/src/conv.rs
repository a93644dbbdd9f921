//! 2-D convolution and transposed convolution layers, NCHW layout.
//!
//! Both layers only hold their parameters and geometry; the arithmetic (im2col, GEMM,
//! col2im) and the backward pass live in the engine's `conv2d` and `conv_transpose2d` ops.

use autograd::shape::op_panic;
use autograd::{Conv2dGeometry, FusedActivation, Tensor};
use rand::Rng;

use crate::init::Init;
use crate::module::{Module, Scalar};

/// Cross-correlation of an image batch with learned square filters, plus an optional bias
/// per output channel (what deep-learning libraries call convolution):
///
/// ```text
/// y[n, o, i, j] = b[o] + Σ_c Σ_u Σ_v w[o, c, u, v] · x[n, c, s·i + u − p, s·j + v − p]
/// ```
///
/// with stride s, zero padding p (x reads as 0 outside the image) and kernel size k.
///
/// # Shapes
/// - input: (N, C_in, H, W)
/// - weight: (C_out, C_in, k, k), bias: (C_out)
/// - output: (N, C_out, H_out, W_out) with H_out = ⌊(H + 2p − k) / s⌋ + 1, likewise W_out
pub struct Conv2d<T: Scalar = f32> {
    /// (C_out, C_in, k, k)
    pub weight: Tensor<T>,
    /// (C_out), absent when built without bias.
    pub bias: Option<Tensor<T>>,
    /// Step s between neighbouring output positions.
    pub stride: usize,
    /// Zeros p added on each side of both spatial axes.
    pub padding: usize,
}

impl<T: Scalar> Conv2d<T> {
    /// A layer from `c_in` to `c_out` channels with `kernel × kernel` filters drawn from
    /// `init` (fan_in = c_in·k², fan_out = c_out·k²) and, if `bias`, a zero bias.
    ///
    /// # Panics
    /// When a channel count, `kernel` or `stride` is zero.
    // The argument order follows PyTorch's constructor, which model tables are written in.
    #[allow(clippy::too_many_arguments)]
    #[track_caller]
    pub fn new<R: Rng + ?Sized>(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        init: Init,
        rng: &mut R,
    ) -> Self {
        check_sizes("Conv2d", c_in, c_out, kernel, stride);
        let (fan_in, fan_out) = (c_in * kernel * kernel, c_out * kernel * kernel);
        let weight = init.weight(&[c_out, c_in, kernel, kernel], fan_in, fan_out, rng);
        Conv2d {
            weight: weight.requires_grad_(true),
            bias: bias.then(|| Tensor::zeros(&[c_out]).requires_grad_(true)),
            stride,
            padding,
        }
    }

    /// Input channels C_in.
    pub fn in_channels(&self) -> usize {
        self.weight.shape()[1]
    }

    /// Output channels C_out.
    pub fn out_channels(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Kernel size k.
    pub fn kernel(&self) -> usize {
        self.weight.shape()[2]
    }
}

impl<T: Scalar> Module<T> for Conv2d<T> {
    fn mixes_samples(&self) -> bool {
        false
    }
    fn forward(&self, x: &Tensor<T>) -> Tensor<T> {
        x.conv2d(&self.weight, self.bias.as_ref(), self.stride, self.padding)
    }

    /// The convolution and `act` as one op ([`Tensor::conv2d_then`]).
    fn forward_then(&self, x: &Tensor<T>, act: FusedActivation) -> Option<Tensor<T>> {
        let (w, b) = (&self.weight, self.bias.as_ref());
        Some(x.conv2d_then(w, b, self.stride, self.padding, act))
    }

    fn parameters(&self) -> Vec<(String, Tensor<T>)> {
        named_params(&self.weight, self.bias.as_ref())
    }

    fn describe(&self) -> String {
        format!(
            "Conv2d({} → {}, k{}, s{}, p{})",
            self.in_channels(),
            self.out_channels(),
            self.kernel(),
            self.stride,
            self.padding
        )
    }

    /// # Panics
    /// When `input` is not (N, C_in, H, W) or the kernel does not fit the padded image.
    #[track_caller]
    fn output_shape(&self, input: &[usize]) -> Vec<usize> {
        check_input("Conv2d", input, self.in_channels());
        let g = Conv2dGeometry {
            batch: input[0],
            c_in: self.in_channels(),
            c_out: self.out_channels(),
            h: input[2],
            w: input[3],
            kh: self.kernel(),
            kw: self.kernel(),
            stride: self.stride,
            padding: self.padding,
        };
        match (g.checked_out_h(), g.checked_out_w()) {
            (Some(h), Some(w)) => vec![g.batch, g.c_out, h, w],
            _ => op_panic("Conv2d", input, "kernel larger than the padded image"),
        }
    }
}

/// The adjoint (transpose) of [`Conv2d`]: each input pixel scatters a weighted copy of the
/// filter into the output, s pixels apart, and the outer p rows and columns are cropped:
///
/// ```text
/// y[n, o, s·i + u − p, s·j + v − p] += Σ_c x[n, c, i, j] · w[c, o, u, v],   then + b[o]
/// ```
///
/// Equivalently ⟨conv2d(z, w), x⟩ = ⟨z, conv_transpose2d(x, w)⟩ for every z of the output's
/// shape: the layer upsamples by the stride. `output_padding` adds rows and columns at the
/// bottom and right to pick among the output sizes that a stride-s `Conv2d` maps to the same
/// input size.
///
/// # Shapes
/// - input: (N, C_in, H, W)
/// - weight: (C_in, C_out, k, k), bias: (C_out)
/// - output: (N, C_out, H_out, W_out) with H_out = (H − 1)·s − 2p + k + output_padding,
///   likewise W_out
pub struct ConvTranspose2d<T: Scalar = f32> {
    /// (C_in, C_out, k, k): the layout of the [`Conv2d`] whose adjoint this is.
    pub weight: Tensor<T>,
    /// (C_out), absent when built without bias.
    pub bias: Option<Tensor<T>>,
    /// Upsampling factor s.
    pub stride: usize,
    /// Rows and columns p cropped from each side of the full output.
    pub padding: usize,
    /// Rows and columns added at the bottom and right, less than the stride.
    pub output_padding: usize,
}

impl<T: Scalar> ConvTranspose2d<T> {
    /// A layer from `c_in` to `c_out` channels with `kernel × kernel` filters drawn from
    /// `init` (fan_in = c_in·k², fan_out = c_out·k²) and, if `bias`, a zero bias.
    ///
    /// # Panics
    /// When a channel count, `kernel` or `stride` is zero, or `output_padding ≥ stride`
    /// (the extra rows would then be ones no input pixel reaches).
    // The argument order follows PyTorch's constructor, which model tables are written in.
    #[allow(clippy::too_many_arguments)]
    #[track_caller]
    pub fn new<R: Rng + ?Sized>(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        output_padding: usize,
        bias: bool,
        init: Init,
        rng: &mut R,
    ) -> Self {
        check_sizes("ConvTranspose2d", c_in, c_out, kernel, stride);
        assert!(
            output_padding < stride,
            "ConvTranspose2d: output_padding {output_padding} must be less than stride {stride}"
        );
        let (fan_in, fan_out) = (c_in * kernel * kernel, c_out * kernel * kernel);
        let weight = init.weight(&[c_in, c_out, kernel, kernel], fan_in, fan_out, rng);
        ConvTranspose2d {
            weight: weight.requires_grad_(true),
            bias: bias.then(|| Tensor::zeros(&[c_out]).requires_grad_(true)),
            stride,
            padding,
            output_padding,
        }
    }

    /// Input channels C_in.
    pub fn in_channels(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Output channels C_out.
    pub fn out_channels(&self) -> usize {
        self.weight.shape()[1]
    }

    /// Kernel size k.
    pub fn kernel(&self) -> usize {
        self.weight.shape()[2]
    }
}

impl<T: Scalar> Module<T> for ConvTranspose2d<T> {
    fn mixes_samples(&self) -> bool {
        false
    }
    fn forward(&self, x: &Tensor<T>) -> Tensor<T> {
        x.conv_transpose2d(
            &self.weight,
            self.bias.as_ref(),
            self.stride,
            self.padding,
            self.output_padding,
        )
    }

    fn parameters(&self) -> Vec<(String, Tensor<T>)> {
        named_params(&self.weight, self.bias.as_ref())
    }

    fn describe(&self) -> String {
        let extra = match self.output_padding {
            0 => String::new(),
            op => format!(", op{op}"),
        };
        format!(
            "ConvTranspose2d({} → {}, k{}, s{}, p{}{extra})",
            self.in_channels(),
            self.out_channels(),
            self.kernel(),
            self.stride,
            self.padding
        )
    }

    /// # Panics
    /// When `input` is not (N, C_in, H, W) with H, W ≥ 1, or the padding crops the whole
    /// output.
    #[track_caller]
    fn output_shape(&self, input: &[usize]) -> Vec<usize> {
        check_input("ConvTranspose2d", input, self.in_channels());
        let (k, s, p, op) = (
            self.kernel(),
            self.stride,
            self.padding,
            self.output_padding,
        );
        let out = |len| Conv2dGeometry::transposed_len(len, k, s, p, op);
        match (out(input[2]), out(input[3])) {
            (Some(h), Some(w)) => vec![input[0], self.out_channels(), h, w],
            _ => op_panic("ConvTranspose2d", input, "padding crops the whole output"),
        }
    }
}

/// `weight` and, when present, `bias`, by name.
fn named_params<T: Scalar>(
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
) -> Vec<(String, Tensor<T>)> {
    let mut p = vec![("weight".to_string(), weight.clone())];
    if let Some(b) = bias {
        p.push(("bias".to_string(), b.clone()));
    }
    p
}

#[track_caller]
fn check_sizes(layer: &str, c_in: usize, c_out: usize, kernel: usize, stride: usize) {
    assert!(
        c_in > 0 && c_out > 0 && kernel > 0 && stride > 0,
        "{layer}: channels ({c_in} → {c_out}), kernel {kernel} and stride {stride} must be \
         positive"
    );
}

#[track_caller]
fn check_input(layer: &str, input: &[usize], c_in: usize) {
    if input.len() != 4 || input[1] != c_in {
        op_panic(layer, input, &format!("expected (N, {c_in}, H, W)"));
    }
}
