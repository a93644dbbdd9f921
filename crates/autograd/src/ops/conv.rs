//! 2-D convolution and its adjoint, the transposed convolution, by im2col and GEMM.
//!
//! Per sample n, with columns(x) the im2col matrix of [`crate::kernels::im2col`]:
//!
//! ```text
//! conv:            y_n = W · columns(x_n)              W: C_out × (C_in·kh·kw)
//! its adjoint:     x_n = col2im(Wᵀ · y_n)
//! weight gradient: Σ_n a_n · columns(b_n)ᵀ
//! ```
//!
//! The four ops are built from these three products:
//!
//! | op               | forward         | ∂L/∂input       | ∂L/∂W                       |
//! |------------------|-----------------|-----------------|-----------------------------|
//! | conv2d           | W·columns(x)    | col2im(Wᵀ·g)    | Σ g_n·columns(x_n)ᵀ         |
//! | conv_transpose2d | col2im(Wᵀ·x)    | W·columns(g)    | Σ x_n·columns(g_n)ᵀ         |
//!
//! and ∂L/∂b is g summed over the batch and the pixels of each channel. conv2d keeps the
//! columns of x from forward to backward only when the weight will take a gradient (not
//! under [`crate::no_grad`], not for a frozen weight): they hold batch × (C_in·kh·kw) ×
//! (oh·ow) values, and a layer that is only passed through has no use for them.
//!
//! The columns of all samples are laid side by side (C_in·kh·kw × N·oh·ow). W·columns runs
//! as one product per sample, on rayon over the samples, each writing its C_out × oh·ow
//! outputs in place in y (N × C_out × oh × ow). The adjoint and the weight gradient are
//! one product over the whole batch, with the activations regrouped channel-major
//! (C × N·oh·ow) around it, so that their tiles stay full even where one sample's product
//! would be a matrix-vector one, at the price of columns for the whole batch (tens of MB at
//! most here). A transposed convolution of a 1 × 1 input without padding is a single
//! product with no columns at all ([`conv_transpose2d_of_pixels`]).
//!
//! Convolutions with 4 × 4 kernels, stride 2, padding 1 and at least 16 channels on both
//! sides (the large ones of DCGAN) take [`crate::kernels::winograd`] instead: the same
//! three products with about half the multiplications ([`conv2d_winograd`],
//! [`conv_transpose2d_winograd`]).

use rayon::prelude::*;

use crate::element::Float;
use crate::kernels::gemm::{gemm, GemmScalar, MatRef};
use crate::kernels::im2col::{col2im_batch, im2col_batch, Conv2dGeometry};
use crate::kernels::scratch;
use crate::kernels::winograd::{self, Tiling};
use crate::kernels::zip_map;
use crate::shape::{op_panic, shape_panic};
use crate::tape::{is_grad_enabled, GradFn};
use crate::tensor::Tensor;

use super::fused::{with_act, Act, FusedActivation};

/// N × C × L → C × (N·L): `out[c][n·L + l] = y[n][c][l]`, so that the batch's pixels of
/// one channel form one row, side by side like the columns of [`im2col_batch`].
fn to_channel_major<T: Float>(y: &[T], (n, c, l): (usize, usize, usize)) -> Vec<T> {
    let mut out = scratch::take(y.len());
    out.par_chunks_mut((n * l).max(1))
        .enumerate()
        .for_each(|(ch, row)| {
            for (s, dst) in row.chunks_exact_mut(l.max(1)).enumerate() {
                dst.copy_from_slice(&y[(s * c + ch) * l..][..l]);
            }
        });
    out
}

/// [`to_channel_major`] of ∂L/∂v = g·act′ for an op whose output y = act(v) (see
/// [`through_act`]), in the same pass: for a fused activation, the gradient through it is
/// never stored batch-major.
fn channel_major_through<T: Float>(
    act: FusedActivation,
    y: &[T],
    g: &[T],
    (n, c, l): (usize, usize, usize),
) -> Vec<T> {
    if act == FusedActivation::Identity {
        return to_channel_major(g, (n, c, l));
    }
    let mut out = scratch::take(g.len());
    with_act!(act, |a| {
        out.par_chunks_mut((n * l).max(1))
            .enumerate()
            .for_each(|(ch, row)| {
                for (s, dst) in row.chunks_exact_mut(l.max(1)).enumerate() {
                    let at = (s * c + ch) * l;
                    let (y, g) = (&y[at..][..l], &g[at..][..l]);
                    for ((d, &y), &g) in dst.iter_mut().zip(y).zip(g) {
                        *d = a.grad(y, g);
                    }
                }
            })
    });
    out
}

