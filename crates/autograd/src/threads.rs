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
//!
//! Waking a sleeping worker is slow too: on a virtual machine an idle CPU is handed back to
//! the host, and bringing it back takes tens of microseconds, as long as a whole W1 product.
//! A 2-thread GEMM of 32 × 256 × 512 took longer than a 1-thread one for that reason.
//! [`keep_warm`] runs a piece of work while the pool's other workers wait for its parallel
//! loops by spinning, as OpenMP runtimes do by default, instead of sleeping.

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

/// Runs `work` on the current thread while every other worker of the current rayon pool
/// polls for its parallel jobs instead of sleeping between them, and returns its result.
///
/// Call it on a worker (inside `ThreadPool::install`): the training loop and the
/// benchmarks do. Each other worker then runs a helper job that takes pending jobs from the
/// pool ([`rayon::yield_now`]) and spins while there are none, until `work` returns or
/// panics; a job handed out lands on a running CPU within a fraction of a microsecond.
/// The cost is those CPUs kept busy for as long as `work` runs. With one thread it only
/// calls `work`; nested, the inner helpers run inside the outer ones. The numbers computed
/// do not change, only how soon they are ready.
pub fn keep_warm<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    use std::sync::atomic::{AtomicBool, Ordering};

    let helpers = rayon::current_num_threads().saturating_sub(1);
    if helpers == 0 {
        return work();
    }
    let owner = rayon::current_thread_index();
    let done = AtomicBool::new(false);
    /// Sets the flag when dropped, so that the helpers also stop when `work` panics.
    struct Finish<'a>(&'a AtomicBool);
    impl Drop for Finish<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    rayon::scope(|s| {
        let finish = Finish(&done);
        for _ in 0..helpers {
            s.spawn(|_| {
                // A helper still queued when `work` waits in a join may be run by the
                // waiting thread itself; spinning there would wait for its own caller.
                if rayon::current_thread_index() == owner {
                    return;
                }
                let mut idle = 0u32;
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() == Some(rayon::Yield::Executed) {
                        idle = 0;
                        continue;
                    }
                    std::hint::spin_loop();
                    idle = idle.wrapping_add(1);
                    // Now and then let the OS run another process on this CPU.
                    if idle.is_multiple_of(4096) {
                        std::thread::yield_now();
                    }
                }
            });
        }
        let out = work();
        drop(finish);
        out
    })
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

    #[test]
    fn warm_workers_compute_what_one_thread_does_and_stop_after() {
        use crate::kernels::gemm::{gemm, MatRef};
        let (m, k, n) = (64, 300, 700);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 3) as f32 - 1.0).collect();
        let product = || {
            let mut c = vec![0.0f32; m * n];
            let (av, bv) = (MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n));
            gemm(1.0, av, bv, 0.0, &mut c);
            c
        };
        let one = pool(1).install(product);
        for threads in [1, 2, 3] {
            let p = pool(threads);
            // Several products in one warm scope, and warm scopes one after another and
            // nested: each returns (a helper that never stopped would hang the scope).
            let (first, second) = p.install(|| keep_warm(|| (product(), product())));
            assert_eq!(first, one, "{threads} threads, warm");
            assert_eq!(second, one, "{threads} threads, warm, again");
            let nested = p.install(|| keep_warm(|| keep_warm(product)));
            assert_eq!(nested, one, "{threads} threads, nested");
        }
    }

    #[test]
    fn a_panic_in_warm_work_reaches_the_caller_and_releases_the_helpers() {
        let p = pool(2);
        let caught = p
            .install(|| std::panic::catch_unwind(|| keep_warm(|| panic!("inside the warm scope"))));
        assert!(caught.is_err());
        // The pool still serves work afterwards: no helper is left spinning forever.
        let sum: u64 = p.install(|| {
            use rayon::prelude::*;
            (0..10_000u64).into_par_iter().sum()
        });
        assert_eq!(sum, 10_000 * 9_999 / 2);
    }
}
