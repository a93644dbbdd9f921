//! Gradient checks for reductions, the shape ops, and softmax / log-softmax, each along every
//! axis. Forward values are compared with index-by-index references.

mod common;

use autograd::Tensor;
use common::{assert_close, check, leaf, random_shape, ravel, rng, unravel};
use rand::seq::SliceRandom;
use rand::Rng;

/// One reduction of a 2 × 3 × 4 input.
struct ReduceCase {
    axes: &'static [isize],
    keepdims: bool,
    out: &'static [usize],
}

const REDUCE_CASES: [ReduceCase; 14] = [
    ReduceCase {
        axes: &[0],
        keepdims: false,
        out: &[3, 4],
    },
    ReduceCase {
        axes: &[0],
        keepdims: true,
        out: &[1, 3, 4],
    },
    ReduceCase {
        axes: &[1],
        keepdims: false,
        out: &[2, 4],
    },
    ReduceCase {
        axes: &[1],
        keepdims: true,
        out: &[2, 1, 4],
    },
    ReduceCase {
        axes: &[2],
        keepdims: false,
        out: &[2, 3],
    },
    ReduceCase {
        axes: &[2],
        keepdims: true,
        out: &[2, 3, 1],
    },
    ReduceCase {
        axes: &[-1],
        keepdims: false,
        out: &[2, 3],
    },
    ReduceCase {
        axes: &[-3],
        keepdims: true,
        out: &[1, 3, 4],
    },
    ReduceCase {
        axes: &[0, 2],
        keepdims: false,
        out: &[3],
    },
    ReduceCase {
        axes: &[0, 2],
        keepdims: true,
        out: &[1, 3, 1],
    },
    ReduceCase {
        axes: &[-1, 0],
        keepdims: false,
        out: &[3],
    },
    ReduceCase {
        axes: &[1, -1],
        keepdims: true,
        out: &[2, 1, 1],
    },
    ReduceCase {
        axes: &[0, 1, 2],
        keepdims: false,
        out: &[],
    },
    ReduceCase {
        axes: &[0, 1, 2],
        keepdims: true,
        out: &[1, 1, 1],
    },
];

/// Σ over `axes` by visiting every input element once and adding it into the output slot
/// it lands in (keepdims layout, which has the same order as the squeezed one).
fn reduce_reference(x: &Tensor<f64>, axes: &[usize], mean: bool) -> Vec<f64> {
    let shape = x.shape();
    let kept: Vec<usize> = (0..shape.len())
        .map(|i| if axes.contains(&i) { 1 } else { shape[i] })
        .collect();
    let mut out = vec![0.0; kept.iter().product()];
    for (flat, &v) in x.data().iter().enumerate() {
        let mut idx = unravel(flat, shape);
        axes.iter().for_each(|&a| idx[a] = 0);
        out[ravel(&idx, &kept)] += v;
    }
    if mean {
        let count: usize = axes.iter().map(|&a| shape[a]).product();
        out.iter_mut().for_each(|v| *v /= count as f64);
    }
    out
}

fn positive_axes(axes: &[isize], rank: usize) -> Vec<usize> {
    axes.iter()
        .map(|&a| if a < 0 { a + rank as isize } else { a } as usize)
        .collect()
}

#[test]
fn sum_and_mean_over_chosen_axes() {
    for (seed, case) in REDUCE_CASES.iter().enumerate() {
        let x = leaf(&[2, 3, 4], &mut rng(seed as u64));
        let axes = positive_axes(case.axes, 3);
        let (keep, ax) = (case.keepdims, case.axes);
        let name = format!("axes {ax:?} keepdims {keep}");

        let s = x.sum_axes(ax, keep);
        assert_eq!(s.shape(), case.out, "sum_axes {name}: shape");
        assert_close(
            &name,
            &s.to_vec(),
            &reduce_reference(&x, &axes, false),
            1e-14,
        );
        check(&format!("sum_axes {name}"), [x.clone()], |t| {
            t[0].sum_axes(ax, keep)
        });

        let m = x.mean_axes(ax, keep);
        assert_eq!(m.shape(), case.out, "mean_axes {name}: shape");
        assert_close(
            &name,
            &m.to_vec(),
            &reduce_reference(&x, &axes, true),
            1e-14,
        );
        check(&format!("mean_axes {name}"), &[x], |t| {
            t[0].mean_axes(ax, keep)
        });
    }
}

