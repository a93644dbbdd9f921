//! Shapes, strides and NumPy-style broadcasting, plus the one panic format for shape errors.

use std::fmt::Write;

/// Number of elements of a shape (1 for a scalar, whose shape is empty).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major (C-order) strides of a shape, in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Formats a shape as `32 × 100` (a scalar prints as `scalar`).
pub fn fmt_shape(shape: &[usize]) -> String {
    if shape.is_empty() {
        return "scalar".to_string();
    }
    let mut s = String::new();
    for (i, d) in shape.iter().enumerate() {
        if i > 0 {
            s.push_str(" × ");
        }
        write!(s, "{d}").unwrap();
    }
    s
}

/// Panics with the engine's shape-error format: `op: lhs is 2 × 3 but rhs is 4 × 5 (why)`.
#[cold]
#[track_caller]
pub fn shape_panic(op: &str, lhs: &[usize], rhs: &[usize], why: &str) -> ! {
    panic!(
        "{op}: lhs is {} but rhs is {} ({why})",
        fmt_shape(lhs),
        fmt_shape(rhs)
    )
}

/// Panics with an op's name, the offending shape and what was expected.
#[cold]
#[track_caller]
pub fn op_panic(op: &str, shape: &[usize], why: &str) -> ! {
    panic!("{op}: input is {} ({why})", fmt_shape(shape))
}

/// The broadcast shape of two shapes, NumPy rules: align trailing axes; each pair of sizes
/// must be equal or contain a 1.
///
/// # Panics
/// When the shapes are not broadcast-compatible, naming `op` and both shapes.
#[track_caller]
pub fn broadcast_shape(op: &str, a: &[usize], b: &[usize]) -> Vec<usize> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = dim_from_end(a, rank - 1 - i);
        let db = dim_from_end(b, rank - 1 - i);
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => shape_panic(op, a, b, "shapes cannot be broadcast together"),
        };
    }
    out
}

/// Size of axis `from_end` counted from the last axis, 1 where the shape is too short.
fn dim_from_end(shape: &[usize], from_end: usize) -> usize {
    if from_end < shape.len() {
        shape[shape.len() - 1 - from_end]
    } else {
        1
    }
}

/// Strides that read a tensor of shape `shape` as if it had shape `out` (stride 0 on
/// broadcast axes). `shape` must broadcast to `out`.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let own = strides(shape);
    let offset = out.len() - shape.len();
    (0..out.len())
        .map(|i| {
            if i < offset || shape[i - offset] == 1 {
                0
            } else {
                own[i - offset]
            }
        })
        .collect()
}

/// The axes of `out` along which a tensor of shape `shape` was broadcast, i.e. the axes a
/// gradient must be summed over to return to `shape`.
pub fn broadcast_axes(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let offset = out.len() - shape.len();
    (0..out.len())
        .filter(|&i| i < offset || (shape[i - offset] == 1 && out[i] != 1))
        .collect()
}

/// Normalises a possibly negative axis index against a rank.
///
/// # Panics
/// When the axis is out of range.
#[track_caller]
pub fn norm_axis(op: &str, axis: isize, shape: &[usize]) -> usize {
    let rank = shape.len() as isize;
    let a = if axis < 0 { axis + rank } else { axis };
    if a < 0 || a >= rank {
        op_panic(op, shape, &format!("axis {axis} is out of range"));
    }
    a as usize
}

/// Calls `f(out_index, a_index, b_index)` for every element of the broadcast output, walking
/// the output in row-major order with an odometer instead of dividing per element.
pub fn for_each_broadcast(
    out: &[usize],
    a_strides: &[usize],
    b_strides: &[usize],
    mut f: impl FnMut(usize, usize, usize),
) {
    let n = numel(out);
    if n == 0 {
        return;
    }
    let rank = out.len();
    let mut idx = vec![0usize; rank];
    let (mut ia, mut ib) = (0usize, 0usize);
    for o in 0..n {
        f(o, ia, ib);
        // Advance the odometer: bump the last axis, carry into earlier ones.
        for ax in (0..rank).rev() {
            idx[ax] += 1;
            ia += a_strides[ax];
            ib += b_strides[ax];
            if idx[ax] < out[ax] {
                break;
            }
            ia -= a_strides[ax] * out[ax];
            ib -= b_strides[ax] * out[ax];
            idx[ax] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shape("t", &[4, 1, 3], &[5, 1]), vec![4, 5, 3]);
        assert_eq!(broadcast_shape("t", &[], &[2, 2]), vec![2, 2]);
        assert_eq!(broadcast_axes(&[5, 1], &[4, 5, 3]), vec![0, 2]);
        assert_eq!(broadcast_strides(&[5, 1], &[4, 5, 3]), vec![0, 1, 0]);
    }

    #[test]
    #[should_panic(expected = "add: lhs is 2 × 3 but rhs is 4")]
    fn incompatible_shapes_name_both() {
        broadcast_shape("add", &[2, 3], &[4]);
    }

    #[test]
    fn odometer_visits_broadcast_indices() {
        let mut seen = vec![];
        for_each_broadcast(&[2, 3], &[1, 0], &[0, 1], |o, a, b| seen.push((o, a, b)));
        assert_eq!(seen[4], (4, 1, 1));
        assert_eq!(seen.len(), 6);
    }
}
