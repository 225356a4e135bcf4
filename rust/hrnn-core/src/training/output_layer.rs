//! The output layer's loss and gradients in one fused pass (docs/model.md, "Training objective"):
//! logits over the whole catalogue, the weighted softmax cross-entropy of each row against its
//! targets, and the gradients with respect to the rows, the item table and the bias.
//!
//! Rows are processed in blocks of [`BLOCK_ROWS`]: a block's logits (`BLOCK_ROWS × N` floats) are
//! computed, turned into their gradient in place and consumed by two matrix products while they
//! are still in cache, so the `M × N` logit matrix never exists. Threads take contiguous runs of
//! blocks, each accumulating its own item-table gradient; the runs' gradients are summed at the end.
//!
//! Row `m` has targets `t_m1 … t_mW` with weights `w_mj ≥ 0`; with `W_total = Σ w`, the loss is
//! `Σ_mj w_mj (lse_m − l_m,t_mj) / W_total`, so `∂loss/∂l_mj = (w_m· p_mj − Σ_{k: t_mk = j} w_mk)
//! / W_total` with `w_m· = Σ_k w_mk`. Items excluded from a row's softmax (its user's earlier
//! items, `loss_exclude_seen`) get `l = −∞`, hence `p = 0` and no gradient, except the row's own
//! targets of positive weight, which always stay in.

use rayon::prelude::*;

use super::gemm::{gemm, MatMut, MatRef};
use super::softmax_rows::{add_bias_and_max, exp_in_place};
use crate::engine::kernels::Isa;
use crate::error::{Error, Result};

/// Rows per block: their logits stay in the last-level cache (48 × 10k items = 1.9 MB; 32–96
/// rows measured within 20% of each other on MovieLens shapes, 48 the fastest).
pub const BLOCK_ROWS: usize = 48;

/// The output layer: `l = table · o + bias` over the catalogue.
#[derive(Clone, Copy, Debug)]
pub struct OutputLayer<'a> {
    /// `[N, H]` row-major item table (the output embedding).
    pub table: &'a [f32],
    /// `[N]` item biases.
    pub bias: &'a [f32],
    /// `H`.
    pub hidden: usize,
}

/// The targets of every row: `width` items and weights per row, row-major `[M, width]`.
#[derive(Clone, Copy, Debug)]
pub struct Targets<'a> {
    /// Item index of each target (any valid index where the weight is 0).
    pub items: &'a [i64],
    /// Weight of each target (finite, ≥ 0; 0 = no target).
    pub weights: &'a [f32],
    /// Targets per row.
    pub width: usize,
}

/// Items left out of each row's softmax: row `m` excludes `items[starts[m]..stops[m]]` (ranges
/// into one shared array, e.g. each row's user's events up to the row's input).
#[derive(Clone, Copy, Debug)]
pub struct Exclusions<'a> {
    /// The item indices the ranges point into.
    pub items: &'a [i64],
    /// First position of each row's range.
    pub starts: &'a [i64],
    /// One past the last position of each row's range.
    pub stops: &'a [i64],
}

/// The loss and its gradients.
#[derive(Clone, Debug, PartialEq)]
pub struct SoftmaxLoss {
    /// `Σ w·ℓ / Σ w` (0 when every weight is 0).
    pub loss: f64,
    /// `Σ w`.
    pub weight_sum: f64,
    /// `[M, H]`: gradient of the loss with respect to each row.
    pub grad_input: Vec<f32>,
    /// `[N, H]`: gradient with respect to the item table.
    pub grad_table: Vec<f32>,
    /// `[N]`: gradient with respect to the bias.
    pub grad_bias: Vec<f32>,
}

/// What one thread accumulates over its run of blocks: the loss and `[N, H + 1]` — the item
/// table's gradient with the bias's as an extra last column (one matrix product yields both).
struct Partial {
    loss: f64,
    grad_table_bias: Vec<f32>,
}

