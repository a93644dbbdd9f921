//! Scratch buffers reused across calls: the large temporaries of the convolutions (the
//! batch's columns, activations regrouped by channel) come from a small per-thread stack
//! of freed buffers instead of a fresh allocation each time. At tens of megabytes each, a
//! fresh buffer costs a zeroing pass and, when the allocator maps new pages for it, a page
//! fault per 4 KiB; a reused one costs neither.
//!
//! [`take`] hands out a buffer whose elements are left over from its last use (valid
//! numbers, never uninitialised memory), so only kernels that overwrite every element may
//! use it; [`give`] returns a buffer for the next [`take`]. The stack holds at most
//! [`MAX_BUFFERS`] buffers and [`MAX_BYTES`] bytes per thread and element type.

use crate::element::Float;

/// Most buffers one thread keeps (per element type).
pub const MAX_BUFFERS: usize = 8;
/// Most bytes one thread keeps (per element type).
pub const MAX_BYTES: usize = 64 << 20;

/// Freed buffers of one element type on one thread, most recently freed last.
#[derive(Debug, Default)]
pub struct Stack<T> {
    free: Vec<Vec<T>>,
    bytes: usize,
}

impl<T: Float> Stack<T> {
    /// The most recently freed buffer with room for `len` elements (it is the likeliest to
    /// be in cache), resized to `len`.
    fn take(&mut self, len: usize) -> Option<Vec<T>> {
        let i = self.free.iter().rposition(|v| v.capacity() >= len)?;
        let mut v = self.free.remove(i);
        self.bytes -= v.capacity() * size_of::<T>();
        // Within capacity: shortening is free, lengthening writes only the gap.
        v.resize(len, T::ZERO);
        Some(v)
    }

    fn give(&mut self, v: Vec<T>) {
        let size = v.capacity() * size_of::<T>();
        while !self.free.is_empty()
            && (self.free.len() >= MAX_BUFFERS || self.bytes + size > MAX_BYTES)
        {
            let old = self.free.remove(0);
            self.bytes -= old.capacity() * size_of::<T>();
        }
        if size <= MAX_BYTES {
            self.bytes += size;
            self.free.push(v);
        }
    }
}

/// A buffer of `len` elements with unspecified (but valid) contents, for a kernel that
/// writes every element.
pub fn take<T: Float>(len: usize) -> Vec<T> {
    T::with_scratch(|s| s.take(len))
        .flatten()
        .unwrap_or_else(|| vec![T::ZERO; len])
}

/// Hands a buffer back for a later [`take`] on this thread.
pub fn give<T: Float>(v: Vec<T>) {
    T::with_scratch(|s| s.give(v));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_taken_again_with_its_contents() {
        let v = vec![7.5f32; 5000];
        let ptr = v.as_ptr();
        give(v);
        let w: Vec<f32> = take(4000);
        assert_eq!(w.as_ptr(), ptr, "the freed buffer was not reused");
        assert_eq!(w.len(), 4000);
        assert!(w.iter().all(|&x| x == 7.5));
        give(w);
        let longer: Vec<f32> = take(4800);
        assert_eq!(longer.as_ptr(), ptr);
        assert!(longer[..4000].iter().all(|&x| x == 7.5));
        assert!(longer[4000..].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn too_small_buffers_are_not_handed_out() {
        give(vec![1.0f64; 10]);
        let big: Vec<f64> = take(100);
        assert_eq!(big.len(), 100);
    }

    #[test]
    fn the_stack_is_bounded() {
        let mut s = Stack::<f32>::default();
        for _ in 0..MAX_BUFFERS + 3 {
            s.give(vec![0.0; 16]);
        }
        assert_eq!(s.free.len(), MAX_BUFFERS);
        s.give(vec![0.0; MAX_BYTES / 4]);
        assert_eq!(s.free.len(), 1, "older buffers make room for a large one");
        assert!(s.bytes <= MAX_BYTES);
    }
}
