//! The tape: how a result remembers the op that made it, and how `backward` replays the
//! record in reverse. The crate-level docs explain the idea with a worked example.

use std::cell::Cell;
use std::collections::HashSet;

use crate::element::Float;
use crate::tensor::Tensor;

/// The backward rule of one recorded op, called as `rule(inputs, output, grad_out)`: given
/// the op's inputs, its output values and ∂L/∂output, it adds ∂L/∂input into each input that
/// requires a gradient.
pub type BackwardFn<T> = Box<dyn FnOnce(&[Tensor<T>], &[T], &[T])>;

/// What an op leaves on the tape: its name, its inputs, and its backward rule.
pub struct GradFn<T: Float> {
    /// The op's name, for messages.
    pub name: &'static str,
    /// The tensors the op read; backward adds gradients into those that require one.
    pub inputs: Vec<Tensor<T>>,
    /// The vector-Jacobian product: `backward(inputs, output, grad_out)`.
    pub backward: BackwardFn<T>,
}

impl<T: Float> GradFn<T> {
    /// Bundles an op's name, inputs and backward rule.
    pub fn new(
        name: &'static str,
        inputs: Vec<Tensor<T>>,
        backward: impl FnOnce(&[Tensor<T>], &[T], &[T]) + 'static,
    ) -> Self {
        GradFn {
            name,
            inputs,
            backward: Box::new(backward),
        }
    }
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops currently record themselves on the tape.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Restores the previous grad mode when dropped; made by [`no_grad_guard`].
pub struct NoGradGuard {
    previous: bool,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Turns recording off until the returned guard is dropped.
pub fn no_grad_guard() -> NoGradGuard {
    let previous = GRAD_ENABLED.with(|g| g.replace(false));
    NoGradGuard { previous }
}

/// Runs `f` with recording off: results carry no history (inference, optimizer updates).
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = no_grad_guard();
    f()
}

/// Orders the graph under `root` so that every tensor comes after all the tensors it was
/// computed from (a post-order depth-first walk, iterative so deep graphs cannot overflow).
fn topo_order<T: Float>(root: &Tensor<T>) -> Vec<Tensor<T>> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    let mut stack = vec![(root.clone(), false)];
    while let Some((t, inputs_done)) = stack.pop() {
        if inputs_done {
            order.push(t);
            continue;
        }
        if !visited.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(f) = t.node.grad_fn.borrow().as_ref() {
            for input in f.inputs.iter().filter(|i| i.requires_grad()) {
                if !visited.contains(&input.id()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order
}

/// Reverse mode: seed the root's gradient, then visit tensors from the output back to the
/// inputs, each one passing its finished gradient to its inputs through its op's rule.
pub(crate) fn backward<T: Float>(root: &Tensor<T>, seed: Vec<T>) {
    if !root.requires_grad() {
        return;
    }
    let order = topo_order(root);
    root.accumulate_grad_vec(seed);
    for t in order.iter().rev() {
        // Taking the rule out of the node releases the op's saved inputs once it has run:
        // this is what frees the graph after backward.
        let Some(f) = t.node.grad_fn.borrow_mut().take() else {
            continue;
        };
        let grad = if t.node.retains_grad.get() {
            t.node.grad.borrow().clone()
        } else {
            t.node.grad.borrow_mut().take()
        };
        if let Some(g) = grad {
            (f.backward)(&f.inputs, &t.data(), &g);
            crate::kernels::scratch::give(g);
        }
    }
}
