//! `perf --in-situ`: the GEMMs of whole training iterations, recorded per shape. (A test
//! binary of its own: the recording is process-wide, and no other test may run products
//! while it is on.)

use gan::mnist::Mnist;
use gan_suite::perf::{gemm_in_situ, Workload};

/// Three W1 iterations record each product of an iteration three times: among them G's
/// last forward product (32 × 1024 · 1024 × 784) and its weight gradient (Aᵀ·B).
#[test]
fn gemm_in_situ_records_every_product_of_each_iteration() {
    let (ms, shapes) = gemm_in_situ(Workload::MlpGan, &Mnist::noise(64, 3), 1, 3);
    assert!(ms > 0.0, "median iteration {ms} ms");
    let calls = |shape| shapes.iter().find(|s| s.0 == shape).map(|s| s.1);
    assert_eq!(calls((32, 1024, 784, false, false)), Some(3));
    assert_eq!(calls((1024, 32, 784, true, false)), Some(3));
    for (shape, calls, seconds) in &shapes {
        assert!(
            calls % 3 == 0 && *seconds > 0.0,
            "{shape:?}: {calls} calls, {seconds} s"
        );
    }
}
