fn main() {
    println!(
        "FMA ceiling: {:.1} GFLOP/s per core",
        gan_suite::perf::fma_ceiling_gflops(1000)
    );
}
