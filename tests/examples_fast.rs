//! The teaching examples as tests: `backprop` and `optimal-discriminator` in full, exactly as
//! the binaries run them; `kl-asymmetry` shortened ([`kl_asymmetry::Config::quick`]).

use gan_suite::teach::{backprop, kl_asymmetry, optimal_discriminator};

#[test]
fn backprop_hand_engine_and_finite_differences_agree() {
    let report = backprop::run(backprop::Net::default());
    assert!(report.verified(), "{report}");
    assert_eq!(report.forward.len(), 7, "one line per forward value");
    assert_eq!(report.backward.len(), 17, "one line per gradient");
    for l in report.forward.iter().chain(&report.backward) {
        assert!(l.hand.is_finite() && l.engine.is_finite(), "{}", l.symbol);
    }
    for l in &report.backward {
        assert!(l.numeric.is_some_and(f64::is_finite), "{}", l.symbol);
    }

    let svg = backprop::plot_svg(&report).expect("figure");
    assert!(svg.contains("<svg") && svg.contains("∂L/∂a₁ = -0.2600"));
}

#[test]
fn backprop_agrees_for_other_numbers_and_target_zero() {
    let net = backprop::Net {
        x: [-1.5, 0.25],
        w: [[0.9, -1.1], [0.3, 0.7]],
        b: [-0.3, 0.4],
        v: [-1.2, 0.8],
        c: -0.1,
        t: 0.0,
    };
    let report = backprop::run(net);
    assert!(report.verified(), "{report}");
}

#[test]
fn optimal_discriminator_matches_the_formula_and_js() {
    let config = optimal_discriminator::Config::default();
    let report = optimal_discriminator::run(&config);
    assert!(report.verified(), "{report}");
    assert!(report.js.is_finite() && report.js > 0.0 && report.js < std::f64::consts::LN_2);
    let fits = std::iter::once(&report.quadratic).chain(&report.mlp);
    for fit in fits {
        assert!(
            fit.d
                .iter()
                .all(|d| d.is_finite() && (0.0..=1.0).contains(d)),
            "{}",
            fit.name
        );
        assert!(fit.trace.iter().all(|(_, v)| v.is_finite()), "{}", fit.name);
    }

    let svg = optimal_discriminator::plot_svg(&report).expect("figure");
    assert!(svg.contains("<svg") && svg.contains("D* formula"));
}

#[test]
fn kl_asymmetry_shortened_still_shows_the_asymmetry() {
    let report = kl_asymmetry::run(&kl_asymmetry::Config::quick());
    assert!(report.verified(), "{report}");
    assert_eq!(report.reverse.len(), 2);

    let svg = kl_asymmetry::plot_svg(&report).expect("figure");
    assert!(svg.contains("<svg") && svg.contains("forward"));
}