/// [`bias_grad`] from g regrouped channel-major (C × N·L): the same sums in the same
/// order (each sample's plane summed, then the samples in turn), on rayon over channels.
fn bias_grad_channel_major<T: Float>(g_cm: &[T], (n, c, l): (usize, usize, usize)) -> Vec<T> {
    let mut grad_bias = vec![T::ZERO; c];
    grad_bias
        .par_iter_mut()
        .zip(g_cm.par_chunks((n * l).max(1)))
        .for_each(|(b, row)| {
            for plane in row.chunks(l.max(1)) {
                *b += plane.iter().copied().sum::<T>();
            }
        });
    grad_bias
}

/// The batch's columns (C_in·kh·kw × N·L) of x (N × C_in × H × W).
fn batch_columns<T: Float>(g: &Conv2dGeometry, x: &[T]) -> Vec<T> {
    let mut cols = scratch::take(g.col_rows() * g.batch * g.col_cols());
    im2col_batch(g, x, &mut cols);
    cols
}

/// y_n = W · columns(x_n) for every sample: one product per sample, on rayon over the
/// samples, each reading its own L columns of the batch's (C_in·kh·kw × N·L) and writing
/// its C_out × L outputs where they belong in y (N × C_out × oh × ow), with no regrouping;
/// then `finish` on those outputs while they are in cache. `cols` are the
/// [`batch_columns`] of x.
fn conv_forward<T: Float + GemmScalar>(
    g: &Conv2dGeometry,
    cols: &[T],
    weight: &[T],
    finish: impl Fn(&mut [T]) + Sync,
) -> Vec<T> {
    let (k, l) = (g.col_rows(), g.col_cols());
    let mut y = scratch::take(g.batch * g.c_out * l);
    let w = MatRef::row_major(weight, g.c_out, k);
    y.par_chunks_mut((g.c_out * l).max(1))
        .enumerate()
        .for_each(|(n, y_n)| {
            let cols_n = MatRef {
                data: &cols[(n * l).min(cols.len())..],
                rows: k,
                cols: l,
                rs: g.batch * l,
                cs: 1,
            };
            T::gemm_serial(T::ONE, w, cols_n, T::ZERO, y_n, l);
            finish(y_n);
        });
    y
}

/// y[c][..] ← act(y[c][..] + b[c]) for one sample's outputs y (C × plane), the bias only
/// where there is one.
fn bias_then<T: Float, A: Act>(y: &mut [T], bias: Option<&[T]>, plane: usize, act: A) {
    for (c, row) in y.chunks_mut(plane.max(1)).enumerate() {
        match bias {
            Some(b) => row.iter_mut().for_each(|v| *v = act.apply(*v + b[c])),
            None if A::IDENTITY => {}
            None => row.iter_mut().for_each(|v| *v = act.apply(*v)),
        }
    }
}

/// ∂L/∂v = g·act′ from the op's output y (which has the sign of v), or `None` for the
/// identity, whose g passes through as it is.
fn through_act<T: Float>(act: FusedActivation, y: &[T], g: &[T]) -> Option<Vec<T>> {
    if act == FusedActivation::Identity {
        return None;
    }
    Some(with_act!(act, |a| zip_map(y, g, move |y, g| a.grad(y, g))))
}

