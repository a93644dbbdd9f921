//! Time per product shape, when switched on: what `examples/perf.rs --in-situ` prints, to
//! see every GEMM of a training iteration with the caches as training leaves them (a
//! benchmark of one product alone runs it with its operands warm).
//!
//! Off by default; then each product pays one relaxed atomic load. Products that run side
//! by side on several threads (the Winograd GEMMs) each add their own time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// A product: m, k, n, and whether A and B are transposed views.
pub type Shape = (usize, usize, usize, bool, bool);

static ON: AtomicBool = AtomicBool::new(false);
static TABLE: Mutex<BTreeMap<Shape, (u64, f64)>> = Mutex::new(BTreeMap::new());

fn table() -> std::sync::MutexGuard<'static, BTreeMap<Shape, (u64, f64)>> {
    TABLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Switches recording on or off, and clears what was recorded.
pub fn record(on: bool) {
    table().clear();
    ON.store(on, Ordering::Relaxed);
}

/// Per shape: the number of products and their total seconds since recording began.
pub fn recorded() -> Vec<(Shape, u64, f64)> {
    table().iter().map(|(&s, &(n, t))| (s, n, t)).collect()
}

/// The start of a product, when recording.
pub(super) fn start() -> Option<Instant> {
    ON.load(Ordering::Relaxed).then(Instant::now)
}

/// Adds the product begun at `t0` (if recording) to its shape's total.
pub(super) fn stop(t0: Option<Instant>, shape: Shape) {
    if let Some(t0) = t0 {
        let seconds = t0.elapsed().as_secs_f64();
        let mut t = table();
        let entry = t.entry(shape).or_insert((0, 0.0));
        entry.0 += 1;
        entry.1 += seconds;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm::{gemm, MatRef};

    /// A product is counted under its shape and layout while recording is on, and nothing
    /// is after it is switched off. (Other tests may run products meanwhile: the shapes here
    /// are unusual, and only they are asserted on.)
    #[test]
    fn records_shapes_only_while_on() {
        let (a, b) = (vec![1.0f32; 3 * 5], vec![1.0f32; 5 * 7]);
        let mut c = vec![0.0f32; 3 * 7];
        let shape = (3, 5, 7, false, true);
        let count = |s: Shape| recorded().iter().find(|r| r.0 == s).map(|r| r.1);
        record(true);
        for _ in 0..2 {
            let bt = MatRef::row_major(&b, 7, 5).t();
            gemm(1.0, MatRef::row_major(&a, 3, 5), bt, 0.0, &mut c);
        }
        assert_eq!(count(shape), Some(2));
        assert_eq!(c, vec![5.0; 21]);
        record(false);
        gemm(
            1.0,
            MatRef::row_major(&a, 3, 5),
            MatRef::row_major(&b, 5, 7),
            0.0,
            &mut c,
        );
        assert_eq!(count((3, 5, 7, false, false)), None);
    }
}