/// The loss of `input` (`[M, H]` row-major) against `targets` through `layer`, and its gradients.
///
/// # Errors
/// [`Error::InvalidArgument`] when shapes disagree, an index is outside the catalogue, a weight is
/// negative or not finite, or an exclusion range is outside its array.
pub fn softmax_cross_entropy(
    layer: &OutputLayer<'_>,
    input: &[f32],
    targets: &Targets<'_>,
    exclusions: Option<&Exclusions<'_>>,
) -> Result<SoftmaxLoss> {
    let (n, h, rows) = check(layer, input, targets, exclusions)?;
    let weight_sum: f64 = targets.weights.iter().map(|&w| f64::from(w)).sum();
    let mut grad_input = vec![0.0f32; rows * h];
    if weight_sum <= 0.0 || rows == 0 {
        return Ok(SoftmaxLoss {
            loss: 0.0,
            weight_sum,
            grad_input,
            grad_table: vec![0.0; n * h],
            grad_bias: vec![0.0; n],
        });
    }
    let isa = Isa::detect();
    let inv_total = (1.0 / weight_sum) as f32;
    let blocks = rows.div_ceil(BLOCK_ROWS);
    let parts = rayon::current_num_threads().clamp(1, blocks);
    let rows_per_part = blocks.div_ceil(parts) * BLOCK_ROWS;
    let partials: Vec<Partial> = grad_input
        .par_chunks_mut(rows_per_part * h)
        .enumerate()
        .map(|(part, grad_rows)| {
            let first = part * rows_per_part;
            let count = grad_rows.len() / h;
            let mut partial = Partial {
                loss: 0.0,
                grad_table_bias: vec![0.0; n * (h + 1)],
            };
            let mut scratch = Scratch {
                logits: vec![0.0; BLOCK_ROWS.min(count) * n],
                scaled: vec![0.0; BLOCK_ROWS.min(count) * (h + 1)],
                kept: Vec::with_capacity(targets.width),
            };
            for begin in (0..count).step_by(BLOCK_ROWS) {
                let end = (begin + BLOCK_ROWS).min(count);
                let block = Block {
                    first: first + begin,
                    rows: end - begin,
                };
                partial.loss += block.run(
                    isa,
                    layer,
                    input,
                    targets,
                    exclusions,
                    inv_total,
                    &mut scratch,
                    &mut grad_rows[begin * h..end * h],
                    &mut partial.grad_table_bias,
                );
            }
            partial
        })
        .collect();
    let mut partials = partials.into_iter();
    let mut total = partials.next().expect("at least one part");
    for p in partials {
        total.loss += p.loss;
        for (a, b) in total.grad_table_bias.iter_mut().zip(&p.grad_table_bias) {
            *a += b;
        }
    }
    let mut grad_table = Vec::with_capacity(n * h);
    let mut grad_bias = Vec::with_capacity(n);
    for row in total.grad_table_bias.chunks_exact(h + 1) {
        grad_table.extend_from_slice(&row[..h]);
        grad_bias.push(row[h]);
    }
    Ok(SoftmaxLoss {
        loss: total.loss / weight_sum,
        weight_sum,
        grad_input,
        grad_table,
        grad_bias,
    })
}

/// Rows `first .. first + rows` of the input.
struct Block {
    first: usize,
    rows: usize,
}

/// A thread's buffers, reused from block to block.
struct Scratch {
    /// `[rows, N]`: logits, then their exponentials.
    logits: Vec<f32>,
    /// `[rows, H + 1]`: each row's `o` and 1, times its softmax scale.
    scaled: Vec<f32>,
    /// (item, weight, logit) of the current row's targets of positive weight.
    kept: Vec<(usize, f32, f32)>,
}

