//! One table with the FMA ceiling, GEMM throughput on the W1 shapes, and the W1/W2 iteration
//! times at 1 and 2 threads — and, when PyTorch is installed and the peer scripts are given,
//! PyTorch's times measured in the same run, with the ratios (for W1 also against PyTorch
//! with its fused Adam, `Adam(fused=True)`, which is not its default).
//!
//! ```sh
//! cargo run --release --example perf -- [--peers ../shared/peers] [--quick]
//!     [--only w1|w2] [--threads N] [--no-gemm] [--scaling] [--in-situ]
//! ```
//!
//! `--only` times one workload, `--threads` one thread count (default: 1 and 2), and
//! `--no-gemm` skips the ceiling and the GEMM table: handy under a profiler. `--scaling`
//! prints instead how the time of an iteration grows with the batch size, at 1 and 2
//! threads (`--only` applies). `--in-situ` prints instead every GEMM shape of an iteration
//! as training runs it (cold weights included): calls, time and GFLOP/s, and the share of
//! the iteration spent in GEMM.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use autograd::kernels::gemm::{gemm, micro_kernel_gflops, Kernel, MatRef};
use autograd::threads::{keep_warm, pool};
use gan_suite::perf::{
    fma_ceiling_gflops, gemm_in_situ, median, time_iterations, time_iterations_at, Workload,
};

/// The GEMMs of one W1 dense layer (batch 32): forward X·W, weight gradient Xᵀ·G, input
/// gradient G·Wᵀ.
const W1_LAYERS: [(usize, usize); 7] = [
    (100, 256),
    (256, 512),
    (512, 1024),
    (1024, 784),
    (784, 512),
    (512, 256),
    (256, 1),
];

/// Seconds of each of `reps` runs of one product C = op(A)·op(B), m × k × n.
fn gemm_times(m: usize, k: usize, n: usize, a_t: bool, b_t: bool, reps: usize) -> Vec<f64> {
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0.0f32; m * n];
    let av = if a_t {
        MatRef::row_major(&a, k, m).t()
    } else {
        MatRef::row_major(&a, m, k)
    };
    let bv = if b_t {
        MatRef::row_major(&b, n, k).t()
    } else {
        MatRef::row_major(&b, k, n)
    };
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            gemm(1.0, av, bv, 0.0, &mut c);
            t.elapsed().as_secs_f64()
        })
        .collect()
}

/// GFLOP/s of an m × k × n product from the median of its timings.
fn gflops(m: usize, k: usize, n: usize, times: &mut [f64]) -> f64 {
    2.0 * (m * k * n) as f64 / median(times) / 1e9
}

fn gemm_gflops(m: usize, k: usize, n: usize, a_t: bool, b_t: bool, reps: usize) -> f64 {
    gflops(m, k, n, &mut gemm_times(m, k, n, a_t, b_t, reps))
}

/// PyTorch's median ms per iteration, variant A (one G forward shared by both steps).
struct PeerTimes {
    /// W1 with `torch.optim.Adam`'s default implementation.
    w1: f64,
    /// W1 with `Adam(fused=True)`, one kernel over all parameters, when the peer reports it.
    w1_fused: Option<f64>,
    /// W2 with the default Adam.
    w2: f64,
}

/// Runs the PyTorch peer and reads its medians.
fn peer_times(peers: &std::path::Path, threads: usize) -> Option<PeerTimes> {
    let script = peers.join("torch_gan_bench.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--threads", &threads.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("peer failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let pick = |name: &str, adam: &str| -> Option<f64> {
        let tag = format!(" variant A adam={adam}: median ");
        let line = text
            .lines()
            .find(|l| l.starts_with(name) && l.contains(&tag))?;
        let after = line.split("median ").nth(1)?;
        after.split_whitespace().next()?.parse().ok()
    };
    Some(PeerTimes {
        w1: pick("W1", "default")?,
        w1_fused: pick("W1", "fused"),
        w2: pick("W2", "default")?,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let peers = args
        .iter()
        .position(|a| a == "--peers")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let only = value("--only");
    let thread_counts: Vec<usize> = match value("--threads") {
        Some(t) => match t.parse() {
            Ok(n) if n > 0 => vec![n],
            _ => {
                eprintln!("error: --threads expects a positive whole number, got {t:?}");
                std::process::exit(2)
            }
        },
        None => vec![1, 2],
    };
    if let Some(o) = &only {
        if o != "w1" && o != "w2" {
            eprintln!("error: --only expects w1 or w2, got {o:?}");
            std::process::exit(2)
        }
    }
    let run_w1 = only.as_deref() != Some("w2");
    let run_w2 = only.as_deref() != Some("w1");
    let data_dir = gan::mnist::default_data_dir();
    let mnist = gan::mnist::Mnist::load_train(&data_dir).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1)
    });

    if args.iter().any(|a| a == "--scaling") {
        scaling_table(&mnist, quick, run_w1, run_w2);
        return;
    }
    if args.iter().any(|a| a == "--in-situ") {
        for &threads in &thread_counts {
            let workloads = [
                (Workload::MlpGan, "W1", run_w1),
                (Workload::Dcgan, "W2", run_w2),
            ];
            for (workload, name, run) in workloads {
                if run {
                    pool(threads).install(|| in_situ_table(workload, name, threads, &mnist, quick));
                }
            }
        }
        return;
    }
    if !args.iter().any(|a| a == "--no-gemm") {
        gemm_table(quick);
    }
    iteration_table(
        &mnist,
        quick,
        &thread_counts,
        run_w1,
        run_w2,
        peers.as_deref(),
    );
}

