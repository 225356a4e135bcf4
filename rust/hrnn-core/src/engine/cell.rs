//! One step of the gated recurrent cell, and the readout gate (docs/model.md, implemented exactly).
//!
//! A step costs `O(H²)` (about `7H²` multiply-adds): the discount gate, `W_ih u`, and `W_hh h̃`;
//! a cell of `M` independent blocks (an ensemble, [`super::blocks`]) steps each block alone, `7H²/M`.

use super::blocks::CellBlock;
use super::kernels::{gemv, Isa, Unfused};
use super::model::CellWeights;

/// The time features `τ = [ln(1 + max(Δ, 0) / 60); s]` of a gap of `gap_seconds`.
pub fn time_features(gap_seconds: f64, session_start: bool) -> [f32; 2] {
    let c = (gap_seconds.max(0.0) / 60.0).ln_1p();
    [c as f32, if session_start { 1.0 } else { 0.0 }]
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Applies one event to `hidden` in place: item `item`, event type `event_type` (`None` for a type
/// unknown to the model, which contributes a zero vector), time features `tau`.
pub fn step(
    w: &CellWeights,
    isa: Isa,
    hidden: &mut [f32],
    item: u32,
    event_type: Option<u32>,
    tau: [f32; 2],
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2Fma` is only chosen after `is_x86_feature_detected!` confirmed both.
        Isa::Avx2Fma => unsafe { step_avx2(w, hidden, item, event_type, tau) },
        _ => step_generic(w, hidden, item, event_type, tau, gemv::<Unfused>),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn step_avx2(
    w: &CellWeights,
    hidden: &mut [f32],
    item: u32,
    event_type: Option<u32>,
    tau: [f32; 2],
) {
    // The closure inherits this function's target features, so the AVX2 gemv inlines into it.
    let gemv =
        |w: &[f32], b: &[f32], v: &[f32], out: &mut [f32]| super::kernels_x86::gemv(w, b, v, out);
    step_generic(w, hidden, item, event_type, tau, gemv)
}

#[inline(always)]
fn step_generic(
    w: &CellWeights,
    hidden: &mut [f32],
    item: u32,
    event_type: Option<u32>,
    tau: [f32; 2],
    gemv: impl Fn(&[f32], &[f32], &[f32], &mut [f32]),
) {
    let h = w.hidden;
    // x = E[i] + K[k]
    let item = item as usize;
    let mut x = w.item_embedding[item * h..(item + 1) * h].to_vec();
    if let Some(k) = event_type {
        let k = k as usize;
        for (x, e) in x
            .iter_mut()
            .zip(&w.event_type_embedding[k * h..(k + 1) * h])
        {
            *x += e;
        }
    }
    // Independent blocks (an ensemble's members; the whole cell otherwise): each reads and writes
    // only its own slice.
    let mut begin = 0;
    for block in &w.blocks {
        let own = begin..begin + block.width;
        step_block(block, &mut hidden[own.clone()], &x[own], tau, &gemv);
        begin += block.width;
    }
}

/// The step of docs/model.md on block `m`'s slice of the state, with its slice `x` of the input
/// embedding.
#[inline(always)]
fn step_block(
    m: &CellBlock,
    hidden: &mut [f32],
    x: &[f32],
    tau: [f32; 2],
    gemv: &impl Fn(&[f32], &[f32], &[f32], &mut [f32]),
) {
    let h = m.width;
    // u = [x; c; s]
    let mut u = Vec::with_capacity(h + 2);
    u.extend_from_slice(x);
    u.extend_from_slice(&tau);

    // d = σ(W_d u + b_d);  h̃ = d ⊙ h
    let mut discounted = vec![0.0f32; h];
    gemv(&m.discount_weight, &m.discount_bias, &u, &mut discounted);
    for (d, &old) in discounted.iter_mut().zip(hidden.iter()) {
        *d = sigmoid(*d) * old;
    }

    // a = W_ih u + b_ih;  g = W_hh h̃ + b_hh  (gate order r, z, n)
    let mut a = vec![0.0f32; 3 * h];
    let mut g = vec![0.0f32; 3 * h];
    gemv(&m.weight_ih, &m.bias_ih, &u, &mut a);
    gemv(&m.weight_hh, &m.bias_hh, &discounted, &mut g);
    for i in 0..h {
        let r = sigmoid(a[i] + g[i]);
        let z = sigmoid(a[h + i] + g[h + i]);
        let n = (a[2 * h + i] + r * g[2 * h + i]).tanh();
        hidden[i] = (1.0 - z) * n + z * discounted[i];
    }
}

/// The readout `o = σ(W_q τ_q + b_q) ⊙ h`, written as the query `[o; 1]` of length `H + 1` (the
/// trailing 1 multiplies the output bias folded into the item table).
pub fn readout(w: &CellWeights, hidden: &[f32], tau: [f32; 2], query: &mut Vec<f32>) {
    let h = w.hidden;
    query.clear();
    query.extend((0..h).map(|i| {
        let pre = w.readout_bias[i]
            + w.readout_weight[2 * i] * tau[0]
            + w.readout_weight[2 * i + 1] * tau[1];
        sigmoid(pre) * hidden[i]
    }));
    query.push(1.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A direct, unoptimized transcription of docs/model.md in f64, on a cell loaded whole (one
    /// block: the docs/format.md matrices).
    fn reference_step(
        w: &CellWeights,
        h0: &[f32],
        item: usize,
        k: Option<usize>,
        tau: [f32; 2],
    ) -> Vec<f64> {
        let hd = w.hidden;
        assert_eq!(
            w.blocks.len(),
            1,
            "the reference reads the whole cell's matrices"
        );
        let m = &w.blocks[0];
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let mut u: Vec<f64> = (0..hd)
            .map(|j| {
                f64::from(w.item_embedding[item * hd + j])
                    + k.map_or(0.0, |k| f64::from(w.event_type_embedding[k * hd + j]))
            })
            .collect();
        u.push(f64::from(tau[0]));
        u.push(f64::from(tau[1]));
        let mv = |m: &[f32], b: &[f32], v: &[f64], rows: usize| -> Vec<f64> {
            (0..rows)
                .map(|r| {
                    f64::from(b[r])
                        + (0..v.len())
                            .map(|c| f64::from(m[r * v.len() + c]) * v[c])
                            .sum::<f64>()
                })
                .collect()
        };
        let d = mv(&m.discount_weight, &m.discount_bias, &u, hd);
        let ht: Vec<f64> = (0..hd).map(|j| sig(d[j]) * f64::from(h0[j])).collect();
        let a = mv(&m.weight_ih, &m.bias_ih, &u, 3 * hd);
        let g = mv(&m.weight_hh, &m.bias_hh, &ht, 3 * hd);
        (0..hd)
            .map(|j| {
                let r = sig(a[j] + g[j]);
                let z = sig(a[hd + j] + g[hd + j]);
                let n = (a[2 * hd + j] + r * g[2 * hd + j]).tanh();
                (1.0 - z) * n + z * ht[j]
            })
            .collect()
    }

    #[test]
    fn step_matches_the_equations_for_every_isa() {
        let dir = crate::engine::test_fixtures::temp_dir("cell");
        crate::engine::test_fixtures::write_model(&dir, 11, 20, 2, 5);
        let model = crate::engine::model_dir::load_model(&dir).unwrap();
        let h0: Vec<f32> = (0..11).map(|i| (i as f32 * 0.37).sin()).collect();
        for isa in [Isa::Portable, Isa::detect()] {
            for (item, k, gap, s) in [
                (3usize, Some(1u32), 0.0, true),
                (19, None, 4000.0, true),
                (0, Some(0), 90.0, false),
            ] {
                let mut h = h0.clone();
                let tau = time_features(gap, s);
                step(&model.cell, isa, &mut h, item as u32, k, tau);
                let want = reference_step(&model.cell, &h0, item, k.map(|k| k as usize), tau);
                for (got, want) in h.iter().zip(&want) {
                    assert!(
                        (f64::from(*got) - want).abs() < 1e-5 * (1.0 + want.abs()),
                        "{got} vs {want}"
                    );
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_block_diagonal_cell_steps_block_by_block_as_the_dense_cell_does() {
        let dir = crate::engine::test_fixtures::temp_dir("cell-blocks");
        crate::engine::test_fixtures::write_model(&dir, 12, 20, 2, 5);
        let mut dense = crate::engine::model_dir::load_model(&dir).unwrap().cell;
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(dense.blocks.len(), 1, "a random cell is dense");
        // Zero every weight between the three blocks of 4, as an ensemble's export has them.
        let h = 12;
        let cut = |m: &mut Vec<f32>, stride: usize| {
            for (i, x) in m.iter_mut().enumerate() {
                let (r, c) = (i / stride, i % stride);
                if c < h && (r % h) / 4 != c / 4 {
                    *x = 0.0;
                }
            }
        };
        let whole_cell = &mut dense.blocks[0];
        cut(&mut whole_cell.discount_weight, h + 2);
        cut(&mut whole_cell.weight_ih, h + 2);
        cut(&mut whole_cell.weight_hh, h);
        let mut cell = dense.clone();
        cell.blocks = crate::engine::blocks::split(dense.blocks[0].clone());
        assert_eq!(cell.blocks.len(), 3);
        let h0: Vec<f32> = (0..h).map(|i| (i as f32 * 0.61).cos()).collect();
        for isa in [Isa::Portable, Isa::detect()] {
            let tau = time_features(700.0, false);
            let (mut by_block, mut whole) = (h0.clone(), h0.clone());
            step(&cell, isa, &mut by_block, 7, Some(1), tau);
            step(&dense, isa, &mut whole, 7, Some(1), tau);
            let want = reference_step(&dense, &h0, 7, Some(1), tau);
            for ((a, b), want) in by_block.iter().zip(&whole).zip(&want) {
                assert!((a - b).abs() < 1e-6, "{a} vs {b}");
                assert!((f64::from(*a) - want).abs() < 1e-5 * (1.0 + want.abs()));
            }
        }
    }

    #[test]
    fn time_features_follow_the_definition() {
        assert_eq!(time_features(0.0, true), [0.0, 1.0]);
        assert_eq!(time_features(-50.0, false), [0.0, 0.0]);
        let [c, s] = time_features(120.0, false);
        assert!((c - 3.0f32.ln()).abs() < 1e-6 && s == 0.0);
    }
}