/// x_n = col2im(Wᵀ · y_n) for every sample, the adjoint of [`conv_forward`]: the columns of
/// the whole batch come from one product, columns (C_in·kh·kw × N·L) = Wᵀ · Y (C_out × N·L),
/// and are folded back per sample. `y_cm` is y (N × C_out × oh × ow) regrouped by
/// [`to_channel_major`]; the result is N × C_in × H × W.
fn conv_adjoint<T: Float + GemmScalar>(g: &Conv2dGeometry, y_cm: &[T], weight: &[T]) -> Vec<T> {
    let (k, nl) = (g.col_rows(), g.batch * g.col_cols());
    let mut cols = scratch::take(k * nl);
    let w = MatRef::row_major(weight, g.c_out, k);
    let y_view = MatRef::row_major(y_cm, g.c_out, nl);
    gemm(T::ONE, w.t(), y_view, T::ZERO, &mut cols);
    let mut x = scratch::take(g.batch * g.c_in * g.h * g.w);
    col2im_batch(g, &cols, &mut x);
    scratch::give(cols);
    x
}

/// ∂L/∂W = Σ_n a_n · columns(b_n)ᵀ, where a is N × C_out × oh × ow and `cols` are the
/// [`batch_columns`] of b (N × C_in × H × W), as one product whose inner dimension runs over
/// the batch's pixels: A (C_out × N·L) · colsᵀ (N·L × C_in·kh·kw), with `a_cm` = A, a
/// regrouped by [`to_channel_major`]. The GEMM sums in a fixed order, so the result does
/// not depend on the thread count.
///
/// Written into `weight`'s gradient buffer through [`Tensor::accumulate_grad_with`].
fn weight_grad<T: Float + GemmScalar>(
    g: &Conv2dGeometry,
    weight: &Tensor<T>,
    a_cm: &[T],
    cols: &[T],
) {
    let (k, nl) = (g.col_rows(), g.batch * g.col_cols());
    weight.accumulate_grad_with(|grad_weight, beta| {
        let a_view = MatRef::row_major(a_cm, g.c_out, nl);
        let cols_t = MatRef::row_major(cols, k, nl).t();
        gemm(T::ONE, a_view, cols_t, beta, grad_weight);
    });
}

/// y[n][c][..] += b[c] for y seen as N × C × plane.
fn add_bias<T: Float>(y: &mut [T], bias: &[T], plane: usize) {
    let c = bias.len();
    y.par_chunks_mut(plane.max(1))
        .enumerate()
        .for_each(|(i, y_nc)| y_nc.iter_mut().for_each(|v| *v += bias[i % c]));
}

/// ∂L/∂b[c] = Σ_{n, pixel} g[n][c][pixel], for g seen as N × C × plane; serial, in order.
fn bias_grad<T: Float>(grad_out: &[T], channels: usize, plane: usize) -> Vec<T> {
    let mut grad_bias = vec![T::ZERO; channels];
    for (i, g_nc) in grad_out.chunks_exact(plane.max(1)).enumerate() {
        grad_bias[i % channels] += g_nc.iter().copied().sum::<T>();
    }
    grad_bias
}

/// Checks the ranks of x and the weight, the channels they share, the bias length and the
/// stride; returns x's (N, C, H, W) and the weight's four sizes. `in_axis` is the weight
/// axis that must match x's channels (1 for conv2d, 0 for conv_transpose2d); the other of
/// the first two axes counts the output channels, one bias value each.
#[track_caller]
fn check_shapes<T: Float>(
    op: &str,
    x: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    stride: usize,
    in_axis: usize,
) -> ([usize; 4], [usize; 4]) {
    let (xs, ws) = (x.shape(), weight.shape());
    let (Ok(x4), Ok(w4)) = (<[usize; 4]>::try_from(xs), <[usize; 4]>::try_from(ws)) else {
        shape_panic(op, xs, ws, "need x of N × C × H × W and a weight of rank 4");
    };
    if x4[1] != w4[in_axis] {
        let why = format!(
            "x has {} channels, weight axis {in_axis} has {}",
            x4[1], w4[in_axis]
        );
        shape_panic(op, xs, ws, &why);
    }
    let c_out = w4[1 - in_axis];
    if let Some(b) = bias {
        if b.shape() != [c_out] {
            let why = format!("the bias needs {c_out} values, one per output channel");
            shape_panic(op, ws, b.shape(), &why);
        }
    }
    if stride == 0 {
        op_panic(op, xs, "stride must be at least 1");
    }
    (x4, w4)
}

