//! Load-time proof that no sum the engine computes can overflow f32 (docs/format.md).
//!
//! Finite weights are not enough: an output row of `3e38` makes every logit `inf` and every score
//! `NaN`. But every activation of docs/model.md is bounded, so each matrix-vector product is too:
//!
//! - the state: `h' = (1 − z) ⊙ n + z ⊙ (d ⊙ h)` with `n = tanh(..)`, `z, d = σ(..)` is a convex
//!   combination of values in `[−1, 1]` and `d ⊙ h`, so `|h'| ≤ max(1, |h|)`; a state starts at 0
//!   or at a stored `users.state` row, hence `|h| ≤ H_max = max(1, max |users.state|)`;
//! - the readout `o = σ(W_q τ_q + b_q) ⊙ h`: `|o| ≤ H_max`;
//! - the cell input `u = [E[i] + K[k]; c; s]`: `|x_c| ≤ max_i |E[i, c]| + max_k |K[k, c]|`,
//!   `0 ≤ c = ln(1 + Δ/60) ≤ 41` for any `Δ` below 2⁶⁴ seconds, `s ∈ {0, 1}`.
//!
//! So row `r` of `y = W v + b` satisfies `|y_r| ≤ |b_r| + Σ_c |W[r, c]| · max|v_c|`, computed here
//! in f64. Every such bound — each pre-activation of the cell, each logit `O[j] · o + b_o[j]` —
//! must stay within [`MAX_ACTIVATION`]; then no partial sum overflows (f32 reaches 3.4e38), the
//! softmax's `logit − max` cannot either, and real logits stay far above the table's padding
//! lanes (−1e30). Trained models are many orders of magnitude inside this (logits of tens).

use crate::error::{Error, Result};

/// Largest magnitude a pre-activation or logit may reach in the worst case.
pub const MAX_ACTIVATION: f64 = 1e18;

/// Upper bound of the time feature `c = ln(1 + Δ/60)` for any gap below 2⁶⁴ seconds.
const MAX_TIME_FEATURE: f64 = 41.0;

/// One affine layer `y = W v + b` and where its input's bound comes from.
struct Layer<'a> {
    /// Tensor name of `W`.
    weight: &'a str,
    /// `W`, row-major.
    w: &'a [f32],
    /// Tensor name of `b`.
    bias: &'a str,
    /// `b` (one entry per row).
    b: &'a [f32],
    /// What a row's output is called in errors ("logit", "pre-activation").
    output: &'a str,
    /// Where the input's bound comes from (for errors).
    input: &'a str,
}

/// The f32 tensors the bound needs, by role.
pub struct Weights<'a> {
    /// `H`.
    pub hidden: usize,
    /// `E` `[N, H]`.
    pub item_embedding: &'a [f32],
    /// `K` `[K, H]`.
    pub event_type_embedding: &'a [f32],
    /// `users.state` `[U, H]`.
    pub state: &'a [f32],
    /// `W_d`, `b_d`.
    pub discount: (&'a [f32], &'a [f32]),
    /// `W_ih`, `b_ih`.
    pub input: (&'a [f32], &'a [f32]),
    /// `W_hh`, `b_hh`.
    pub recurrent: (&'a [f32], &'a [f32]),
    /// `W_q`, `b_q`.
    pub readout: (&'a [f32], &'a [f32]),
    /// `O`, `b_o`.
    pub output: (&'a [f32], &'a [f32]),
}

/// Checks every layer of the model; an error names the tensor, the value and the bound.
pub fn check(w: &Weights<'_>, file: &str) -> Result<()> {
    let h = w.hidden;
    let state_max = w
        .state
        .iter()
        .fold(1.0f64, |m, v| m.max(f64::from(v.abs())));
    let column_max = |m: &[f32]| -> Vec<f64> {
        let mut max = vec![0.0f64; h];
        for row in m.chunks_exact(h) {
            for (m, v) in max.iter_mut().zip(row) {
                *m = m.max(f64::from(v.abs()));
            }
        }
        max
    };
    let mut cell_input: Vec<f64> = column_max(w.item_embedding)
        .iter()
        .zip(column_max(w.event_type_embedding))
        .map(|(e, k)| e + k)
        .collect();
    if let Some((c, &x)) = cell_input
        .iter()
        .enumerate()
        .find(|(_, &x)| x > MAX_ACTIVATION)
    {
        return Err(Error::model_format(
            file,
            "item_embedding",
            format!(
                "column {c}: |item_embedding| + |event_type_embedding| reaches {x:.3e}; expected \
                 at most {MAX_ACTIVATION:.0e} (so f32 arithmetic cannot overflow)"
            ),
        ));
    }
    cell_input.extend([MAX_TIME_FEATURE, 1.0]);
    let state = vec![state_max; h];
    const CELL_INPUT: &str = "u = [item_embedding + event_type_embedding; c ≤ 41; s ≤ 1]";
    const STATE: &str = "the state, |h| ≤ max(1, |users.state|)";
    let time = vec![MAX_TIME_FEATURE, 1.0];
    let layers = [
        (
            ("discount.weight", "discount.bias"),
            w.discount,
            &cell_input,
            CELL_INPUT,
        ),
        (
            ("gru.weight_ih", "gru.bias_ih"),
            w.input,
            &cell_input,
            CELL_INPUT,
        ),
        (("gru.weight_hh", "gru.bias_hh"), w.recurrent, &state, STATE),
        (
            ("readout.weight", "readout.bias"),
            w.readout,
            &time,
            "τ_q = [c ≤ 41; s ≤ 1]",
        ),
    ];
    for ((weight, bias), (wm, b), bounds, input) in layers {
        let layer = Layer {
            weight,
            w: wm,
            bias,
            b,
            output: "pre-activation",
            input,
        };
        check_layer(&layer, bounds, file)?;
    }
    let output = Layer {
        weight: "output.weight",
        w: w.output.0,
        bias: "output.bias",
        b: w.output.1,
        output: "logit",
        input: "o = σ(..) ⊙ h, |o| ≤ max(1, |users.state|)",
    };
    check_layer(&output, &state, file)
}

