//! Ops that move values without changing them: reshape, permute, concat, slice. Their
//! backward moves the gradient back along the same path.

use crate::element::Float;
use crate::kernels::scratch;
use crate::shape::{fmt_shape, for_each_broadcast, norm_axis, numel, op_panic, strides};
use crate::tape::GradFn;
use crate::tensor::Tensor;

impl<T: Float> Tensor<T> {
    /// The same values with a new shape of equal size. One axis may be given as `usize::MAX`
    /// to be inferred. The gradient is reshaped back.
    ///
    /// # Panics
    /// When the sizes differ.
    #[track_caller]
    pub fn reshape(&self, shape: &[usize]) -> Tensor<T> {
        let shape = infer_shape(self.shape(), shape);
        let gf = GradFn::new("reshape", vec![self.clone()], |inp, _, g| {
            inp[0].accumulate_grad(g);
        });
        Tensor::from_op(shape, self.to_vec(), gf)
    }

    /// Flattens every axis from `start` on into one: (N, C, H, W) → (N, C·H·W) for `start = 1`.
    pub fn flatten_from(&self, start: usize) -> Tensor<T> {
        let s = self.shape();
        let mut shape = s[..start.min(s.len())].to_vec();
        shape.push(numel(&s[start.min(s.len())..]));
        self.reshape(&shape)
    }

    /// Flattens to one axis.
    pub fn flatten(&self) -> Tensor<T> {
        self.flatten_from(0)
    }

    /// Reorders axes: output axis i is input axis `perm[i]`. The gradient is permuted back
    /// with the inverse permutation.
    ///
    /// # Panics
    /// When `perm` is not a permutation of the axes.
    #[track_caller]
    pub fn permute(&self, perm: &[usize]) -> Tensor<T> {
        let shape = self.shape().to_vec();
        let mut seen = vec![false; shape.len()];
        let valid = perm.len() == shape.len()
            && perm
                .iter()
                .all(|&p| p < shape.len() && !std::mem::replace(&mut seen[p], true));
        if !valid {
            op_panic(
                "permute",
                &shape,
                &format!("{perm:?} is not a permutation of its axes"),
            );
        }
        let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let own = strides(&shape);
        let src: Vec<usize> = perm.iter().map(|&p| own[p]).collect();
        let zero = vec![0; shape.len()];

        let x = self.data();
        let mut y = scratch::take(x.len());
        for_each_broadcast(&out_shape, &src, &zero, |o, i, _| y[o] = x[i]);
        drop(x);

        let grid = out_shape.clone();
        let gf = GradFn::new("permute", vec![self.clone()], move |inp, _, g| {
            let mut grad_input = scratch::take(g.len());
            for_each_broadcast(&grid, &src, &zero, |o, i, _| grad_input[i] = g[o]);
            inp[0].accumulate_grad_vec(grad_input);
        });
        Tensor::from_op(out_shape, y, gf)
    }

    /// Swaps two axes (negative counts from the end).
    #[track_caller]
    pub fn transpose(&self, a: isize, b: isize) -> Tensor<T> {
        let (a, b) = (
            norm_axis("transpose", a, self.shape()),
            norm_axis("transpose", b, self.shape()),
        );
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Joins tensors along `axis`; all other sizes must agree. Each input's gradient is its
    /// own slab of the upstream gradient.
    ///
    /// # Panics
    /// When the list is empty or the shapes disagree off the axis.
    #[track_caller]
    pub fn concat(parts: &[Tensor<T>], axis: isize) -> Tensor<T> {
        if parts.is_empty() {
            panic!("concat: no tensors given");
        }
        let first = parts[0].shape().to_vec();
        let ax = norm_axis("concat", axis, &first);
        for p in parts {
            let s = p.shape();
            let same = s.len() == first.len() && (0..s.len()).all(|i| i == ax || s[i] == first[i]);
            if !same {
                crate::shape::shape_panic("concat", &first, s, "sizes differ off the concat axis");
            }
        }
        let outer = numel(&first[..ax]);
        let inner = numel(&first[ax + 1..]);
        let lens: Vec<usize> = parts.iter().map(|p| p.shape()[ax] * inner).collect();
        let row: usize = lens.iter().sum();

        let mut y = Vec::with_capacity(outer * row);
        let datas: Vec<_> = parts.iter().map(|p| p.data()).collect();
        for o in 0..outer {
            for (d, &l) in datas.iter().zip(&lens) {
                y.extend_from_slice(&d[o * l..(o + 1) * l]);
            }
        }
        drop(datas);

        let mut out_shape = first.clone();
        out_shape[ax] = row / inner.max(1);
        if inner == 0 {
            out_shape[ax] = parts.iter().map(|p| p.shape()[ax]).sum();
        }
        let gf = GradFn::new("concat", parts.to_vec(), move |inp, _, g| {
            let mut start = 0;
            for (p, &l) in inp.iter().zip(&lens) {
                if p.requires_grad() {
                    let mut grad_part = Vec::with_capacity(outer * l);
                    for o in 0..outer {
                        grad_part.extend_from_slice(&g[o * row + start..o * row + start + l]);
                    }
                    p.accumulate_grad_vec(grad_part);
                }
                start += l;
            }
        });
        Tensor::from_op(out_shape, y, gf)
    }

    /// Elements `start..end` along `axis`. The gradient is scattered back into zeros.
    ///
    /// # Panics
    /// When `start > end` or `end` is past the end of the axis (`start == end` gives an empty
    /// slice).
    #[track_caller]
    pub fn slice(&self, axis: isize, start: usize, end: usize) -> Tensor<T> {
        let shape = self.shape().to_vec();
        let ax = norm_axis("slice", axis, &shape);
        if start > end || end > shape[ax] {
            op_panic(
                "slice",
                &shape,
                &format!("range {start}..{end} on axis {ax} of size {}", shape[ax]),
            );
        }
        let outer = numel(&shape[..ax]);
        let inner = numel(&shape[ax + 1..]);
        let (full, part) = (shape[ax] * inner, (end - start) * inner);

        let x = self.data();
        let mut y = Vec::with_capacity(outer * part);
        for o in 0..outer {
            y.extend_from_slice(&x[o * full + start * inner..o * full + start * inner + part]);
        }
        drop(x);

        let mut out_shape = shape.clone();
        out_shape[ax] = end - start;
        let gf = GradFn::new("slice", vec![self.clone()], move |inp, _, g| {
            let mut grad_input = scratch::take_zeroed(outer * full);
            for o in 0..outer {
                let dst = o * full + start * inner;
                grad_input[dst..dst + part].copy_from_slice(&g[o * part..(o + 1) * part]);
            }
            inp[0].accumulate_grad_vec(grad_input);
        });
        Tensor::from_op(out_shape, y, gf)
    }
}

/// Resolves one `usize::MAX` axis and checks the total size.
#[track_caller]
fn infer_shape(from: &[usize], to: &[usize]) -> Vec<usize> {
    let n = numel(from);
    let known: usize = to.iter().filter(|&&d| d != usize::MAX).product();
    let holes = to.iter().filter(|&&d| d == usize::MAX).count();
    let mut shape = to.to_vec();
    if holes == 1 && known > 0 && n.is_multiple_of(known) {
        for d in shape.iter_mut().filter(|d| **d == usize::MAX) {
            *d = n / known;
        }
    }
    if holes > 1 || numel(&shape) != n || shape.contains(&usize::MAX) {
        crate::shape::shape_panic(
            "reshape",
            from,
            to,
            &format!("cannot view as {}", fmt_shape(to)),
        );
    }
    shape
}