impl<T: Float + GemmScalar> Tensor<T> {
    /// 2-D convolution (cross-correlation, as in PyTorch), NCHW:
    ///
    /// y[n][o][oy][ox] = b[o] + Σ_{c,i,j} W[o][c][i][j] · x[n][c][oy·s + i − p][ox·s + j − p]
    ///
    /// with zeros read outside x. Computed as y_n = W · columns(x_n) (im2col), for the whole
    /// batch in one product. Backward, with g = ∂L/∂y: ∂L/∂x_n = col2im(Wᵀ·g_n),
    /// ∂L/∂W = Σ_n g_n·columns(x_n)ᵀ, ∂L/∂b[o] = Σ_{n,oy,ox} g[n][o][oy][ox].
    ///
    /// # Shapes
    /// x: N × C_in × H × W, weight: C_out × C_in × kh × kw, bias: C_out;
    /// y: N × C_out × oh × ow with oh = ⌊(H + 2·padding − kh) / stride⌋ + 1, likewise ow.
    ///
    /// # Panics
    /// When a rank is not 4, the channels differ, the bias is not C_out long, the stride is 0
    /// or the kernel is larger than the padded input.
    #[track_caller]
    pub fn conv2d(
        &self,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
        stride: usize,
        padding: usize,
    ) -> Tensor<T> {
        self.conv2d_then(weight, bias, stride, padding, FusedActivation::Identity)
    }

    /// [`conv2d`](Self::conv2d) followed by an activation, in one op: y = act(conv + b).
    /// The same values and gradients, to the bit, as the two ops one after the other; the
    /// activation is applied to each sample's outputs right after its product, while they
    /// are in cache, and backward reads act′ off the sign of y.
    ///
    /// # Panics
    /// As [`conv2d`](Self::conv2d), and for a leaky ReLU whose slope is not positive.
    #[track_caller]
    pub fn conv2d_then(
        &self,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
        stride: usize,
        padding: usize,
        act: FusedActivation,
    ) -> Tensor<T> {
        act.check("conv2d", self.shape());
        let ([batch, c_in, h, w], [c_out, _, kh, kw]) =
            check_shapes("conv2d", self, weight, bias, stride, 1);
        let g = Conv2dGeometry {
            batch,
            c_in,
            c_out,
            h,
            w,
            kh,
            kw,
            stride,
            padding,
        };
        if g.checked_out_h().is_none() || g.checked_out_w().is_none() {
            let why = format!("kernel {kh} × {kw} is larger than the input padded by {padding}");
            shape_panic("conv2d", self.shape(), weight.shape(), &why);
        }
        if winograd::applies(&g) {
            return conv2d_winograd(self, weight, bias, Tiling::new(g), act);
        }

        let cols = batch_columns(&g, &self.data());
        let b_data = bias.map(|b| b.data());
        let (b, l) = (b_data.as_deref(), g.col_cols());
        let finish = |y_n: &mut [T]| with_act!(act, |a| bias_then(y_n, b, l, a));
        let y = conv_forward(&g, &cols, &weight.data(), finish);
        drop(b_data);
        // ∂L/∂W reads these same columns: keep them for backward when it will run.
        let kept = match is_grad_enabled() && weight.requires_grad() {
            true => Some(cols),
            false => {
                scratch::give(cols);
                None
            }
        };

        let mut inputs = vec![self.clone(), weight.clone()];
        inputs.extend(bias.cloned());
        let gf = GradFn::new("conv2d", inputs, move |inp, y, grad_out| {
            let (x, weight) = (&inp[0], &inp[1]);
            let bias = inp.get(2).filter(|b| b.requires_grad());
            let mut kept = kept;
            if x.requires_grad() || weight.requires_grad() || bias.is_some() {
                // Every gradient reads g by channel (through the activation): regroup it once.
                let nchw = (g.batch, g.c_out, g.col_cols());
                let g_cm = channel_major_through(act, y, grad_out, nchw);
                if x.requires_grad() {
                    x.accumulate_grad_vec(conv_adjoint(&g, &g_cm, &weight.data()));
                }
                if weight.requires_grad() {
                    let cols = kept.take().unwrap_or_else(|| batch_columns(&g, &x.data()));
                    weight_grad(&g, weight, &g_cm, &cols);
                    scratch::give(cols);
                }
                if let Some(b) = bias {
                    b.accumulate_grad_vec(bias_grad_channel_major(&g_cm, nchw));
                }
                scratch::give(g_cm);
            }
            // Columns kept for a weight that was frozen after the forward pass.
            if let Some(cols) = kept {
                scratch::give(cols);
            }
        });
        Tensor::from_op(g.output_shape().to_vec(), y, gf)
    }

