//! Buffers reused across calls: the large temporaries of the convolutions (the batch's
//! columns, activations regrouped by channel) and the storage of tensors that have been
//! dropped come back to a small per-thread stack of freed buffers, and the next large
//! output or temporary is taken from it instead of from the allocator. At megabytes each, a
//! fresh buffer costs a zeroing pass and, when the allocator maps new pages for it, a page
//! fault per 4 KiB; a reused one costs neither.
//!
//! [`take`] hands out a buffer whose elements are left over from its last use (valid
//! numbers, never uninitialised memory), so only kernels that overwrite every element may
//! use it; [`take_zeroed`] is for kernels that accumulate. [`give`] returns a buffer for a
//! later take (buffers under [`MIN_LEN`] elements are left to the allocator). The stack
//! holds at most [`MAX_BUFFERS`] buffers and [`MAX_BYTES`] bytes per thread and element
//! type, dropping the oldest first.

use crate::element::Float;

/// Most buffers one thread keeps (per element type).
pub const MAX_BUFFERS: usize = 64;
/// Most bytes one thread keeps (per element type).
pub const MAX_BYTES: usize = 256 << 20;
/// Shorter buffers are not kept: the allocator serves them well, and kept ones would crowd
/// out the large ones.
pub const MIN_LEN: usize = 1 << 12;

/// Freed buffers of one element type on one thread, most recently freed last.
#[derive(Debug, Default)]
pub struct Stack<T> {
    free: Vec<Vec<T>>,
    bytes: usize,
}

impl<T: Float> Stack<T> {
    /// A freed buffer for `len` elements, resized to `len`, chosen so that the resize writes
    /// nothing: the smallest already at least `len` long (most recently freed among equals;
    /// it is the likeliest to be in cache), else the longest with room for `len`. A buffer
    /// with more than twice the room needed is kept for a larger request.
    fn take(&mut self, len: usize) -> Option<Vec<T>> {
        let fits = |v: &Vec<T>| v.capacity() >= len && v.capacity() <= 2 * len.max(MIN_LEN);
        let candidates = self.free.iter().enumerate().rev().filter(|(_, v)| fits(v));
        let (i, _) = candidates.min_by_key(|(_, v)| match v.len() >= len {
            true => (0, v.capacity()),
            false => (1, len - v.len()),
        })?;
        let mut v = self.free.remove(i);
        self.bytes -= v.capacity() * size_of::<T>();
        // Within capacity: shortening is free, lengthening writes only the gap.
        v.resize(len, T::ZERO);
        Some(v)
    }

    fn give(&mut self, v: Vec<T>) {
        if v.capacity() < MIN_LEN {
            return;
        }
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

/// A buffer of `len` zeros, for a kernel that adds into its output.
pub fn take_zeroed<T: Float>(len: usize) -> Vec<T> {
    match T::with_scratch(|s| s.take(len)).flatten() {
        Some(mut v) => {
            v.fill(T::ZERO);
            v
        }
        None => vec![T::ZERO; len],
    }
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
    fn the_best_fitting_buffer_is_taken() {
        let mut s = Stack::<f32>::default();
        s.give(vec![1.0; 9000]);
        s.give(vec![2.0; 5000]);
        s.give(vec![3.0; 100_000]);
        let v = s.take(4500).unwrap();
        assert_eq!(v[0], 2.0, "the smallest long enough buffer");
        let mut short = s.take(8000).unwrap();
        assert_eq!(short[0], 1.0);
        short.truncate(4000);
        s.give(short);
        s.give(vec![4.0; 8000]);
        assert_eq!(
            s.take(8000).unwrap()[0],
            4.0,
            "one needing no resize is preferred"
        );
        assert!(
            s.take(10_000).is_none(),
            "a buffer ten times too large is kept"
        );
        assert_eq!(s.take(90_000).unwrap()[0], 3.0);
    }

    #[test]
    fn zeroed_buffers_are_zero() {
        give(vec![5.0f32; 6000]);
        let v: Vec<f32> = take_zeroed(5000);
        assert_eq!(v.len(), 5000);
        assert!(v.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn the_stack_is_bounded() {
        let mut s = Stack::<f32>::default();
        s.give(vec![0.0; MIN_LEN - 1]);
        assert!(s.free.is_empty(), "short buffers are left to the allocator");
        for _ in 0..MAX_BUFFERS + 3 {
            s.give(vec![0.0; MIN_LEN]);
        }
        assert_eq!(s.free.len(), MAX_BUFFERS);
        s.give(vec![0.0; MAX_BYTES / 4]);
        assert_eq!(s.free.len(), 1, "older buffers make room for a large one");
        assert!(s.bytes <= MAX_BYTES);
    }
}