/// Checks `|b_r| + Σ_c |W[r, c]| · input[c] ≤ MAX_ACTIVATION` for every row `r`.
fn check_layer(layer: &Layer<'_>, input: &[f64], file: &str) -> Result<()> {
    let cols = input.len();
    for (r, (row, &b)) in layer.w.chunks_exact(cols).zip(layer.b).enumerate() {
        let product = |c: usize| f64::from(row[c].abs()) * input[c];
        let weighted: f64 = (0..cols).map(product).sum();
        let bound = weighted + f64::from(b.abs());
        if bound <= MAX_ACTIVATION {
            continue;
        }
        let (tensor, index, value, times) = if f64::from(b.abs()) >= weighted {
            (layer.bias, r, b, String::new())
        } else {
            // Blame the largest product, and say how large its input can be (a huge
            // `users.state` shows up here with an ordinary weight).
            let c = (0..cols)
                .max_by(|&x, &y| product(x).total_cmp(&product(y)))
                .unwrap_or(0);
            let times = format!(
                ", times an input of up to {:.3e} ({}),",
                input[c], layer.input
            );
            (layer.weight, r * cols + c, row[c], times)
        };
        return Err(Error::model_format(
            file,
            tensor,
            format!(
                "value {value:e} at flat index {index}{times} lets row {r}'s {} reach \
                 ±{bound:.3e}; expected at most ±{MAX_ACTIVATION:.0e} so f32 arithmetic cannot \
                 overflow",
                layer.output
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model_dir::load_model;
    use crate::engine::test_fixtures::{temp_dir, write_model_with};

    fn load_message(tag: &str, name: &str, index: usize, value: f32) -> String {
        let dir = temp_dir(tag);
        write_model_with(&dir, 4, 10, 3, 1, |_, t| {
            let at = 4 * index;
            t.get_mut(name).unwrap().2[at..at + 4].copy_from_slice(&value.to_le_bytes());
        });
        let err = load_model(&dir).err().expect("expected a load error");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(err, Error::ModelFormat { .. }), "{err:?}");
        err.to_string()
    }

    #[test]
    fn huge_finite_weights_are_refused_naming_the_tensor_and_value() {
        let e = load_message("huge-out", "output.weight", 13, 3e38);
        assert!(
            e.contains(
                "model.safetensors: output.weight: value 3e38 at flat index 13, times an input of \
                 up to 1.000e0 (o = σ(..) ⊙ h, |o| ≤ max(1, |users.state|)), lets row 3's logit \
                 reach ±3.000e38; expected at most ±1e18"
            ),
            "{e}"
        );
        let e = load_message("huge-bias", "output.bias", 2, -3e38);
        assert!(
            e.contains("output.bias: value -3e38 at flat index 2 lets row 2's logit reach"),
            "{e}"
        );
        let e = load_message("huge-hh", "gru.weight_hh", 5, 1e30);
        assert!(
            e.contains(
                "gru.weight_hh: value 1e30 at flat index 5, times an input of up to 1.000e0"
            ),
            "{e}"
        );
        let e = load_message("huge-emb", "item_embedding", 6, 2e38);
        assert!(e.contains("item_embedding: column 2"), "{e}");
        let e = load_message("huge-state", "users.state", 0, 1e20);
        assert!(
            e.contains("times an input of up to 1.000e20 (the state"),
            "{e}"
        );
    }

    #[test]
    fn large_but_harmless_weights_load() {
        let dir = temp_dir("large-ok");
        write_model_with(&dir, 4, 10, 3, 1, |_, t| {
            t.get_mut("output.weight").unwrap().2[..4].copy_from_slice(&1e6f32.to_le_bytes());
        });
        assert!(load_model(&dir).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