    /// Transposed 2-D convolution, the exact adjoint of [`conv2d`](Self::conv2d) with the
    /// same weight, plus a bias: each input value is scattered through the kernel,
    ///
    /// y[n][c][iy·s + i − p][ix·s + j − p] += W[o][c][i][j] · x[n][o][iy][ix],  y += b[c].
    ///
    /// Computed as y_n = col2im(Wᵀ·x_n), one product for the whole batch, with no zeros
    /// inserted into x. Backward, with g = ∂L/∂y: ∂L/∂x_n = W·columns(g_n),
    /// ∂L/∂W = Σ_n x_n·columns(g_n)ᵀ, ∂L/∂b[c] = Σ_{n,y,x} g[n][c][y][x].
    ///
    /// `output_padding` (below `stride`) adds rows at the bottom and columns at the right,
    /// choosing among the output sizes that a stride-s conv2d maps back to H; where no input
    /// reaches them (everywhere when `padding` is 0) they hold only the bias.
    ///
    /// # Shapes
    /// x: N × C_in × H × W, weight: C_in × C_out × kh × kw (PyTorch's layout), bias: C_out;
    /// y: N × C_out × H′ × W′ with H′ = (H − 1)·stride − 2·padding + kh + output_padding.
    ///
    /// # Panics
    /// When a rank is not 4, the channels differ, the bias is not C_out long, the stride is 0,
    /// `output_padding ≥ stride`, or H′ or W′ would not be positive.
    #[track_caller]
    pub fn conv_transpose2d(
        &self,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
        stride: usize,
        padding: usize,
        output_padding: usize,
    ) -> Tensor<T> {
        let ([batch, c_in, h, w], [_, c_out, kh, kw]) =
            check_shapes("conv_transpose2d", self, weight, bias, stride, 0);
        let out_len =
            |len, k| Conv2dGeometry::transposed_len(len, k, stride, padding, output_padding);
        let (Some(out_h), Some(out_w)) = (out_len(h, kh), out_len(w, kw)) else {
            let why = format!(
                "no output size for stride {stride}, padding {padding}, output padding \
                 {output_padding}; output padding must be below the stride"
            );
            shape_panic("conv_transpose2d", self.shape(), weight.shape(), &why)
        };
        // The geometry of the conv2d this op is the adjoint of: its input is our output.
        let g = Conv2dGeometry {
            batch,
            c_in: c_out,
            c_out: c_in,
            h: out_h,
            w: out_w,
            kh,
            kw,
            stride,
            padding,
        };
        if winograd::applies(&g) {
            return conv_transpose2d_winograd(self, weight, bias, Tiling::new(g));
        }
        if (h, w, padding, output_padding) == (1, 1, 0, 0) {
            return conv_transpose2d_of_pixels(self, weight, bias, g);
        }

        let x_cm = to_channel_major(&self.data(), (batch, c_in, h * w));
        let mut y = conv_adjoint(&g, &x_cm, &weight.data());
        scratch::give(x_cm);
        if let Some(b) = bias {
            add_bias(&mut y, &b.data(), out_h * out_w);
        }

        let mut inputs = vec![self.clone(), weight.clone()];
        inputs.extend(bias.cloned());
        let gf = GradFn::new("conv_transpose2d", inputs, move |inp, _, grad_out| {
            let (x, weight) = (&inp[0], &inp[1]);
            // Both gradients read the columns of g; unfold them once.
            let cols = batch_columns(&g, grad_out);
            if x.requires_grad() {
                x.accumulate_grad_vec(conv_forward(&g, &cols, &weight.data(), |_| {}));
            }
            if weight.requires_grad() {
                let x_cm = to_channel_major(&x.data(), (g.batch, g.c_out, g.col_cols()));
                weight_grad(&g, weight, &x_cm, &cols);
                scratch::give(x_cm);
            }
            scratch::give(cols);
            if let Some(b) = inp.get(2).filter(|b| b.requires_grad()) {
                b.accumulate_grad_vec(bias_grad(grad_out, g.c_in, g.h * g.w));
            }
        });
        Tensor::from_op(g.input_shape().to_vec(), y, gf)
    }
}

