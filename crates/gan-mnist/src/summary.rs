//! Model summaries in the layout of Keras' `model.summary()`.

use std::fmt::Write as _;

use layers::{Module, Sequential};

const LAYER_WIDTH: usize = 44;
const SHAPE_WIDTH: usize = 22;
const RULE_WIDTH: usize = LAYER_WIDTH + SHAPE_WIDTH + 12;

/// A table of `model`'s layers for inputs of shape `(None, input…)`: each layer, its output
/// shape and parameter count, then the totals (batch-norm running statistics count as
/// non-trainable parameters, as in Keras).
pub fn summary(title: &str, model: &Sequential, input: &[usize]) -> String {
    let mut shape = vec![1];
    shape.extend_from_slice(input);

    let mut out = String::new();
    let rule = |c: char| c.to_string().repeat(RULE_WIDTH);
    let _ = writeln!(out, "{title}");
    let _ = writeln!(out, "{}", rule('_'));
    let _ = writeln!(
        out,
        "{:<LAYER_WIDTH$}{:<SHAPE_WIDTH$}{:>12}",
        "Layer", "Output shape", "Param #"
    );
    let _ = writeln!(out, "{}", rule('='));
    for row in model.summary(&shape) {
        let shape = format_shape(&row.output_shape);
        let params = thousands(row.params);
        let _ = writeln!(
            out,
            "{:<LAYER_WIDTH$}{shape:<SHAPE_WIDTH$}{params:>12}",
            row.layer
        );
    }
    let _ = writeln!(out, "{}", rule('='));

    let trainable = model.param_count();
    let fixed: usize = model.buffers().iter().map(|(_, t)| t.numel()).sum();
    let _ = writeln!(out, "Total params: {}", thousands(trainable + fixed));
    let _ = writeln!(out, "Trainable params: {}", thousands(trainable));
    let _ = writeln!(out, "Non-trainable params: {}", thousands(fixed));
    out
}

/// `(None, 28, 28)`: the batch axis shown as Keras shows it.
fn format_shape(shape: &[usize]) -> String {
    let rest: Vec<String> = shape[1..].iter().map(usize::to_string).collect();
    match rest.len() {
        0 => "(None,)".to_string(),
        _ => format!("(None, {})", rest.join(", ")),
    }
}

/// 1493520 → `1,493,520`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let groups = digits.as_bytes().rchunks(3).rev();
    let groups: Vec<&str> = groups
        .map(|g| std::str::from_utf8(g).expect("ASCII digits"))
        .collect();
    groups.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits_by_three() {
        let cases = [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (1_493_520, "1,493,520"),
        ];
        for (n, want) in cases {
            assert_eq!(thousands(n), want);
        }
    }

    #[test]
    fn the_mlp_generator_counts_match_the_keras_example() {
        // Keras' summary of the classic example's generator reports 1,493,520 parameters,
        // 1,489,936 of them trainable.
        let mut rng = rand::thread_rng();
        let g = gan::models::mlp_generator(100, &mut rng);
        let text = summary("Generator", &g, &[100]);
        assert!(text.contains("Total params: 1,493,520"), "{text}");
        assert!(text.contains("Trainable params: 1,489,936"), "{text}");
        assert!(text.contains("(None, 1, 28, 28)"), "{text}");
    }
}
