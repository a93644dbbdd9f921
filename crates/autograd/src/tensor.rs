//! The [`Tensor`] type: a shared handle to a buffer, its shape, and its place in the graph.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::element::Float;
use crate::kernels::scratch;
use crate::shape::{fmt_shape, numel, op_panic};
use crate::storage::{Device, Storage};
use crate::tape::{self, GradFn};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A row-major tensor of any rank, with reverse-mode autodiff.
///
/// `Tensor` is a cheap, reference-counted handle: `clone()` shares the same buffer and node.
/// Values are `f32` by default; `Tensor<f64>` is used by the gradient checker.
pub struct Tensor<T: Float = f32> {
    pub(crate) node: Rc<Node<T>>,
}

pub(crate) struct Node<T: Float> {
    pub(crate) id: u64,
    pub(crate) shape: Vec<usize>,
    pub(crate) data: RefCell<Storage<T>>,
    pub(crate) grad: RefCell<Option<Vec<T>>>,
    /// The buffer of a gradient cleared by [`Tensor::zero_grad`], kept so that the next
    /// backward writes the new gradient into it instead of allocating and zeroing another.
    pub(crate) spare_grad: RefCell<Option<Vec<T>>>,
    pub(crate) requires_grad: Cell<bool>,
    /// Leaves and tensors marked with [`Tensor::retain_grad`] keep their gradient after
    /// backward; intermediate gradients are freed as soon as they have been propagated.
    pub(crate) retains_grad: Cell<bool>,
    pub(crate) grad_fn: RefCell<Option<GradFn<T>>>,
}

/// A node's buffers go back to the scratch stack when the last handle to it is dropped, so
/// that the next op's output of the same size reuses them instead of mapping and zeroing
/// fresh memory (see [`crate::kernels::scratch`]).
impl<T: Float> Drop for Node<T> {
    fn drop(&mut self) {
        let data = std::mem::replace(self.data.get_mut(), Storage::Cpu(Vec::new()));
        let buffers = [
            data.into_host_vec(),
            self.grad.get_mut().take(),
            self.spare_grad.get_mut().take(),
        ];
        buffers.into_iter().flatten().for_each(scratch::give);
    }
}

impl<T: Float> Clone for Tensor<T> {
    fn clone(&self) -> Self {
        Tensor {
            node: Rc::clone(&self.node),
        }
    }
}

impl<T: Float> Tensor<T> {
    fn from_storage(shape: Vec<usize>, data: Storage<T>) -> Self {
        let node = Node {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shape,
            data: RefCell::new(data),
            grad: RefCell::new(None),
            spare_grad: RefCell::new(None),
            requires_grad: Cell::new(false),
            retains_grad: Cell::new(false),
            grad_fn: RefCell::new(None),
        };
        Tensor {
            node: Rc::new(node),
        }
    }

    /// A tensor holding `data` with the given shape.
    ///
    /// # Panics
    /// When `data.len()` differs from the product of `shape`.
    #[track_caller]
    pub fn from_vec(data: Vec<T>, shape: &[usize]) -> Self {
        if data.len() != numel(shape) {
            op_panic(
                "from_vec",
                shape,
                &format!("{} values given for {} elements", data.len(), numel(shape)),
            );
        }
        Self::from_storage(shape.to_vec(), Storage::Cpu(data))
    }

    /// A scalar (rank-0) tensor.
    pub fn scalar(v: T) -> Self {
        Self::from_vec(vec![v], &[])
    }