/// [`Tensor::conv_transpose2d`] of a 1 × 1 input without padding (DCGAN's first layer):
/// each sample's output is its C_in values times the weight read as a C_in × (C_out·kh·kw)
/// matrix, so the whole op is one product with nothing to fold,
///
/// ```text
/// Y (N × C_out·kh·kw) = X (N × C_in) · W (C_in × C_out·kh·kw),   ∂X = G·Wᵀ,   ∂W = Xᵀ·G
/// ```
///
/// `g` is the geometry of the convolution it is the adjoint of (its input is our output).
fn conv_transpose2d_of_pixels<T: Float + GemmScalar>(
    x: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    g: Conv2dGeometry,
) -> Tensor<T> {
    let (n, c_in, out) = (g.batch, g.c_out, g.c_in * g.kh * g.kw);
    let mut y = scratch::take(n * out);
    let (x_mat, w_mat) = (x.data(), weight.data());
    let (x_view, w_view) = (
        MatRef::row_major(&x_mat, n, c_in),
        MatRef::row_major(&w_mat, c_in, out),
    );
    gemm(T::ONE, x_view, w_view, T::ZERO, &mut y);
    if let Some(b) = bias {
        add_bias(&mut y, &b.data(), g.kh * g.kw);
    }

    let mut inputs = vec![x.clone(), weight.clone()];
    inputs.extend(bias.cloned());
    let gf = GradFn::new("conv_transpose2d", inputs, move |inp, _, grad_out| {
        let (x, weight) = (&inp[0], &inp[1]);
        let g_view = MatRef::row_major(grad_out, n, out);
        if x.requires_grad() {
            let mut gx = scratch::take(n * c_in);
            let w = weight.data();
            let w_t = MatRef::row_major(&w, c_in, out).t();
            gemm(T::ONE, g_view, w_t, T::ZERO, &mut gx);
            x.accumulate_grad_vec(gx);
        }
        if weight.requires_grad() {
            let x_mat = x.data();
            let x_t = MatRef::row_major(&x_mat, n, c_in).t();
            weight.accumulate_grad_with(|gw, beta| gemm(T::ONE, x_t, g_view, beta, gw));
        }
        if let Some(b) = inp.get(2).filter(|b| b.requires_grad()) {
            b.accumulate_grad_vec(bias_grad(grad_out, g.c_in, g.kh * g.kw));
        }
    });
    Tensor::from_op(g.input_shape().to_vec(), y, gf)
}

/// `keep` when the gradient it serves will be taken, else back to scratch.
fn keep_if<T: Float>(keep: bool, v: Vec<T>) -> Option<Vec<T>> {
    if keep {
        return Some(v);
    }
    scratch::give(v);
    None
}

