use autograd::kernels::gemm::{gemm, MatRef};
use std::time::Instant;

fn main() {
    let shapes = [
        (32, 512, 1024),
        (32, 1024, 784),
        (32, 784, 512),
        (32, 256, 512),
    ];
    for &(m, k, n) in &shapes {
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0f32; m * n];
        for (label, bt) in [("A·B ", false), ("A·Bᵀ", true)] {
            let bv = if bt {
                MatRef::row_major(&b, n, k).t()
            } else {
                MatRef::row_major(&b, k, n)
            };
            let av = MatRef::row_major(&a, m, k);
            let mut best = f64::MAX;
            for _ in 0..50 {
                let t = Instant::now();
                gemm(1.0, av, bv, 0.0, &mut c);
                best = best.min(t.elapsed().as_secs_f64());
            }
            let gf = 2.0 * (m * k * n) as f64 / best / 1e9;
            println!("{m}x{k}x{n} {label}: {gf:.1} GFLOP/s");
        }
    }
}