    /// A tensor filled with one value.
    pub fn full(shape: &[usize], v: T) -> Self {
        Self::from_vec(vec![v; numel(shape)], shape)
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, T::ZERO)
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize]) -> Self {
        Self::full(shape, T::ONE)
    }

    /// Samples from U(low, high) with the caller's generator.
    pub fn rand_uniform<R: Rng + ?Sized>(
        shape: &[usize],
        low: f64,
        high: f64,
        rng: &mut R,
    ) -> Self {
        let data = (0..numel(shape))
            .map(|_| T::from_f64(rng.gen_range(low..high)))
            .collect();
        Self::from_vec(data, shape)
    }

    /// Samples from N(mean, std²) with the caller's generator.
    pub fn rand_normal<R: Rng + ?Sized>(shape: &[usize], mean: f64, std: f64, rng: &mut R) -> Self {
        let data = (0..numel(shape))
            .map(|_| {
                let z: f64 = StandardNormal.sample(rng);
                T::from_f64(mean + std * z)
            })
            .collect();
        Self::from_vec(data, shape)
    }

    /// Makes a result of an op: records `grad_fn` on the tape when grad mode is on and any
    /// input requires a gradient; otherwise the result is a plain constant.
    pub fn from_op(shape: Vec<usize>, data: Vec<T>, grad_fn: GradFn<T>) -> Self {
        debug_assert_eq!(data.len(), numel(&shape), "{}: output size", grad_fn.name);
        let out = Self::from_storage(shape, Storage::Cpu(data));
        if tape::is_grad_enabled() && grad_fn.inputs.iter().any(|t| t.requires_grad()) {
            out.node.requires_grad.set(true);
            *out.node.grad_fn.borrow_mut() = Some(grad_fn);
        }
        out
    }

    /// Marks this tensor as one whose gradient is wanted (a leaf: a parameter or an input).
    pub fn requires_grad_(self, on: bool) -> Self {
        self.set_requires_grad(on);
        self
    }

    /// Turns gradient tracking on or off for this tensor (used to freeze parameters).
    pub fn set_requires_grad(&self, on: bool) {
        self.node.requires_grad.set(on);
        self.node.retains_grad.set(on);
    }

    /// Keeps this intermediate tensor's gradient after backward (leaves keep theirs anyway).
    pub fn retain_grad(&self) {
        self.node.retains_grad.set(true);
    }

    /// Whether gradients flow to this tensor.
    pub fn requires_grad(&self) -> bool {
        self.node.requires_grad.get()
    }

    /// The shape, outermost axis first.
    pub fn shape(&self) -> &[usize] {
        &self.node.shape
    }

    /// The rank (number of axes).
    pub fn rank(&self) -> usize {
        self.node.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.node.shape)
    }

    /// The device holding the data.
    pub fn device(&self) -> Device {
        self.node.data.borrow().device()
    }

    /// A unique id, stable for the tensor's lifetime.
    pub fn id(&self) -> u64 {
        self.node.id
    }

    /// How many handles share this tensor's node: the caller's, plus one for every recorded
    /// op that still holds it as an input. For tests and debugging: once a graph has been
    /// run backward or dropped, a parameter's count falls back to the handles its owner holds.
    pub fn handle_count(&self) -> usize {
        Rc::strong_count(&self.node)
    }

    /// Borrows the elements, row-major.
    pub fn data(&self) -> Ref<'_, [T]> {
        Ref::map(self.node.data.borrow(), |s| s.as_slice())
    }

    /// Mutably borrows the elements (for optimizers and initialisers; not recorded).
    pub fn data_mut(&self) -> RefMut<'_, [T]> {
        RefMut::map(self.node.data.borrow_mut(), |s| s.as_mut_slice())
    }

    /// Copies the elements out.
    pub fn to_vec(&self) -> Vec<T> {
        self.data().to_vec()
    }

    /// The single value of a one-element tensor.
    ///
    /// # Panics
    /// When the tensor has more than one element.
    #[track_caller]
    pub fn item(&self) -> T {
        if self.numel() != 1 {
            op_panic("item", self.shape(), "expected exactly one element");
        }
        self.data()[0]
    }

    /// The accumulated gradient, if backward reached this tensor.
    pub fn grad(&self) -> Option<Tensor<T>> {
        let g = self.node.grad.borrow();
        g.as_ref()
            .map(|g| Tensor::from_vec(g.clone(), &self.node.shape))
    }

    /// Borrows the gradient buffer without copying (`None` before backward).
    pub fn grad_ref(&self) -> Ref<'_, Option<Vec<T>>> {
        self.node.grad.borrow()
    }

    /// Clears the gradient (optimizers call this between steps). The buffer is kept for
    /// the next gradient, which [`accumulate_grad_with`](Self::accumulate_grad_with) writes
    /// into it in place.
    pub fn zero_grad(&self) {
        if let Some(g) = self.node.grad.borrow_mut().take() {
            *self.node.spare_grad.borrow_mut() = Some(g);
        }
    }

    /// Adds a gradient that `write` computes straight into this tensor's gradient buffer,
    /// with no temporary: `write(dst, β)` must set `dst ← contribution + β·dst` and, when
    /// β = 0, must not read `dst` (a GEMM with that β does exactly this). The first
    /// contribution after [`zero_grad`](Self::zero_grad) reuses the cleared buffer (β = 0);
    /// later ones accumulate (β = 1). Does nothing when the tensor needs no gradient.
    pub fn accumulate_grad_with(&self, write: impl FnOnce(&mut [T], T)) {
        if !self.requires_grad() {
            return;
        }
        let mut slot = self.node.grad.borrow_mut();
        match slot.as_mut() {
            Some(acc) => write(acc, T::ONE),
            None => {
                let n = self.numel();
                let mut buf = self
                    .node
                    .spare_grad
                    .borrow_mut()
                    .take()
                    .filter(|b| b.len() == n)
                    .unwrap_or_else(|| scratch::take(n));
                write(&mut buf, T::ZERO);
                *slot = Some(buf);
            }
        }
    }

    /// Adds `g` into this tensor's gradient: the accumulation rule of reverse mode, needed
    /// when a tensor feeds several ops. Does nothing when the tensor needs no gradient.
    ///
    /// # Panics
    /// When `g` has the wrong number of elements.
    #[track_caller]
    pub fn accumulate_grad(&self, g: &[T]) {
        if !self.requires_grad() {
            return;
        }
        if g.len() != self.numel() {
            op_panic(
                "accumulate_grad",
                self.shape(),
                &format!("gradient has {} elements", g.len()),
            );
        }
        let mut slot = self.node.grad.borrow_mut();
        match slot.as_mut() {
            Some(acc) => crate::kernels::add_assign(acc, g),
            None => {
                let mut copy = scratch::take(g.len());
                copy.copy_from_slice(g);
                *slot = Some(copy);
            }
        }
    }

    /// Like [`accumulate_grad`](Self::accumulate_grad) but takes ownership, avoiding a copy
    /// for the first contribution.
    pub fn accumulate_grad_vec(&self, g: Vec<T>) {
        if !self.requires_grad() {
            return;
        }
        let mut slot = self.node.grad.borrow_mut();
        match slot.as_mut() {
            Some(acc) => {
                crate::kernels::add_assign(acc, &g);
                scratch::give(g);
            }
            None => {
                assert_eq!(g.len(), self.numel(), "accumulate_grad: gradient size");
                *slot = Some(g)
            }
        }
    }

    /// A new tensor sharing no graph with this one: same values, no history, no gradient.
    pub fn detach(&self) -> Tensor<T> {
        Tensor::from_vec(self.to_vec(), self.shape())
    }

    /// Converts the element type (f32 ↔ f64); the result is detached.
    pub fn cast<U: Float>(&self) -> Tensor<U> {
        let data = self
            .data()
            .iter()
            .map(|v| U::from_f64(v.to_f64()))
            .collect();
        Tensor::from_vec(data, self.shape())
    }

    /// Runs reverse mode from this scalar: every tensor that requires a gradient and that this
    /// one depends on receives ∂self/∂tensor, added into its `grad`. The graph is released.
    ///
    /// # Panics
    /// When the tensor has more than one element.
    #[track_caller]
    pub fn backward(&self) {
        if self.numel() != 1 {
            op_panic(
                "backward",
                self.shape(),
                "backward needs a one-element (scalar) loss",
            );
        }
        tape::backward(self, vec![T::ONE]);
    }

    /// Reverse mode from a non-scalar output, with the upstream gradient given explicitly
    /// (computes the vector-Jacobian product gradᵀ·J).
    ///
    /// # Panics
    /// When `grad` does not match this tensor's size.
    #[track_caller]
    pub fn backward_with(&self, grad: &[T]) {
        if grad.len() != self.numel() {
            op_panic(
                "backward_with",
                self.shape(),
                "upstream gradient size differs",
            );
        }
        tape::backward(self, grad.to_vec());
    }
}

impl<T: Float> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = self.data();
        let head: Vec<_> = data.iter().take(8).collect();
        write!(
            f,
            "Tensor<{}>[{}] {:?}{}",
            T::NAME,
            fmt_shape(self.shape()),
            head,
            if data.len() > 8 { " …" } else { "" }
        )
    }
}
