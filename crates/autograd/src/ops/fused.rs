//! Activations that an op applies to its own output, saving the separate op's passes over
//! memory: [`FusedActivation`] names them, [`Act`] compiles the loops once per activation.

use crate::element::Float;
#[cfg(doc)]
use crate::tensor::Tensor;

/// An activation that an op applies to its own output
/// ([`Tensor::batch_norm_train_then`], [`Tensor::conv2d_then`]): a separate activation op
/// would cost another pass over memory each way, and its backward would read x, y and g.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FusedActivation {
    /// None: the op's own output, unchanged.
    Identity,
    /// max(v, 0), as [`Tensor::relu`].
    Relu,
    /// v for v > 0, αv otherwise, as [`Tensor::leaky_relu`]; α must be positive.
    LeakyRelu(f64),
}

/// A [`FusedActivation`] as a type, so that the loops that apply it are compiled once per
/// activation instead of testing the variant at every element.
pub(crate) trait Act: Copy + Send + Sync {
    /// Whether this is the identity, which the backward pass then skips.
    const IDENTITY: bool;

    /// act(v), with the same arithmetic as the separate op.
    fn apply<T: Float>(self, v: T) -> T;

    /// g·act′(v) at the pre-activation v, as the separate op's backward. The activations
    /// here keep the sign of v (ReLU, and leaky ReLU with a positive slope), so v may also
    /// be the output act(v).
    fn grad<T: Float>(self, v: T, g: T) -> T;
}

#[derive(Clone, Copy)]
pub(crate) struct Identity;

impl Act for Identity {
    const IDENTITY: bool = true;

    #[inline(always)]
    fn apply<T: Float>(self, v: T) -> T {
        v
    }

    #[inline(always)]
    fn grad<T: Float>(self, _: T, g: T) -> T {
        g
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Relu;

impl Act for Relu {
    const IDENTITY: bool = false;

    #[inline(always)]
    fn apply<T: Float>(self, v: T) -> T {
        if v > T::ZERO {
            v
        } else {
            T::ZERO
        }
    }

    #[inline(always)]
    fn grad<T: Float>(self, v: T, g: T) -> T {
        if v > T::ZERO {
            g
        } else {
            T::ZERO
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) struct LeakyRelu(pub(crate) f64);

impl Act for LeakyRelu {
    const IDENTITY: bool = false;

    #[inline(always)]
    fn apply<T: Float>(self, v: T) -> T {
        if v > T::ZERO {
            v
        } else {
            T::from_f64(self.0) * v
        }
    }

    #[inline(always)]
    fn grad<T: Float>(self, v: T, g: T) -> T {
        if v > T::ZERO {
            g
        } else {
            T::from_f64(self.0) * g
        }
    }
}

/// Evaluates `$body` with `$a` bound to the [`Act`] type of the [`FusedActivation`] `$act`.
macro_rules! with_act {
    ($act:expr, |$a:ident| $body:expr) => {
        match $act {
            $crate::ops::fused::FusedActivation::Identity => {
                let $a = $crate::ops::fused::Identity;
                $body
            }
            $crate::ops::fused::FusedActivation::Relu => {
                let $a = $crate::ops::fused::Relu;
                $body
            }
            $crate::ops::fused::FusedActivation::LeakyRelu(alpha) => {
                let $a = $crate::ops::fused::LeakyRelu(alpha);
                $body
            }
        }
    };
}

pub(crate) use with_act;

impl FusedActivation {
    /// Panics, naming `op` and x's shape, unless a leaky ReLU's slope is positive (which
    /// lets the backward pass read act′ off the sign of the output).
    #[track_caller]
    pub(crate) fn check(self, op: &str, shape: &[usize]) {
        if let FusedActivation::LeakyRelu(alpha) = self {
            if alpha.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                let why = format!("a fused leaky ReLU needs a positive slope, got {alpha}");
                crate::shape::op_panic(op, shape, &why);
            }
        }
    }
}