fn gemm_table(quick: bool) {
    let ceiling = pool(1).install(|| fma_ceiling_gflops(1000));
    println!("FMA ceiling, one core: {ceiling:.1} GFLOP/s (f32)");
    let kernel = Kernel::selected();
    if let Some(tile) = pool(1).install(|| micro_kernel_gflops(kernel, 1000)) {
        println!(
            "{kernel:?} micro-kernel alone, operands in L1: {tile:.1} GFLOP/s ({:.0}% of the \
             ceiling)",
            100.0 * tile / ceiling
        );
    }
    println!();

    println!("GEMM at one thread, W1 shapes (batch 32), GFLOP/s and % of the ceiling:");
    println!(
        "{:<16} {:>14} {:>14} {:>14}",
        "layer", "fwd X·W", "wgrad Xᵀ·G", "igrad G·Wᵀ"
    );
    let reps = if quick { 20 } else { 200 };
    for (k, n) in W1_LAYERS {
        let cells: Vec<String> = pool(1).install(|| {
            [
                gemm_gflops(32, k, n, false, false, reps),
                gemm_gflops(k, 32, n, true, false, reps),
                gemm_gflops(32, n, k, false, true, reps),
            ]
            .iter()
            .map(|g| format!("{g:6.1} ({:3.0}%)", 100.0 * g / ceiling))
            .collect()
        });
        println!(
            "{:<16} {:>14} {:>14} {:>14}",
            format!("{k} → {n}"),
            cells[0],
            cells[1],
            cells[2]
        );
    }
    large_table(ceiling, quick);
}

/// A named product: (m, k, n) and whether A and B are read through transposed views.
type Product = (&'static str, (usize, usize, usize), bool, bool);

/// Large products: square ones, and the convolution GEMMs of W2 (batch 64) as the engine
/// runs them, with the layout of each operand ("T" when read through a transposed view).
const LARGE: [Product; 8] = [
    ("square 512", (512, 512, 512), false, false),
    ("square 1024", (1024, 1024, 1024), false, false),
    ("G conv-t 2: cols = Wᵀ·X", (2048, 256, 3136), true, false),
    ("G conv-t 2: ∂X = W·cols", (256, 2048, 3136), false, false),
    ("G conv-t 2: ∂W = X·colsᵀ", (256, 3136, 2048), false, true),
    ("D conv 2: Y = W·cols", (128, 1024, 3136), false, false),
    ("D conv 2: ∂cols = Wᵀ·∂Y", (1024, 128, 3136), true, false),
    ("D conv 2: ∂W = ∂Y·colsᵀ", (128, 3136, 1024), false, true),
];

/// GFLOP/s of the [`LARGE`] products at 1 and 2 threads, against one and two cores'
/// ceilings.
fn large_table(ceiling: f64, quick: bool) {
    println!(
        "\nLarge products, GFLOP/s (% of the ceiling of the cores used) and 2-thread speed-up:"
    );
    println!(
        "{:<28} {:>20} {:>14} {:>14} {:>8}",
        "product", "m × k × n", "1 thread", "2 threads", "speed-up"
    );
    // Rounds of 1 and 2 threads alternate, so that a noisy moment on a shared machine
    // falls on both columns rather than on one.
    let (rounds, reps) = if quick { (1, 5) } else { (4, 10) };
    let (one_pool, two_pool) = (pool(1), pool(2));
    for (name, (m, k, n), a_t, b_t) in LARGE {
        let (mut one, mut two) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            one.extend(one_pool.install(|| gemm_times(m, k, n, a_t, b_t, reps)));
            two.extend(two_pool.install(|| keep_warm(|| gemm_times(m, k, n, a_t, b_t, reps))));
        }
        let (one, two) = (gflops(m, k, n, &mut one), gflops(m, k, n, &mut two));
        println!(
            "{name:<28} {:>20} {:>14} {:>14} {:>7.2}×",
            format!("{m} × {k} × {n}"),
            format!("{one:6.1} ({:3.0}%)", 100.0 * one / ceiling),
            format!("{two:6.1} ({:3.0}%)", 50.0 * two / ceiling),
            two / one
        );
    }
}

