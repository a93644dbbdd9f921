//! Matrix products. For C = A·B with upstream gradient G = ∂L/∂C:
//! ∂L/∂A = G·Bᵀ and ∂L/∂B = Aᵀ·G. The transposes are stride swaps, never copies.

use rayon::prelude::*;

use crate::element::Float;
use crate::kernels::gemm::{gemm, GemmScalar, MatRef};
use crate::kernels::scratch;
use crate::shape::shape_panic;
use crate::tape::GradFn;
use crate::tensor::Tensor;

/// A·B for row-major A (m × k) and B (k × n) into a fresh m × n buffer.
fn mm<T: Float + GemmScalar>(a: MatRef<T>, b: MatRef<T>) -> Vec<T> {
    let mut c = scratch::take(a.rows * b.cols);
    gemm(T::ONE, a, b, T::ZERO, &mut c);
    c
}

/// How one operand of a batched product is stored: a row-major `rows × cols` block, read
/// transposed when `t` is set (so the operand is `cols × rows`).
#[derive(Clone, Copy)]
struct Operand {
    rows: usize,
    cols: usize,
    t: bool,
}

impl Operand {
    fn view<T>(self, s: &[T]) -> MatRef<'_, T> {
        let v = MatRef::row_major(&s[..self.rows * self.cols], self.rows, self.cols);
        if self.t {
            v.t()
        } else {
            v
        }
    }
}

/// `batch` independent products Aᵢ·Bᵢ, in parallel over the batch (each single-threaded).
fn bmm<T: Float + GemmScalar>(batch: usize, a: &[T], ao: Operand, b: &[T], bo: Operand) -> Vec<T> {
    let (m, n) = (ao.view(a).rows, bo.view(b).cols);
    let (a_step, b_step) = (ao.rows * ao.cols, bo.rows * bo.cols);
    let mut c = scratch::take(batch * m * n);
    c.par_chunks_mut((m * n).max(1))
        .enumerate()
        .for_each(|(i, c)| {
            let (av, bv) = (ao.view(&a[i * a_step..]), bo.view(&b[i * b_step..]));
            T::gemm_serial(T::ONE, av, bv, T::ZERO, c, n);
        });
    c
}

impl<T: Float + GemmScalar> Tensor<T> {
    /// Matrix product.
    /// - 2-D: (m × k)·(k × n) → m × n.
    /// - batched: (b × m × k)·(b × k × n) → b × m × n, or (b × m × k)·(k × n) with the right
    ///   operand shared by every batch entry (its gradient is then summed over the batch).
    ///
    /// # Panics
    /// When the ranks are unsupported or the inner sizes differ.
    #[track_caller]
    pub fn matmul(&self, rhs: &Tensor<T>) -> Tensor<T> {
        let (a, b) = (self.shape(), rhs.shape());
        match (a.len(), b.len()) {
            (2, 2) if a[1] == b[0] => self.matmul_2d(rhs),
            (3, 3) if a[0] == b[0] && a[2] == b[1] => self.matmul_batched(rhs),
            (3, 2) if a[2] == b[0] => {
                // A shared right operand is a single 2-D product with the batch folded into m.
                let (bs, m, k) = (a[0], a[1], a[2]);
                self.reshape(&[bs * m, k])
                    .matmul_2d(rhs)
                    .reshape(&[bs, m, b[1]])
            }
            _ => shape_panic(
                "matmul",
                a,
                b,
                "need (m × k)·(k × n) or batched (b × m × k)",
            ),
        }
    }

    fn matmul_2d(&self, rhs: &Tensor<T>) -> Tensor<T> {
        let (m, k, n) = (self.shape()[0], self.shape()[1], rhs.shape()[1]);
        let c = mm(
            MatRef::row_major(&self.data(), m, k),
            MatRef::row_major(&rhs.data(), k, n),
        );
        let gf = GradFn::new(
            "matmul",
            vec![self.clone(), rhs.clone()],
            move |inp, _, g| {
                let (a, b) = (&inp[0], &inp[1]);
                let gv = MatRef::row_major(g, m, n);
                if a.requires_grad() {
                    // ∂L/∂A = G·Bᵀ: (m × n)·(n × k)
                    let grad_lhs = mm(gv, MatRef::row_major(&b.data(), k, n).t());
                    a.accumulate_grad_vec(grad_lhs);
                }
                if b.requires_grad() {
                    // ∂L/∂B = Aᵀ·G: (k × m)·(m × n)
                    let grad_rhs = mm(MatRef::row_major(&a.data(), m, k).t(), gv);
                    b.accumulate_grad_vec(grad_rhs);
                }
            },
        );
        Tensor::from_op(vec![m, n], c, gf)
    }