#[test]
fn reductions_over_random_axes_of_random_shapes() {
    for seed in 0..8 {
        let mut r = rng(500 + seed);
        let shape = random_shape(&mut r, 4, 3);
        let mut axes: Vec<isize> = (0..4).filter(|_| r.gen_bool(0.5)).collect();
        axes.shuffle(&mut r);
        let keep = r.gen_bool(0.5);
        let x = leaf(&shape, &mut r);
        let name = format!("sum_axes {axes:?} of {shape:?}");
        check(&name, [x.clone()], |t| t[0].sum_axes(&axes, keep));
        check(&name, &[x], |t| t[0].mean_axes(&axes, keep));
    }
}

#[test]
fn sum_and_mean_of_everything() {
    for (seed, shape) in [&[][..], &[5], &[2, 3], &[2, 1, 3]].iter().enumerate() {
        let x = leaf(shape, &mut rng(seed as u64));
        let total: f64 = x.data().iter().sum();
        assert_close("sum", &x.sum().to_vec(), &[total], 1e-14);
        let n = x.numel() as f64;
        assert_close("mean", &x.mean().to_vec(), &[total / n], 1e-14);
        assert!(x.sum().shape().is_empty(), "sum gives a rank-0 tensor");

        check("sum", [x.clone()], |t| t[0].sum());
        check("mean", &[x], |t| t[0].mean());
    }
}

#[test]
fn reshape_and_flatten() {
    let x = leaf(&[2, 3, 4], &mut rng(1));
    let cases: [(&[usize], &[usize]); 5] = [
        (&[6, 4], &[6, 4]),
        (&[4, usize::MAX], &[4, 6]),
        (&[usize::MAX], &[24]),
        (&[1, 24, 1], &[1, 24, 1]),
        (&[2, 2, 3, 2], &[2, 2, 3, 2]),
    ];
    for (to, want) in cases {
        let y = x.reshape(to);
        assert_eq!(y.shape(), want);
        assert_eq!(y.to_vec(), x.to_vec(), "reshape keeps row-major order");
        check(&format!("reshape to {want:?}"), [x.clone()], |t| {
            t[0].reshape(to)
        });
    }

    assert_eq!(x.flatten_from(1).shape(), [2, 12]);
    assert_eq!(x.flatten_from(2).shape(), [2, 3, 4]);
    assert_eq!(x.flatten().shape(), [24]);
    check("flatten_from(1)", [x.clone()], |t| t[0].flatten_from(1));
    check("flatten", &[x], |t| t[0].flatten());
}

/// y[i₀, i₁, …] = x[j] where j[perm[k]] = i[k]: output axis k is input axis perm[k].
fn permute_reference(x: &Tensor<f64>, perm: &[usize]) -> Vec<f64> {
    let out_shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    (0..x.numel())
        .map(|o| {
            let out_idx = unravel(o, &out_shape);
            let mut in_idx = vec![0; perm.len()];
            for (k, &p) in perm.iter().enumerate() {
                in_idx[p] = out_idx[k];
            }
            x.data()[ravel(&in_idx, x.shape())]
        })
        .collect()
}

#[test]
fn permute_every_order_of_three_axes() {
    let perms: [&[usize]; 7] = [
        &[0, 1, 2],
        &[0, 2, 1],
        &[1, 0, 2],
        &[1, 2, 0],
        &[2, 0, 1],
        &[2, 1, 0],
        // and one of rank 4
        &[2, 0, 3, 1],
    ];
    for (seed, perm) in perms.iter().enumerate() {
        let shape: &[usize] = if perm.len() == 3 {
            &[2, 3, 4]
        } else {
            &[2, 3, 2, 3]
        };
        let x = leaf(shape, &mut rng(seed as u64));
        let y = x.permute(perm);
        let want_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        assert_eq!(y.shape(), want_shape);
        assert_eq!(y.to_vec(), permute_reference(&x, perm), "permute {perm:?}");
        check(&format!("permute {perm:?}"), &[x], |t| t[0].permute(perm));
    }
}