fn iteration_table(
    mnist: &gan::mnist::Mnist,
    quick: bool,
    thread_counts: &[usize],
    run_w1: bool,
    run_w2: bool,
    peers: Option<&std::path::Path>,
) {
    let (w1_iters, w2_iters) = if quick { (40, 4) } else { (400, 30) };
    println!("\nWhole iterations (D step on a real and a fake batch + G step, Adam), median ms:");
    println!(
        "{:<9} {:>8} {:>10} {:>10} {:>8} {:>12} {:>8}",
        "workload", "threads", "ours", "PyTorch", "ratio", "fused Adam", "ratio"
    );
    for &threads in thread_counts {
        let time =
            |w, warmup, iters| pool(threads).install(|| time_iterations(w, mnist, warmup, iters));
        let w1 = run_w1.then(|| time(Workload::MlpGan, 20, w1_iters));
        let w2 = run_w2.then(|| time(Workload::Dcgan, 3, w2_iters));
        let peer = peers.and_then(|p| peer_times(p, threads));
        let cells = |ours: f64, theirs: Option<f64>| match theirs {
            Some(t) => (format!("{t:.2}"), format!("{:.2}", ours / t)),
            None => ("-".to_string(), "-".to_string()),
        };
        for (name, ours, theirs, fused) in [
            (
                "W1 mlp",
                w1,
                peer.as_ref().map(|p| p.w1),
                peer.as_ref().and_then(|p| p.w1_fused),
            ),
            ("W2 dcgan", w2, peer.as_ref().map(|p| p.w2), None),
        ] {
            let Some(ours) = ours else { continue };
            let (t, r) = cells(ours, theirs);
            let (f, fr) = cells(ours, fused);
            println!("{name:<9} {threads:>8} {ours:>10.2} {t:>10} {r:>8} {f:>12} {fr:>8}");
        }
    }
}

/// One workload of the scaling table: whether to run it, its name, the batch sizes, and the
/// warm-up and timed iterations.
type ScalingRow = (
    bool,
    &'static str,
    Workload,
    &'static [usize],
    (usize, usize),
);

/// Median ms per iteration at several batch sizes and at 1 and 2 threads, with the cost
/// per sample and the 2-thread speed-up.
fn scaling_table(mnist: &gan::mnist::Mnist, quick: bool, run_w1: bool, run_w2: bool) {
    println!("Whole iterations by batch size, median ms (µs per real sample in brackets):");
    println!(
        "{:<9} {:>6} {:>18} {:>18} {:>9}",
        "workload", "batch", "1 thread", "2 threads", "speed-up"
    );
    let (one, two) = (pool(1), pool(2));
    let rows: [ScalingRow; 2] = [
        (
            run_w1,
            "W1 mlp",
            Workload::MlpGan,
            &[16, 32, 64, 128, 256],
            (20, 200),
        ),
        (
            run_w2,
            "W2 dcgan",
            Workload::Dcgan,
            &[16, 32, 64, 128],
            (2, 10),
        ),
    ];
    for (run, name, w, batches, (warmup, iters)) in rows {
        if !run {
            continue;
        }
        let iters = if quick { iters.div_ceil(5) } else { iters };
        for &batch in batches {
            let time = |p: &rayon::ThreadPool| {
                p.install(|| time_iterations_at(w, batch, mnist, warmup, iters))
            };
            let (t1, t2) = (time(&one), time(&two));
            let cell = |t: f64| format!("{t:8.2} ({:5.1})", 1e3 * t / batch as f64);
            println!(
                "{name:<9} {batch:>6} {:>18} {:>18} {:>8.2}×",
                cell(t1),
                cell(t2),
                t1 / t2
            );
        }
    }
}

/// Every GEMM shape of one workload's iteration, as training runs it, at the current pool's
/// thread count.
fn in_situ_table(
    workload: Workload,
    name: &str,
    threads: usize,
    mnist: &gan::mnist::Mnist,
    quick: bool,
) {
    let (warmup, iters) = match (workload, quick) {
        (Workload::MlpGan, false) => (20, 400),
        (Workload::MlpGan, true) => (5, 40),
        (Workload::Dcgan, false) => (3, 20),
        (Workload::Dcgan, true) => (1, 3),
    };
    let (ms, shapes) = gemm_in_situ(workload, mnist, warmup, iters);
    println!("\n{name} at {threads} thread(s), GEMM per iteration as training runs it:");
    println!(
        "{:>20} {:>7} {:>12} {:>10} {:>9}",
        "m × k × n", "layout", "calls/iter", "µs/call", "GFLOP/s"
    );
    let mut total = 0.0;
    for ((m, k, n, a_t, b_t), calls, seconds) in shapes {
        let layout = match (a_t, b_t) {
            (false, false) => "A·B",
            (true, false) => "Aᵀ·B",
            (false, true) => "A·Bᵀ",
            (true, true) => "Aᵀ·Bᵀ",
        };
        let per_call = seconds / calls as f64;
        let gflops = 2.0 * (m * k * n) as f64 / per_call / 1e9;
        let dims = format!("{m} × {k} × {n}");
        let per_iter = calls as f64 / iters as f64;
        println!(
            "{dims:>20} {layout:>7} {per_iter:>12.1} {:>10.1} {gflops:>9.1}",
            per_call * 1e6
        );
        total += seconds;
    }
    let gemm_ms = total * 1e3 / iters as f64;
    println!(
        "GEMM {gemm_ms:.2} ms of a median iteration of {ms:.2} ms ({:.0}%)",
        100.0 * gemm_ms / ms
    );
}
