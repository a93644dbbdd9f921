//! Where a tensor's numbers live.
//!
//! Every op reads and writes its operands through [`Storage`]. Today there is one device, the
//! CPU, holding a plain `Vec`. A second device adds a variant here and a kernel module beside
//! [`crate::kernels`]; the ops keep their shape logic and their backward rules, and only the
//! kernel calls they make dispatch on the variant.

/// A compute device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// Host memory; kernels use SIMD GEMM and rayon.
    Cpu,
}

/// The buffer behind a tensor.
#[derive(Clone, Debug)]
pub enum Storage<T> {
    /// A contiguous, row-major host buffer.
    Cpu(Vec<T>),
}

impl<T> Storage<T> {
    /// The device this buffer lives on.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
        }
    }

    /// The elements as a host slice.
    pub fn as_slice(&self) -> &[T] {
        match self {
            Storage::Cpu(v) => v,
        }
    }

    /// The elements as a mutable host slice.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        match self {
            Storage::Cpu(v) => v,
        }
    }

    /// The host buffer itself, for reuse once its tensor is gone (`None` for a buffer
    /// that lives on another device).
    pub fn into_host_vec(self) -> Option<Vec<T>> {
        match self {
            Storage::Cpu(v) => Some(v),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// True when the buffer holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