#[test]
fn transpose_swaps_two_axes() {
    let x = leaf(&[2, 3, 4], &mut rng(3));
    assert_eq!(x.transpose(0, 2).shape(), [4, 3, 2]);
    assert_eq!(x.transpose(-1, -2).shape(), [2, 4, 3]);
    assert_eq!(
        x.transpose(-1, -2).to_vec(),
        permute_reference(&x, &[0, 2, 1])
    );
    check("transpose(0, 2)", [x.clone()], |t| t[0].transpose(0, 2));
    check("transpose(-1, -2)", &[x], |t| t[0].transpose(-1, -2));
}

#[test]
fn concat_three_inputs_along_each_axis() {
    for axis in [0isize, 1, 2, -1] {
        let ax = positive_axes(&[axis], 3)[0];
        let mut r = rng(40 + ax as u64);

        // Three parts of sizes 1, 2 and 3 along the axis, 2 × 3 × 2 elsewhere.
        let parts: Vec<Tensor<f64>> = (1..=3)
            .map(|len| {
                let mut shape = vec![2, 3, 2];
                shape[ax] = len;
                leaf(&shape, &mut r)
            })
            .collect();
        let y = Tensor::concat(&parts, axis);
        let mut want_shape = vec![2, 3, 2];
        want_shape[ax] = 6;
        assert_eq!(y.shape(), want_shape, "concat along {axis}");

        // Element by element: the coordinate along the axis picks the part and its offset.
        for o in 0..y.numel() {
            let mut idx = unravel(o, &want_shape);
            let (part, offset) = match idx[ax] {
                0 => (0, 0),
                1 | 2 => (1, 1),
                _ => (2, 3),
            };
            idx[ax] -= offset;
            let p = &parts[part];
            assert_eq!(y.data()[o], p.data()[ravel(&idx, p.shape())], "at {o}");
        }

        check(&format!("concat along {axis}"), &parts, |t| {
            Tensor::concat(t, axis)
        });
    }
}

#[test]
fn slice_along_each_axis() {
    let x = leaf(&[3, 4, 5], &mut rng(9));
    for (axis, start, end) in [(0isize, 1, 3), (1, 0, 2), (2, 2, 5), (-1, 1, 2), (-2, 3, 4)] {
        let ax = positive_axes(&[axis], 3)[0];
        let y = x.slice(axis, start, end);
        let mut want_shape = vec![3, 4, 5];
        want_shape[ax] = end - start;
        assert_eq!(y.shape(), want_shape, "slice {axis} {start}..{end}");

        for o in 0..y.numel() {
            let mut idx = unravel(o, &want_shape);
            idx[ax] += start;
            assert_eq!(y.data()[o], x.data()[ravel(&idx, x.shape())]);
        }

        let name = format!("slice axis {axis} {start}..{end}");
        check(&name, [x.clone()], |t| t[0].slice(axis, start, end));
    }
}

#[test]
fn softmax_and_log_softmax_along_each_axis() {
    for axis in [0isize, 1, 2, -1, -2] {
        let x = leaf(&[2, 3, 4], &mut rng(70 + axis.unsigned_abs() as u64));

        // Each lane along the axis sums to 1, and log_softmax is its logarithm.
        let y = x.softmax(axis);
        let ones = vec![1.0; x.numel() / x.shape()[positive_axes(&[axis], 3)[0]]];
        assert_close(
            "Σ softmax",
            &y.sum_axes(&[axis], false).to_vec(),
            &ones,
            1e-14,
        );
        let logs: Vec<f64> = y.data().iter().map(|v| v.ln()).collect();
        assert_close("log_softmax", &x.log_softmax(axis).to_vec(), &logs, 1e-13);

        check(&format!("softmax({axis})"), [x.clone()], |t| {
            t[0].softmax(axis)
        });
        check(&format!("log_softmax({axis})"), &[x], |t| {
            t[0].log_softmax(axis)
        });
    }
}

#[test]
fn softmax_is_stable_for_large_inputs() {
    // Shifting a lane by a constant leaves softmax unchanged; without the max subtraction,
    // e^1000 would overflow to ∞.
    let x = Tensor::<f64>::from_vec(vec![1.0, 2.0, 3.0], &[3]);
    let shifted = x.add_scalar(1000.0);
    assert_close(
        "softmax",
        &shifted.softmax(0).to_vec(),
        &x.softmax(0).to_vec(),
        1e-12,
    );
    let ls = shifted.log_softmax(0).to_vec();
    assert_close("log_softmax", &ls, &x.log_softmax(0).to_vec(), 1e-12);
}
