//! The two GAN teaching examples in shortened form (`Config::quick`: a few iterations, small
//! sizes): every number is finite and the figures draw. The mode counting of
//! `mode-collapse` is checked exactly on samples placed by hand.

use gan::mnist::{Mnist, MNIST_SIDE};
use gan_suite::teach::js_saturation;
use gan_suite::teach::mode_collapse::{self, constructed_samples, coverage, Coverage, Ring};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn mode_counting_is_exact_on_constructed_samples() {
    let ring = Ring::default();
    let (samples, want) = constructed_samples(&ring);
    assert_eq!(coverage(&ring, &samples, want.min_count), want);
}

#[test]
fn mode_counting_threshold_and_quality_radius() {
    let ring = Ring::default();
    // One sample on every centre, plus one 2.9σ and one 3.1σ off centre 3 (outward).
    let mut samples: Vec<[f32; 2]> = ring
        .centres()
        .iter()
        .map(|c| [c[0] as f32, c[1] as f32])
        .collect();
    let c3 = ring.centre(3);
    for k in [2.9, 3.1] {
        let scale = (ring.radius + k * ring.std) / ring.radius;
        samples.push([(c3[0] * scale) as f32, (c3[1] * scale) as f32]);
    }

    let at = |min_count| coverage(&ring, &samples, min_count);
    let mut per_mode = vec![1; 8];
    per_mode[3] = 2;
    let want = |covered, min_count| Coverage {
        per_mode: per_mode.clone(),
        high_quality: 9,
        total: 10,
        covered,
        min_count,
    };
    assert_eq!(at(1), want(8, 1));
    assert_eq!(at(2), want(1, 2));
    assert_eq!(at(3), want(0, 3));
    assert_eq!(coverage(&ring, &[], 1).quality_fraction(), 0.0);
}

#[test]
fn real_ring_samples_cover_every_mode() {
    let ring = Ring::default();
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let t = ring.batch(4000, &mut rng);
    let samples: Vec<[f32; 2]> = t.data().chunks_exact(2).map(|p| [p[0], p[1]]).collect();
    let c = coverage(&ring, &samples, 400);
    assert_eq!(c.covered, 8, "{c:?}");
    // 1 − e^(−4.5) ≈ 0.989 of a 2-D Gaussian lies within 3σ.
    assert!((c.quality_fraction() - 0.989).abs() < 0.01, "{c:?}");
}

#[test]
fn mode_collapse_shortened_is_finite() {
    let config = mode_collapse::Config::quick();
    let report = mode_collapse::run(&config).expect("training stays finite");
    assert!(report.verified(), "{report}");
    assert_eq!(report.runs.len(), 2, "plain and minibatch-std for one seed");
    for run in &report.runs {
        let iters: Vec<u64> = run.snapshots.iter().map(|s| s.iter).collect();
        assert_eq!(iters, config.checkpoints);
        for s in &run.snapshots {
            assert_eq!(s.samples.len(), config.eval_samples);
            assert_eq!(s.coverage.total, config.eval_samples);
        }
    }
    let text = report.to_string();
    assert!(text.contains("minibatch-std") && text.contains("mean"));

    let svg = mode_collapse::plot_svg(&report).expect("figure");
    assert!(svg.contains("<svg") && svg.contains("minibatch standard deviation"));
}

#[test]
fn js_saturation_shortened_is_finite() {
    let config = js_saturation::Config::quick();
    let report = js_saturation::run(&config, &Mnist::noise(16, 7)).expect("training stays finite");
    assert!(report.verified(), "{report}");
    let names: Vec<&str> = report.traces.iter().map(|t| t.kind.name()).collect();
    assert_eq!(names, ["mlp", "dcgan"]);

    let image = MNIST_SIDE * MNIST_SIDE;
    for t in &report.traces {
        assert_eq!(t.records.len() as u64, config.iters);
        let at: Vec<u64> = t.grids.iter().map(|(i, _)| *i).collect();
        assert_eq!(at, config.grid_points());
        for (_, g) in &t.grids {
            assert_eq!(g.len(), config.grid_samples * image);
        }
    }

    let svg = js_saturation::plot_svg(&report).expect("figure");
    assert!(svg.contains("<svg") && svg.contains("dcgan generator"));
}