    /// The affine map of a dense layer, y = x·W + b, as one op: the bias rows are written
    /// into y first and the product is accumulated onto them (β = 1), which saves the
    /// separate broadcast add and its buffer. Backward, with g = ∂L/∂y:
    ///
    /// ```text
    /// ∂L/∂x = g·Wᵀ      ∂L/∂W = xᵀ·g      ∂L/∂b[j] = Σ_i g[i][j]
    /// ```
    ///
    /// # Shapes
    /// x: m × k, weight: k × n, bias: n; y: m × n.
    ///
    /// # Panics
    /// When x or the weight is not 2-D, the inner sizes differ, or the bias is not n long.
    #[track_caller]
    pub fn linear(&self, weight: &Tensor<T>, bias: &Tensor<T>) -> Tensor<T> {
        let (xs, ws) = (self.shape(), weight.shape());
        if xs.len() != 2 || ws.len() != 2 || xs[1] != ws[0] {
            shape_panic("linear", xs, ws, "need x of m × k and a weight of k × n");
        }
        let (m, k, n) = (xs[0], xs[1], ws[1]);
        if bias.shape() != [n] {
            shape_panic(
                "linear",
                ws,
                bias.shape(),
                "the bias needs one value per column",
            );
        }
        let bv = bias.data();
        let mut y = Vec::with_capacity(m * n);
        (0..m).for_each(|_| y.extend_from_slice(&bv));
        let (xv, wv) = (self.data(), weight.data());
        gemm(
            T::ONE,
            MatRef::row_major(&xv, m, k),
            MatRef::row_major(&wv, k, n),
            T::ONE,
            &mut y,
        );
        let inputs = vec![self.clone(), weight.clone(), bias.clone()];
        let gf = GradFn::new("linear", inputs, move |inp, _, g| {
            let (x, w, b) = (&inp[0], &inp[1], &inp[2]);
            let gv = MatRef::row_major(g, m, n);
            if x.requires_grad() {
                x.accumulate_grad_vec(mm(gv, MatRef::row_major(&w.data(), k, n).t()));
            }
            // Written into W's gradient buffer (β = 1 when one is already there).
            w.accumulate_grad_with(|dst, beta| {
                let xv = x.data();
                gemm(T::ONE, MatRef::row_major(&xv, m, k).t(), gv, beta, dst);
            });
            if b.requires_grad() {
                b.accumulate_grad_vec(crate::kernels::sum_middle(g, 1, m, n));
            }
        });
        Tensor::from_op(vec![m, n], y, gf)
    }

    fn matmul_batched(&self, rhs: &Tensor<T>) -> Tensor<T> {
        let (bs, m, k, n) = (
            self.shape()[0],
            self.shape()[1],
            self.shape()[2],
            rhs.shape()[2],
        );
        let op = |rows, cols, t| Operand { rows, cols, t };
        let c = bmm(
            bs,
            &self.data(),
            op(m, k, false),
            &rhs.data(),
            op(k, n, false),
        );

        let gf = GradFn::new(
            "matmul",
            vec![self.clone(), rhs.clone()],
            move |inp, _, g| {
                let (a, b) = (&inp[0], &inp[1]);
                if a.requires_grad() {
                    // ∂L/∂Aᵢ = Gᵢ·Bᵢᵀ for each batch entry i
                    let grad_lhs = bmm(bs, g, op(m, n, false), &b.data(), op(k, n, true));
                    a.accumulate_grad_vec(grad_lhs);
                }
                if b.requires_grad() {
                    // ∂L/∂Bᵢ = Aᵢᵀ·Gᵢ
                    let grad_rhs = bmm(bs, &a.data(), op(m, k, true), g, op(m, n, false));
                    b.accumulate_grad_vec(grad_rhs);
                }
            },
        );
        Tensor::from_op(vec![bs, m, n], c, gf)
    }
}