impl Block {
    /// Loss (unnormalised, `Σ w·ℓ`) and gradients of the block: its rows' gradients go to
    /// `grad_rows`, the table's and the bias's are added to `grad_table_bias` (`[N, H + 1]`).
    ///
    /// With `e_m` the row's exponentials `e^(l − max)` (0 where excluded), `s_m` their sum and
    /// `c_m = w_m· / (s_m · W_total)`, the logit gradient is `G = diag(c) E − T` where `T` holds the
    /// targets' `w / W_total`. So `∂o = diag(c) (E · table) − T · table` and
    /// `[∂table | ∂bias] += Eᵀ · [diag(c) o | c] − Tᵀ · [o | 1]`: the exponentials are never scaled
    /// in place, and the bias gradient comes out of the same product as the table's.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        isa: Isa,
        layer: &OutputLayer<'_>,
        input: &[f32],
        targets: &Targets<'_>,
        exclusions: Option<&Exclusions<'_>>,
        inv_total: f32,
        scratch: &mut Scratch,
        grad_rows: &mut [f32],
        grad_table_bias: &mut [f32],
    ) -> f64 {
        let (n, h, r) = (layer.bias.len(), layer.hidden, self.rows);
        let input = &input[self.first * h..(self.first + r) * h];
        let o = MatRef::row_major(input, r, h);
        let table = MatRef::row_major(layer.table, n, h);
        let logits = &mut scratch.logits[..r * n];
        let scaled = &mut scratch.scaled[..r * (h + 1)];
        gemm(1.0, o, table.t(), 0.0, MatMut::row_major(logits, r, n));
        let width = targets.width;
        let mut loss = 0.0f64;
        for (i, row) in logits.chunks_exact_mut(n).enumerate() {
            let m = self.first + i;
            let weights = &targets.weights[m * width..(m + 1) * width];
            let items = &targets.items[m * width..(m + 1) * width];
            let max = add_bias_and_max(isa, row, layer.bias);
            let kept = &mut scratch.kept;
            kept.clear();
            kept.extend(
                items
                    .iter()
                    .zip(weights)
                    .filter(|(_, &w)| w > 0.0)
                    .map(|(&t, &w)| (t as usize, w, row[t as usize])),
            );
            let scale_row = &mut scaled[i * (h + 1)..(i + 1) * (h + 1)];
            if kept.is_empty() {
                row.fill(0.0);
                scale_row.fill(0.0);
                continue;
            }
            if let Some(ex) = exclusions {
                for &j in &ex.items[ex.starts[m] as usize..ex.stops[m] as usize] {
                    row[j as usize] = f32::NEG_INFINITY;
                }
                for &(t, _, l) in kept.iter() {
                    row[t] = l;
                }
            }
            // `max` may be an excluded item's logit: any shift ≥ the kept maximum is as stable
            let sum = exp_in_place(isa, row, max);
            let lse = f64::from(max) + sum.ln();
            let row_weight: f32 = kept.iter().map(|k| k.1).sum();
            for &(_, w, l) in kept.iter() {
                loss += f64::from(w) * (lse - f64::from(l));
            }
            let c = (f64::from(row_weight) / sum) as f32 * inv_total;
            for (x, &v) in scale_row[..h].iter_mut().zip(&input[i * h..(i + 1) * h]) {
                *x = c * v;
            }
            scale_row[h] = c;
        }
        let e = MatRef::row_major(logits, r, n);
        // ∂o = diag(c) (E · table) − Σ targets w/W_total · table[t]
        gemm(1.0, e, table, 0.0, MatMut::row_major(grad_rows, r, h));
        // [∂table | ∂bias] += Eᵀ · [diag(c) o | c]
        gemm(
            1.0,
            e.t(),
            MatRef::row_major(scaled, r, h + 1),
            1.0,
            MatMut::row_major(grad_table_bias, n, h + 1),
        );
        for i in 0..r {
            let m = self.first + i;
            let c = scaled[i * (h + 1) + h];
            let grad = &mut grad_rows[i * h..(i + 1) * h];
            for g in grad.iter_mut() {
                *g *= c;
            }
            let o_i = &input[i * h..(i + 1) * h];
            for (&t, &w) in targets.items[m * width..(m + 1) * width]
                .iter()
                .zip(&targets.weights[m * width..(m + 1) * width])
            {
                if w <= 0.0 {
                    continue;
                }
                let (t, w) = (t as usize, w * inv_total);
                for (g, &tv) in grad.iter_mut().zip(&layer.table[t * h..(t + 1) * h]) {
                    *g -= w * tv;
                }
                let acc = &mut grad_table_bias[t * (h + 1)..(t + 1) * (h + 1)];
                for (a, &ov) in acc[..h].iter_mut().zip(o_i) {
                    *a -= w * ov;
                }
                acc[h] -= w;
            }
        }
        loss
    }
}

