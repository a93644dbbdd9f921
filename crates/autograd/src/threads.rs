//! Thread pools for the kernels, with each worker kept on a CPU of its own.
//!
//! The parallel kernels split a product into a few blocks and hand them to rayon's
//! workers. A worker that has gone to sleep between two ops is woken for the next one, and
//! the operating system may then run it on the CPU where the waking thread is already
//! busy: both threads share one core until the scheduler moves one, which on a short op is
//! never. On a two-core virtual machine this was seen to turn a 2-thread GEMM of
//! 512 × 512 × 512 into a 1-thread one in about half of the runs (1.0× instead of 1.9×).
//! Pinning worker i to the i-th CPU that the process may use rules it out.
//!
//! [`pool_builder`] makes such a pool. Workers are pinned round-robin, so a pool larger
//! than the CPU set doubles up on some CPUs instead of failing. `AUTOGRAD_PIN_THREADS=0`
//! turns pinning off (to share the machine with other work, say); the numbers computed do
//! not depend on it, only the speed.

/// The environment variable that turns pinning off when set to `0`.
pub const PIN_ENV: &str = "AUTOGRAD_PIN_THREADS";

/// Whether [`pool_builder`] pins its workers: yes unless [`PIN_ENV`] is `0`.
pub fn pinning_enabled() -> bool {
    pinning_from(std::env::var(PIN_ENV).ok().as_deref())
}

/// The pinning setting that a value of [`PIN_ENV`] (or its absence) asks for.
fn pinning_from(value: Option<&str>) -> bool {
    value.is_none_or(|v| v.trim() != "0")
}

/// A rayon pool builder for `threads` workers (0: rayon's choice, `RAYON_NUM_THREADS` or
/// one per CPU) that pins worker i to the (i mod n)-th of the n CPUs this process may run
/// on, unless pinning is off ([`pinning_enabled`]) or the CPU set cannot be read. Further
/// settings (stack size, names) can be added before `build()`.
pub fn pool_builder(threads: usize) -> rayon::ThreadPoolBuilder {
    let builder = rayon::ThreadPoolBuilder::new().num_threads(threads);
    let cpus = match pinning_enabled().then(core_affinity::get_core_ids) {
        Some(Some(cpus)) if !cpus.is_empty() => cpus,
        _ => return builder,
    };
    builder.start_handler(move |worker| {
        // A CPU that refuses the thread leaves it unpinned, which is only slower.
        let _ = core_affinity::set_for_current(cpus[worker % cpus.len()]);
    })
}

/// A pool of `threads` pinned workers, as [`pool_builder`] describes.
///
/// # Panics
/// When the operating system cannot start the threads.
pub fn pool(threads: usize) -> rayon::ThreadPool {
    pool_builder(threads)
        .build()
        .unwrap_or_else(|e| panic!("threads::pool: cannot start {threads} threads: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_is_on_unless_the_variable_says_0() {
        assert!(pinning_from(None));
        assert!(pinning_from(Some("1")));
        assert!(pinning_from(Some("")));
        assert!(!pinning_from(Some("0")));
        assert!(!pinning_from(Some(" 0\n")));
    }

    #[test]
    fn pinned_pool_has_its_workers_and_runs_kernels_like_one_thread() {
        use crate::kernels::gemm::{gemm, MatRef};
        let (m, k, n) = (300, 200, 500);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 - 2.0).collect();
        let run = |threads: usize| {
            let pool = pool(threads);
            assert_eq!(pool.current_num_threads(), threads);
            let mut c = vec![0.0f32; m * n];
            pool.install(|| {
                let (av, bv) = (MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n));
                gemm(1.0, av, bv, 0.0, &mut c)
            });
            c
        };
        let one = run(1);
        assert_eq!(one, run(3), "3 workers on any number of CPUs");
        assert!(one.iter().any(|&x| x != 0.0));
    }
}