/// [`Tensor::conv2d`] for the geometries of [`winograd::applies`]. Forward keeps the data
/// transform D of x for ∂L/∂W and the kernel transform for ∂L/∂x; backward transforms g once
/// for both products.
fn conv2d_winograd<T: Float + GemmScalar>(
    x: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    t: Tiling,
    act: FusedActivation,
) -> Tensor<T> {
    let (d, wt) = (
        t.transform_data(&x.data()),
        t.transform_weight(&weight.data()),
    );
    let m = t.forward_products(&d, &wt);
    let mut y = t.inverse_y(&m);
    scratch::give(m);
    if bias.is_some() || act != FusedActivation::Identity {
        let plane = t.g.col_cols();
        let b_data = bias.map(|b| b.data());
        let b = b_data.as_deref();
        y.par_chunks_mut((t.g.c_out * plane).max(1))
            .for_each(|y_n| with_act!(act, |a| bias_then(y_n, b, plane, a)));
    }
    let grad = is_grad_enabled();
    let kept_d = keep_if(grad && weight.requires_grad(), d);
    let kept_wt = keep_if(grad && x.requires_grad(), wt);

    let mut inputs = vec![x.clone(), weight.clone()];
    inputs.extend(bias.cloned());
    let gf = GradFn::new("conv2d", inputs, move |inp, y, grad_out| {
        let (x, weight) = (&inp[0], &inp[1]);
        let through = through_act(act, y, grad_out);
        let grad_out = through.as_deref().unwrap_or(grad_out);
        let (mut kept_d, mut kept_wt) = (kept_d, kept_wt);
        if x.requires_grad() || weight.requires_grad() {
            let ybar = t.transform_y(grad_out);
            if x.requires_grad() {
                let wt = kept_wt
                    .take()
                    .unwrap_or_else(|| t.transform_weight(&weight.data()));
                let dbar = t.adjoint_products(&ybar, &wt);
                x.accumulate_grad_vec(t.inverse_data(&dbar));
                [dbar, wt].into_iter().for_each(scratch::give);
            }
            if weight.requires_grad() {
                let d = kept_d.take().unwrap_or_else(|| t.transform_data(&x.data()));
                let gwt = t.weight_products(&ybar, &d);
                weight.accumulate_grad_vec(t.inverse_weight(&gwt));
                [gwt, d].into_iter().for_each(scratch::give);
            }
            scratch::give(ybar);
        }
        kept_d.into_iter().chain(kept_wt).for_each(scratch::give);
        if let Some(b) = inp.get(2).filter(|b| b.requires_grad()) {
            b.accumulate_grad_vec(bias_grad(grad_out, t.g.c_out, t.g.col_cols()));
        }
    });
    Tensor::from_op(t.g.output_shape().to_vec(), y, gf)
}

/// [`Tensor::conv_transpose2d`] for the geometries of [`winograd::applies`], `t` being the
/// tiling of the convolution it is the adjoint of. Forward keeps the y-side transform Ȳ of
/// x for ∂L/∂W and the kernel transform for ∂L/∂x; backward transforms g once for both.
fn conv_transpose2d_winograd<T: Float + GemmScalar>(
    x: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    t: Tiling,
) -> Tensor<T> {
    let (ybar, wt) = (t.transform_y(&x.data()), t.transform_weight(&weight.data()));
    let dbar = t.adjoint_products(&ybar, &wt);
    let mut y = t.inverse_data(&dbar);
    scratch::give(dbar);
    if let Some(b) = bias {
        add_bias(&mut y, &b.data(), t.g.h * t.g.w);
    }
    let grad = is_grad_enabled();
    let kept_ybar = keep_if(grad && weight.requires_grad(), ybar);
    let kept_wt = keep_if(grad && x.requires_grad(), wt);

    let mut inputs = vec![x.clone(), weight.clone()];
    inputs.extend(bias.cloned());
    let gf = GradFn::new("conv_transpose2d", inputs, move |inp, _, grad_out| {
        let (x, weight) = (&inp[0], &inp[1]);
        let (mut kept_ybar, mut kept_wt) = (kept_ybar, kept_wt);
        if x.requires_grad() || weight.requires_grad() {
            let d = t.transform_data(grad_out);
            if x.requires_grad() {
                let wt = kept_wt
                    .take()
                    .unwrap_or_else(|| t.transform_weight(&weight.data()));
                let m = t.forward_products(&d, &wt);
                x.accumulate_grad_vec(t.inverse_y(&m));
                [m, wt].into_iter().for_each(scratch::give);
            }
            if weight.requires_grad() {
                let ybar = kept_ybar.take().unwrap_or_else(|| t.transform_y(&x.data()));
                let gwt = t.weight_products(&ybar, &d);
                weight.accumulate_grad_vec(t.inverse_weight(&gwt));
                [gwt, ybar].into_iter().for_each(scratch::give);
            }
            scratch::give(d);
        }
        kept_ybar.into_iter().chain(kept_wt).for_each(scratch::give);
        if let Some(b) = inp.get(2).filter(|b| b.requires_grad()) {
            b.accumulate_grad_vec(bias_grad(grad_out, t.g.c_in, t.g.h * t.g.w));
        }
    });
    Tensor::from_op(t.g.input_shape().to_vec(), y, gf)
}