/// Checks shapes, indices and weights; returns `(N, H, M)`.
fn check(
    layer: &OutputLayer<'_>,
    input: &[f32],
    targets: &Targets<'_>,
    exclusions: Option<&Exclusions<'_>>,
) -> Result<(usize, usize, usize)> {
    let (n, h) = (layer.bias.len(), layer.hidden);
    if h == 0 || n == 0 || layer.table.len() != n * h {
        return Err(Error::invalid_argument(
            "table",
            format!(
                "expected [{n}, {h}] with N ≥ 1 and H ≥ 1 (bias has {n} items), found {} values",
                layer.table.len()
            ),
        ));
    }
    if !input.len().is_multiple_of(h) {
        return Err(Error::invalid_argument(
            "input",
            format!("expected [M, {h}], found {} values", input.len()),
        ));
    }
    let rows = input.len() / h;
    let width = targets.width;
    if width == 0 || targets.items.len() != rows * width || targets.weights.len() != rows * width {
        return Err(Error::invalid_argument(
            "targets",
            format!(
                "expected items and weights of [{rows}, W ≥ 1], found {} items and {} weights for W = {width}",
                targets.items.len(),
                targets.weights.len()
            ),
        ));
    }
    if let Some(j) = targets.items.iter().position(|&t| t < 0 || t as usize >= n) {
        return Err(Error::invalid_argument(
            "target_items",
            format!(
                "expected item indices in [0, {n}), found {} at row {}",
                targets.items[j],
                j / width
            ),
        ));
    }
    if let Some(j) = targets
        .weights
        .iter()
        .position(|w| !(w.is_finite() && *w >= 0.0))
    {
        return Err(Error::invalid_argument(
            "target_weights",
            format!(
                "expected finite weights ≥ 0, found {} at row {}",
                targets.weights[j],
                j / width
            ),
        ));
    }
    if let Some(ex) = exclusions {
        if ex.starts.len() != rows || ex.stops.len() != rows {
            return Err(Error::invalid_argument(
                "exclusions",
                format!(
                    "expected {rows} starts and stops, found {} and {}",
                    ex.starts.len(),
                    ex.stops.len()
                ),
            ));
        }
        for (m, (&a, &b)) in ex.starts.iter().zip(ex.stops).enumerate() {
            if a < 0 || a > b || b as usize > ex.items.len() {
                return Err(Error::invalid_argument(
                    "exclusions",
                    format!(
                        "expected 0 ≤ start ≤ stop ≤ {}, found [{a}, {b}) at row {m}",
                        ex.items.len()
                    ),
                ));
            }
        }
        if let Some(&j) = ex.items.iter().find(|&&j| j < 0 || j as usize >= n) {
            return Err(Error::invalid_argument(
                "exclusion_items",
                format!("expected item indices in [0, {n}), found {j}"),
            ));
        }
    }
    Ok((n, h, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain f64 reference of the loss and gradients.
    fn reference(
        layer: &OutputLayer<'_>,
        input: &[f32],
        targets: &Targets<'_>,
        exclusions: Option<&Exclusions<'_>>,
    ) -> (f64, Vec<f64>, Vec<f64>, Vec<f64>) {
        let (n, h) = (layer.bias.len(), layer.hidden);
        let rows = input.len() / h;
        let total: f64 = targets.weights.iter().map(|&w| f64::from(w)).sum();
        let (mut loss, mut gi, mut gt, mut gb) =
            (0.0, vec![0.0; rows * h], vec![0.0; n * h], vec![0.0; n]);
        for m in 0..rows {
            let mut l: Vec<f64> = (0..n)
                .map(|j| {
                    f64::from(layer.bias[j])
                        + (0..h)
                            .map(|k| {
                                f64::from(input[m * h + k]) * f64::from(layer.table[j * h + k])
                            })
                            .sum::<f64>()
                })
                .collect();
            let w = &targets.weights[m * targets.width..(m + 1) * targets.width];
            let t = &targets.items[m * targets.width..(m + 1) * targets.width];
            if let Some(ex) = exclusions {
                for &j in &ex.items[ex.starts[m] as usize..ex.stops[m] as usize] {
                    if !t.iter().zip(w).any(|(&tt, &ww)| tt == j && ww > 0.0) {
                        l[j as usize] = f64::NEG_INFINITY;
                    }
                }
            }
            let max = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = l.iter().map(|x| (x - max).exp()).sum();
            let lse = max + sum.ln();
            let row_w: f64 = w.iter().map(|&x| f64::from(x)).sum();
            let mut grad: Vec<f64> = l.iter().map(|x| row_w * (x - lse).exp() / total).collect();
            for (&tt, &ww) in t.iter().zip(w).filter(|(_, &ww)| ww > 0.0) {
                loss += f64::from(ww) * (lse - l[tt as usize]) / total;
                grad[tt as usize] -= f64::from(ww) / total;
            }
            for j in 0..n {
                gb[j] += grad[j];
                for k in 0..h {
                    gi[m * h + k] += grad[j] * f64::from(layer.table[j * h + k]);
                    gt[j * h + k] += grad[j] * f64::from(input[m * h + k]);
                }
            }
        }
        (loss, gi, gt, gb)
    }

    fn close(got: &[f32], want: &[f64], tol: f64) {
        let scale = want.iter().fold(0.0f64, |a, &b| a.max(b.abs())).max(1e-12);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() <= tol * scale,
                "element {i}: {g} vs {w} (scale {scale})"
            );
        }
    }

    fn data(rows: usize, n: usize, h: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let table = (0..n * h)
            .map(|i| ((i * 7919 % 997) as f32 / 997.0 - 0.5) * 0.8)
            .collect();
        let bias = (0..n).map(|j| ((j * 31 % 17) as f32 - 8.0) * 0.1).collect();
        let input = (0..rows * h)
            .map(|i| ((i * 104_729 % 1009) as f32 / 1009.0 - 0.5) * 2.0)
            .collect();
        (table, bias, input)
    }

    #[test]
    fn fused_loss_and_gradients_match_the_reference() {
        // 150 rows: two full blocks and a partial one; 2 targets per row, some weights 0.
        let (rows, n, h, width) = (150, 37, 5, 2);
        let (table, bias, input) = data(rows, n, h);
        let layer = OutputLayer {
            table: &table,
            bias: &bias,
            hidden: h,
        };
        let items: Vec<i64> = (0..rows * width).map(|i| ((i * 13) % n) as i64).collect();
        let weights: Vec<f32> = (0..rows * width)
            .map(|i| {
                if i % 7 == 3 {
                    0.0
                } else {
                    0.5 + (i % 5) as f32 * 0.25
                }
            })
            .collect();
        let targets = Targets {
            items: &items,
            weights: &weights,
            width,
        };
        // every row excludes a window of 6 items of a shared list, which holds some targets
        let ex_items: Vec<i64> = (0..rows + 6).map(|i| ((i * 5) % n) as i64).collect();
        let starts: Vec<i64> = (0..rows as i64).collect();
        let stops: Vec<i64> = (6..rows as i64 + 6).collect();
        let ex = Exclusions {
            items: &ex_items,
            starts: &starts,
            stops: &stops,
        };
        for exclusions in [None, Some(&ex)] {
            let got = softmax_cross_entropy(&layer, &input, &targets, exclusions).unwrap();
            let (loss, gi, gt, gb) = reference(&layer, &input, &targets, exclusions);
            assert!(
                (got.loss - loss).abs() < 1e-5 * loss,
                "{} vs {loss}",
                got.loss
            );
            close(&got.grad_input, &gi, 1e-5);
            close(&got.grad_table, &gt, 1e-5);
            close(&got.grad_bias, &gb, 1e-5);
        }
    }

    #[test]
    fn rows_without_weight_contribute_nothing() {
        let (table, bias, input) = data(3, 9, 4);
        let layer = OutputLayer {
            table: &table,
            bias: &bias,
            hidden: 4,
        };
        let items = [1i64, 2, 3];
        let got = softmax_cross_entropy(
            &layer,
            &input,
            &Targets {
                items: &items,
                weights: &[0.0, 1.0, 0.0],
                width: 1,
            },
            None,
        )
        .unwrap();
        assert!(got.grad_input[..4]
            .iter()
            .chain(&got.grad_input[8..])
            .all(|&g| g == 0.0));
        let none = softmax_cross_entropy(
            &layer,
            &input,
            &Targets {
                items: &items,
                weights: &[0.0; 3],
                width: 1,
            },
            None,
        )
        .unwrap();
        assert_eq!((none.loss, none.weight_sum), (0.0, 0.0));
        assert!(none.grad_table.iter().all(|&g| g == 0.0));
    }

    #[test]
    fn bad_shapes_and_indices_are_named() {
        let (table, bias, input) = data(2, 6, 3);
        let layer = OutputLayer {
            table: &table,
            bias: &bias,
            hidden: 3,
        };
        let err = |items: &[i64], weights: &[f32]| {
            softmax_cross_entropy(
                &layer,
                &input,
                &Targets {
                    items,
                    weights,
                    width: 1,
                },
                None,
            )
            .unwrap_err()
            .to_string()
        };
        assert!(err(&[0, 6], &[1.0, 1.0])
            .contains("target_items: expected item indices in [0, 6), found 6 at row 1"));
        assert!(err(&[0, 1], &[1.0, -1.0]).contains("target_weights"));
        assert!(err(&[0], &[1.0]).contains("targets"));
        let ex = Exclusions {
            items: &[0, 1],
            starts: &[0, 1],
            stops: &[2, 3],
        };
        let msg = softmax_cross_entropy(
            &layer,
            &input,
            &Targets {
                items: &[0, 1],
                weights: &[1.0, 1.0],
                width: 1,
            },
            Some(&ex),
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("found [1, 3) at row 1"), "{msg}");
    }
}
