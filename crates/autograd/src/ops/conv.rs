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
//! and ∂L/∂b is g summed over the batch and the pixels of each channel. The columns are
//! recomputed in backward rather than saved: im2col costs one pass over the columns, the
//! GEMM C_out of them, and saving would hold batch × (C_in·kh·kw) × (oh·ow) values per layer.
//!
//! Work is split over the batch with rayon, each sample running a single-threaded GEMM.

use rayon::prelude::*;

use crate::element::Float;
use crate::kernels::gemm::{GemmScalar, MatRef};
use crate::kernels::im2col::{col2im, im2col, Conv2dGeometry};
use crate::shape::{op_panic, shape_panic};
use crate::tape::GradFn;
use crate::tensor::Tensor;

/// Samples per partial sum of the weight gradient. Fixed, so that the order of additions,
/// and hence the result, does not depend on the number of threads.
const WEIGHT_GRAD_GROUP: usize = 4;

/// y_n = W · columns(x_n) for every sample: x is N × C_in × H × W, y is N × C_out × oh × ow.
fn conv_forward<T: Float + GemmScalar>(g: &Conv2dGeometry, x: &[T], weight: &[T]) -> Vec<T> {
    let (k, l) = (g.col_rows(), g.col_cols());
    let mut y = vec![T::ZERO; g.batch * g.c_out * l];
    let w = MatRef::row_major(weight, g.c_out, k);
    y.par_chunks_mut((g.c_out * l).max(1))
        .zip(x.par_chunks((g.c_in * g.h * g.w).max(1)))
        .for_each_init(
            || vec![T::ZERO; k * l],
            |cols, (y_n, x_n)| {
                // columns = (C_in·kh·kw) × (oh·ow), from x_n = C_in × H × W
                im2col(g, x_n, cols);
                // y_n (C_out × oh·ow) = W (C_out × C_in·kh·kw) · columns (C_in·kh·kw × oh·ow)
                let cols = MatRef::row_major(cols, k, l);
                T::gemm_serial(T::ONE, w, cols, T::ZERO, y_n, l);
            },
        );
    y
}

/// x_n = col2im(Wᵀ · y_n) for every sample, the adjoint of [`conv_forward`]: y is
/// N × C_out × oh × ow, the result N × C_in × H × W.
fn conv_adjoint<T: Float + GemmScalar>(g: &Conv2dGeometry, y: &[T], weight: &[T]) -> Vec<T> {
    let (k, l) = (g.col_rows(), g.col_cols());
    let mut x = vec![T::ZERO; g.batch * g.c_in * g.h * g.w];
    let w = MatRef::row_major(weight, g.c_out, k);
    x.par_chunks_mut((g.c_in * g.h * g.w).max(1))
        .zip(y.par_chunks((g.c_out * l).max(1)))
        .for_each_init(
            || vec![T::ZERO; k * l],
            |cols, (x_n, y_n)| {
                // columns (C_in·kh·kw × oh·ow) = Wᵀ (C_in·kh·kw × C_out) · y_n (C_out × oh·ow)
                let y_n = MatRef::row_major(y_n, g.c_out, l);
                T::gemm_serial(T::ONE, w.t(), y_n, T::ZERO, cols, l);
                // x_n (C_in × H × W) += col2im(columns (C_in·kh·kw × oh·ow))
                col2im(g, cols, x_n);
            },
        );
    x
}

