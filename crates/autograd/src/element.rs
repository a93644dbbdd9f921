//! The element types a tensor can hold: `f32` for training, `f64` for gradient checks.

use std::cell::RefCell;
use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use crate::kernels::im2col::WindowRows;
use crate::kernels::scratch::Stack;
use crate::kernels::winograd::{Padded, LANES};

/// A floating-point element type. Implemented for `f32` and `f64` only.
///
/// The trait gathers the scalar functions the kernels need, so that every op is written once
/// and runs in both precisions.
pub trait Float:
    Copy
    + Send
    + Sync
    + Debug
    + Display
    + Default
    + PartialOrd
    + Sum
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + 'static
{
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
    /// Machine epsilon of the type.
    const EPSILON: Self;
    /// `"f32"` or `"f64"`, for messages and checkpoints.
    const NAME: &'static str;

    /// Converts from `f64`, rounding when `Self` is `f32`.
    fn from_f64(v: f64) -> Self;
    /// Widens to `f64`.
    fn to_f64(self) -> f64;
    /// eˣ
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// xᵖ
    fn powf(self, p: Self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// |x|
    fn abs(self) -> Self;
    /// ln(1 + x), accurate for small x.
    fn ln_1p(self) -> Self;
    /// The larger of two values (NaN-propagation as in `f32::max`).
    fn max(self, other: Self) -> Self;
    /// The smaller of two values.
    fn min(self, other: Self) -> Self;
    /// True unless NaN or ±∞.
    fn is_finite(self) -> bool;

    /// Converts a count to this type.
    fn from_usize(n: usize) -> Self {
        Self::from_f64(n as f64)
    }

    /// Runs `f` on the calling thread's stack of scratch buffers of this type (see
    /// [`crate::kernels::scratch`]); `None` while the thread is shutting down or the stack
    /// is in use.
    fn with_scratch<R>(f: impl FnOnce(&mut Stack<Self>) -> R) -> Option<R>;

    /// The gather of im2col over whole samples, `dst[n·l + o] = src[n·plane + base[o]]`
    /// with l = base.len(), where the windows lie as `rows` describes (see
    /// [`crate::kernels::im2col::gather_table`]). `f32` has a SIMD path for stride 2.
    fn gather_windows(src: &[Self], base: &[usize], rows: WindowRows, dst: &mut [Self]) {
        crate::kernels::im2col::gather_table(src, base, rows.plane, dst)
    }

    /// The adjoint of [`Float::gather_windows`]: `dst[n·plane + base[o]] += src[n·l + o]`.
    fn scatter_add_windows(src: &[Self], base: &[usize], rows: WindowRows, dst: &mut [Self]) {
        crate::kernels::im2col::scatter_add_table(src, base, rows.plane, dst)
    }

    /// The planes of channels `c0 .. c0 + lanes` of an image (C × h·w), one vector of 16
    /// channels per pixel, into a zero-bordered slab for the Winograd transforms: see
    /// [`crate::kernels::winograd::interleave_portable`]. `f32` transposes 16 × 16 blocks in
    /// SIMD registers.
    fn interleave_lanes(
        image: &[Self],
        chans: (usize, usize),
        pad: Padded,
        slab: &mut [[Self; LANES]],
    ) {
        crate::kernels::winograd::interleave_portable(image, chans, pad, slab)
    }

    /// The inverse of [`Float::interleave_lanes`]: see
    /// [`crate::kernels::winograd::deinterleave_portable`].
    fn deinterleave_lanes(
        slab: &[[Self; LANES]],
        chans: (usize, usize),
        pad: Padded,
        image: &mut [Self],
    ) {
        crate::kernels::winograd::deinterleave_portable(slab, chans, pad, image)
    }
}

macro_rules! impl_float {
    (
        $t:ty,
        $name:literal,
        $tanh:path
        $(, $gather:path, $scatter_add:path, $interleave:path, $deinterleave:path)?
    ) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const EPSILON: Self = <$t>::EPSILON;
            const NAME: &'static str = $name;

            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn powf(self, p: Self) -> Self {
                <$t>::powf(self, p)
            }
            #[inline]
            fn tanh(self) -> Self {
                $tanh(self)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            fn min(self, other: Self) -> Self {
                <$t>::min(self, other)
            }
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            fn with_scratch<R>(f: impl FnOnce(&mut Stack<Self>) -> R) -> Option<R> {
                thread_local! {
                    static STACK: RefCell<Stack<$t>> = RefCell::new(Stack::default());
                }
                STACK
                    .try_with(|s| s.try_borrow_mut().ok().map(|mut s| f(&mut s)))
                    .ok()
                    .flatten()
            }
            $(
                fn gather_windows(
                    src: &[Self],
                    base: &[usize],
                    rows: WindowRows,
                    dst: &mut [Self],
                ) {
                    $gather(src, base, rows, dst)
                }
                fn scatter_add_windows(
                    src: &[Self],
                    base: &[usize],
                    rows: WindowRows,
                    dst: &mut [Self],
                ) {
                    $scatter_add(src, base, rows, dst)
                }
                fn interleave_lanes(
                    image: &[Self],
                    chans: (usize, usize),
                    pad: Padded,
                    slab: &mut [[Self; LANES]],
                ) {
                    $interleave(image, chans, pad, slab)
                }
                fn deinterleave_lanes(
                    slab: &[[Self; LANES]],
                    chans: (usize, usize),
                    pad: Padded,
                    image: &mut [Self],
                ) {
                    $deinterleave(slab, chans, pad, image)
                }
            )?
        }
    };
}

impl_float!(
    f32,
    "f32",
    crate::kernels::tanh::tanh_f32,
    crate::kernels::im2col::gather_windows_f32,
    crate::kernels::im2col::scatter_add_windows_f32,
    crate::kernels::winograd::interleave_f32,
    crate::kernels::winograd::deinterleave_f32
);
impl_float!(f64, "f64", f64::tanh);