/// ∂L/∂W = Σ_n a_n · columns(b_n)ᵀ, where a is N × C_out × oh × ow and b is
/// N × C_in × H × W. Groups of [`WEIGHT_GRAD_GROUP`] samples are summed in parallel, then
/// the group sums are added in index order.
fn weight_grad<T: Float + GemmScalar>(g: &Conv2dGeometry, a: &[T], b: &[T]) -> Vec<T> {
    let (k, l) = (g.col_rows(), g.col_cols());
    let (a_step, b_step) = (g.c_out * l, g.c_in * g.h * g.w);
    let groups = g.batch.div_ceil(WEIGHT_GRAD_GROUP);
    let partials: Vec<Vec<T>> = (0..groups)
        .into_par_iter()
        .map(|grp| {
            let mut grad_weight = vec![T::ZERO; g.c_out * k];
            let mut cols = vec![T::ZERO; k * l];
            let end = ((grp + 1) * WEIGHT_GRAD_GROUP).min(g.batch);
            for n in grp * WEIGHT_GRAD_GROUP..end {
                // columns = (C_in·kh·kw) × (oh·ow), from b_n = C_in × H × W
                im2col(g, &b[n * b_step..(n + 1) * b_step], &mut cols);
                // grad_weight (C_out × C_in·kh·kw) += a_n (C_out × oh·ow) · columnsᵀ
                let a_n = MatRef::row_major(&a[n * a_step..(n + 1) * a_step], g.c_out, l);
                let cols_t = MatRef::row_major(&cols, k, l).t();
                T::gemm_serial(T::ONE, a_n, cols_t, T::ONE, &mut grad_weight, k);
            }
            grad_weight
        })
        .collect();

    let mut sums = partials.into_iter();
    let mut grad_weight = sums.next().unwrap_or_else(|| vec![T::ZERO; g.c_out * k]);
    for p in sums {
        crate::kernels::add_assign(&mut grad_weight, &p);
    }
    grad_weight
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
    /// with zeros read outside x. Computed per sample as y_n = W · columns(x_n) (im2col).
    /// Backward, with g = ∂L/∂y: ∂L/∂x_n = col2im(Wᵀ·g_n), ∂L/∂W = Σ_n g_n·columns(x_n)ᵀ,
    /// ∂L/∂b[o] = Σ_{n,oy,ox} g[n][o][oy][ox].
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

        let mut y = conv_forward(&g, &self.data(), &weight.data());
        if let Some(b) = bias {
            add_bias(&mut y, &b.data(), g.col_cols());
        }

        let mut inputs = vec![self.clone(), weight.clone()];
        inputs.extend(bias.cloned());
        let gf = GradFn::new("conv2d", inputs, move |inp, _, grad_out| {
            let (x, weight) = (&inp[0], &inp[1]);
            if x.requires_grad() {
                x.accumulate_grad_vec(conv_adjoint(&g, grad_out, &weight.data()));
            }
            if weight.requires_grad() {
                weight.accumulate_grad_vec(weight_grad(&g, grad_out, &x.data()));
            }
            if let Some(b) = inp.get(2).filter(|b| b.requires_grad()) {
                b.accumulate_grad_vec(bias_grad(grad_out, g.c_out, g.col_cols()));
            }
        });
        Tensor::from_op(g.output_shape().to_vec(), y, gf)
    }

    /// Transposed 2-D convolution, the exact adjoint of [`conv2d`](Self::conv2d) with the
    /// same weight, plus a bias: each input value is scattered through the kernel,
    ///
    /// y[n][c][iy·s + i − p][ix·s + j − p] += W[o][c][i][j] · x[n][o][iy][ix],  y += b[c].
    ///
    /// Computed per sample as y_n = col2im(Wᵀ·x_n), with no zeros inserted into x. Backward,
    /// with g = ∂L/∂y: ∂L/∂x_n = W·columns(g_n), ∂L/∂W = Σ_n x_n·columns(g_n)ᵀ,
    /// ∂L/∂b[c] = Σ_{n,y,x} g[n][c][y][x].
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

        let mut y = conv_adjoint(&g, &self.data(), &weight.data());
        if let Some(b) = bias {
            add_bias(&mut y, &b.data(), out_h * out_w);
        }

        let mut inputs = vec![self.clone(), weight.clone()];
        inputs.extend(bias.cloned());
        let gf = GradFn::new("conv_transpose2d", inputs, move |inp, _, grad_out| {
            let (x, weight) = (&inp[0], &inp[1]);
            if x.requires_grad() {
                x.accumulate_grad_vec(conv_forward(&g, grad_out, &weight.data()));
            }
            if weight.requires_grad() {
                weight.accumulate_grad_vec(weight_grad(&g, &x.data(), grad_out));
            }
            if let Some(b) = inp.get(2).filter(|b| b.requires_grad()) {
                b.accumulate_grad_vec(bias_grad(grad_out, g.c_in, g.h * g.w));
            }
        });
        Tensor::from_op(g.input_shape().to_vec(), y, gf)
    }
}
