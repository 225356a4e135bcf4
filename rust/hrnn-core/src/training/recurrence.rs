//! Truncated back-propagation through time of the discounted GRU cell (docs/model.md, "The gated
//! recurrent cell"), forward and backward over a window of `T` steps of `B` slots.
//!
//! Everything that depends only on the inputs `u_t` — the discount `d_t = σ(W_d u_t + b_d)` and
//! the input gates `a_t = W_ih u_t + b_ih` — is computed by the caller for all steps at once (one
//! matrix product in torch, whose autograd also takes their gradients). What is left is the
//! sequential part, per step `t` and slot `b`:
//!
//! ```text
//! h̃ = keep_t · d_t ⊙ h_{t−1}              (keep = 0 where a new user starts: the state is zeroed)
//! g = W_hh h̃ + b_hh                        (gate order r, z, n)
//! r = σ(a_r + g_r),  z = σ(a_z + g_z),  n = tanh(a_n + r ⊙ g_n)
//! h_t = n + z ⊙ (h̃ − n)
//! ```
//!
//! Arrays are time-major and row-major: `[T, B, X]`. Slots are independent, so contiguous runs of
//! slots are processed on separate threads; each step's `W_hh` product over a run of slots is one
//! matrix product.

use std::ops::Range;

use rayon::prelude::*;

use super::activations::{sigmoid_in_place, tanh_in_place};
use super::gemm::{gemm, MatMut, MatRef};
use crate::engine::kernels::Isa;
use crate::error::{Error, Result};

/// Intermediate planes saved by the forward pass for the backward pass, in this order, each
/// `[T, B, H]`: `h̃`, `r`, `z`, `n`, `g_n`.
pub const SAVED_PLANES: usize = 5;

/// The recurrent weights `W_hh` (`[3H, H]`, row-major, gate order r, z, n) and `b_hh` (`[3H]`).
#[derive(Clone, Copy, Debug)]
pub struct RecurrentWeights<'a> {
    /// `W_hh`.
    pub weight: &'a [f32],
    /// `b_hh`.
    pub bias: &'a [f32],
    /// `H`.
    pub hidden: usize,
}

/// The per-step inputs of a window that both passes read (the forward pass also takes the input
/// gates `a_t`).
#[derive(Clone, Copy, Debug)]
pub struct Window<'a> {
    /// `[T, B, H]`: `d_t`.
    pub discount: &'a [f32],
    /// `[T, B]`: false where the slot starts a new user at this step.
    pub keep: &'a [bool],
    /// `[B, H]`: the state before the first step.
    pub initial: &'a [f32],
    /// `T`.
    pub steps: usize,
    /// `B`.
    pub slots: usize,
}

/// What the forward pass returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Forward {
    /// `[T, B, H]`: the state after every step.
    pub states: Vec<f32>,
    /// `[SAVED_PLANES, T, B, H]` when asked for (empty otherwise).
    pub saved: Vec<f32>,
}

/// The gradients of the backward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Backward {
    /// `[T, B, 3H]`: with respect to `a_t`.
    pub grad_input_gates: Vec<f32>,
    /// `[T, B, H]`: with respect to `d_t`.
    pub grad_discount: Vec<f32>,
    /// `[3H, H]`: with respect to `W_hh`.
    pub grad_weight: Vec<f32>,
    /// `[3H]`: with respect to `b_hh`.
    pub grad_bias: Vec<f32>,
}

/// Runs the window forward from the input gates `input_gates` (`[T, B, 3H]`, `a_t = W_ih u_t +
/// b_ih`); with `save`, also returns what [`backward`] needs.
///
/// # Errors
/// [`Error::InvalidArgument`] when the arrays' lengths do not match `T`, `B` and `H`.
pub fn forward(
    weights: &RecurrentWeights<'_>,
    window: &Window<'_>,
    input_gates: &[f32],
    save: bool,
) -> Result<Forward> {
    check(weights, window)?;
    let (t_len, b_len, h) = (window.steps, window.slots, weights.hidden);
    if input_gates.len() != t_len * b_len * 3 * h {
        return Err(Error::invalid_argument(
            "input_gates",
            format!(
                "expected {} values for T = {t_len}, B = {b_len}, H = {h}, found {}",
                t_len * b_len * 3 * h,
                input_gates.len()
            ),
        ));
    }
    let plane = t_len * b_len * h;
    let mut states = vec![0.0f32; plane];
    let mut saved = vec![0.0f32; if save { SAVED_PLANES * plane } else { 0 }];
    let runs = slot_runs(b_len);
    let mut state_parts = split_slots(&mut states, t_len, b_len, h, &runs);
    let mut saved_parts: Vec<Vec<Vec<&mut [f32]>>> = runs.iter().map(|_| Vec::new()).collect();
    if save {
        for plane_data in saved.chunks_mut(plane) {
            for (part, slices) in split_slots(plane_data, t_len, b_len, h, &runs)
                .into_iter()
                .enumerate()
            {
                saved_parts[part].push(slices);
            }
        }
    }
    runs.par_iter()
        .zip(state_parts.par_iter_mut())
        .zip(saved_parts.par_iter_mut())
        .for_each(|((run, out), keep_planes)| {
            forward_run(weights, window, input_gates, run.clone(), out, keep_planes);
        });
    drop(state_parts);
    drop(saved_parts);
    Ok(Forward { states, saved })
}

/// The forward pass of the slots `run`: `out[t]` is the run's rows of `states[t]`; `saved[p][t]`
/// those of saved plane `p` (no planes: nothing saved).
fn forward_run(
    weights: &RecurrentWeights<'_>,
    window: &Window<'_>,
    input_gates: &[f32],
    run: Range<usize>,
    out: &mut [&mut [f32]],
    saved: &mut [Vec<&mut [f32]>],
) {
    let (b_len, h) = (window.slots, weights.hidden);
    let rows = run.len();
    let w_hh = MatRef::row_major(weights.weight, 3 * h, h);
    let mut prev: Vec<f32> = window.initial[run.start * h..run.end * h].to_vec();
    let mut discounted = vec![0.0f32; rows * h];
    let mut gates = vec![0.0f32; rows * 3 * h];
    let isa = Isa::detect();
    let (mut reset_gate, mut update_gate) = (vec![0.0f32; rows * h], vec![0.0f32; rows * h]);
    let (mut candidate, mut recurrent_n) = (vec![0.0f32; rows * h], vec![0.0f32; rows * h]);
    for t in 0..window.steps {
        let keep = &window.keep[t * b_len + run.start..t * b_len + run.end];
        let d = &window.discount[(t * b_len + run.start) * h..(t * b_len + run.end) * h];
        for (i, &k) in keep.iter().enumerate() {
            let row = i * h..(i + 1) * h;
            for ((x, &dv), &p) in discounted[row.clone()]
                .iter_mut()
                .zip(&d[row.clone()])
                .zip(&prev[row.clone()])
            {
                *x = if k { dv * p } else { 0.0 };
            }
        }
        for g in gates.chunks_exact_mut(3 * h) {
            g.copy_from_slice(weights.bias);
        }
        gemm(
            1.0,
            MatRef::row_major(&discounted, rows, h),
            w_hh.t(),
            1.0,
            MatMut::row_major(&mut gates, rows, 3 * h),
        );
        let a = &input_gates[(t * b_len + run.start) * 3 * h..(t * b_len + run.end) * 3 * h];
        // r, z = σ(a_rz + g_rz);  n = tanh(a_n + r ⊙ g_n), each over all rows at once
        for i in 0..rows {
            let (ai, gi) = (
                &a[i * 3 * h..(i + 1) * 3 * h],
                &gates[i * 3 * h..(i + 1) * 3 * h],
            );
            for k in 0..h {
                reset_gate[i * h + k] = ai[k] + gi[k];
                update_gate[i * h + k] = ai[h + k] + gi[h + k];
                recurrent_n[i * h + k] = gi[2 * h + k];
            }
        }
        sigmoid_in_place(isa, &mut reset_gate);
        sigmoid_in_place(isa, &mut update_gate);
        for i in 0..rows {
            let an = &a[i * 3 * h + 2 * h..(i + 1) * 3 * h];
            for k in 0..h {
                candidate[i * h + k] = an[k] + reset_gate[i * h + k] * recurrent_n[i * h + k];
            }
        }
        tanh_in_place(isa, &mut candidate);
        let state = &mut out[t];
        for (((s, &n), &z), &ht) in state
            .iter_mut()
            .zip(&candidate)
            .zip(&update_gate)
            .zip(&discounted)
        {
            *s = n + z * (ht - n);
        }
        if !saved.is_empty() {
            for (plane, values) in [
                &discounted,
                &reset_gate,
                &update_gate,
                &candidate,
                &recurrent_n,
            ]
            .into_iter()
            .enumerate()
            {
                saved[plane][t].copy_from_slice(values);
            }
        }
        prev.copy_from_slice(state);
    }
}

/// Back-propagates `grad_states` (`[T, B, H]`, the loss's gradient with respect to every step's
/// state) through the window. The gradient with respect to `initial` is not returned: training
/// detaches the state carried between windows.
///
/// # Errors
/// [`Error::InvalidArgument`] when the arrays' lengths do not match.
pub fn backward(
    weights: &RecurrentWeights<'_>,
    window: &Window<'_>,
    states: &[f32],
    saved: &[f32],
    grad_states: &[f32],
) -> Result<Backward> {
    check(weights, window)?;
    let (t_len, b_len, h) = (window.steps, window.slots, weights.hidden);
    let plane = t_len * b_len * h;
    for (name, len, want) in [
        ("states", states.len(), plane),
        ("saved", saved.len(), SAVED_PLANES * plane),
        ("grad_states", grad_states.len(), plane),
    ] {
        if len != want {
            return Err(Error::invalid_argument(
                name,
                format!(
                    "expected {want} values for T = {t_len}, B = {b_len}, H = {h}, found {len}"
                ),
            ));
        }
    }
    let mut grad_input_gates = vec![0.0f32; 3 * plane];
    let mut grad_discount = vec![0.0f32; plane];
    let runs = slot_runs(b_len);
    let mut gate_parts = split_slots(&mut grad_input_gates, t_len, b_len, 3 * h, &runs);
    let mut discount_parts = split_slots(&mut grad_discount, t_len, b_len, h, &runs);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = runs
        .par_iter()
        .zip(gate_parts.par_iter_mut())
        .zip(discount_parts.par_iter_mut())
        .map(|((run, gates), discount)| {
            backward_run(
                weights,
                window,
                states,
                saved,
                grad_states,
                run.clone(),
                gates,
                discount,
            )
        })
        .collect();
    drop(gate_parts);
    drop(discount_parts);
    let mut partials = partials.into_iter();
    let (mut grad_weight, mut grad_bias) = partials
        .next()
        .unwrap_or_else(|| (vec![0.0; 3 * h * h], vec![0.0; 3 * h]));
    for (w, b) in partials {
        for (a, x) in grad_weight.iter_mut().zip(&w) {
            *a += x;
        }
        for (a, x) in grad_bias.iter_mut().zip(&b) {
            *a += x;
        }
    }
    Ok(Backward {
        grad_input_gates,
        grad_discount,
        grad_weight,
        grad_bias,
    })
}

/// The backward pass of the slots `run`; returns its share of `∂W_hh` and `∂b_hh`.
#[allow(clippy::too_many_arguments)]
fn backward_run(
    weights: &RecurrentWeights<'_>,
    window: &Window<'_>,
    states: &[f32],
    saved: &[f32],
    grad_states: &[f32],
    run: Range<usize>,
    grad_gates: &mut [&mut [f32]],
    grad_discount: &mut [&mut [f32]],
) -> (Vec<f32>, Vec<f32>) {
    let (t_len, b_len, h) = (window.steps, window.slots, weights.hidden);
    let rows = run.len();
    let plane = t_len * b_len * h;
    let w_hh = MatRef::row_major(weights.weight, 3 * h, h);
    let mut grad_weight = vec![0.0f32; 3 * h * h];
    let mut grad_bias = vec![0.0f32; 3 * h];
    let mut carry = vec![0.0f32; rows * h];
    let mut grad_discounted = vec![0.0f32; rows * h];
    let mut grad_g = vec![0.0f32; rows * 3 * h];
    let span =
        |t: usize, width: usize| (t * b_len + run.start) * width..(t * b_len + run.end) * width;
    for t in (0..t_len).rev() {
        let at = span(t, h);
        let plane_at = |p: usize| &saved[p * plane + at.start..p * plane + at.end];
        let (ht, r, z, n, gn) = (
            plane_at(0),
            plane_at(1),
            plane_at(2),
            plane_at(3),
            plane_at(4),
        );
        let gs = &grad_states[at.clone()];
        for i in 0..rows * h {
            let g = gs[i] + carry[i];
            let (ri, zi, ni) = (r[i], z[i], n[i]);
            let da_n = g * (1.0 - zi) * (1.0 - ni * ni);
            let da_z = g * (ht[i] - ni) * zi * (1.0 - zi);
            let da_r = da_n * gn[i] * ri * (1.0 - ri);
            let (row, k) = (i / h, i % h);
            let gates = &mut grad_gates[t][row * 3 * h..(row + 1) * 3 * h];
            gates[k] = da_r;
            gates[h + k] = da_z;
            gates[2 * h + k] = da_n;
            let gg = &mut grad_g[row * 3 * h..(row + 1) * 3 * h];
            gg[k] = da_r;
            gg[h + k] = da_z;
            gg[2 * h + k] = da_n * ri;
            grad_discounted[i] = g * zi;
        }
        // ∂h̃ += W_hhᵀ ∂g;  ∂W_hh += ∂gᵀ h̃;  ∂b_hh += Σ ∂g
        gemm(
            1.0,
            MatRef::row_major(&grad_g, rows, 3 * h),
            w_hh,
            1.0,
            MatMut::row_major(&mut grad_discounted, rows, h),
        );
        gemm(
            1.0,
            MatRef::row_major(&grad_g, rows, 3 * h).t(),
            MatRef::row_major(ht, rows, h),
            1.0,
            MatMut::row_major(&mut grad_weight, 3 * h, h),
        );
        for gg in grad_g.chunks_exact(3 * h) {
            for (b, &x) in grad_bias.iter_mut().zip(gg) {
                *b += x;
            }
        }
        // h̃ = keep · d ⊙ h_{t−1}: ∂d = keep · ∂h̃ ⊙ h_{t−1},  ∂h_{t−1} = keep · ∂h̃ ⊙ d
        let keep = &window.keep[t * b_len + run.start..t * b_len + run.end];
        let d = &window.discount[at.clone()];
        let prev: &[f32] = if t == 0 {
            &window.initial[run.start * h..run.end * h]
        } else {
            &states[span(t - 1, h)]
        };
        let gd = &mut grad_discount[t];
        for (row, &k) in keep.iter().enumerate() {
            for i in row * h..(row + 1) * h {
                if k {
                    gd[i] = grad_discounted[i] * prev[i];
                    carry[i] = grad_discounted[i] * d[i];
                } else {
                    gd[i] = 0.0;
                    carry[i] = 0.0;
                }
            }
        }
    }
    (grad_weight, grad_bias)
}

/// Contiguous runs of slots, one per thread, at least 16 slots each (smaller runs are not worth a
/// thread).
fn slot_runs(slots: usize) -> Vec<Range<usize>> {
    let parts = rayon::current_num_threads().min(slots.div_ceil(16)).max(1);
    let per = slots.div_ceil(parts).max(1);
    (0..parts)
        .map(|p| (p * per).min(slots)..((p + 1) * per).min(slots))
        .filter(|r| !r.is_empty() || slots == 0)
        .collect()
}

/// Splits `[T, B, width]` data into, for each run of slots, its `T` row blocks.
fn split_slots<'a>(
    data: &'a mut [f32],
    steps: usize,
    slots: usize,
    width: usize,
    runs: &[Range<usize>],
) -> Vec<Vec<&'a mut [f32]>> {
    let mut parts: Vec<Vec<&'a mut [f32]>> =
        runs.iter().map(|_| Vec::with_capacity(steps)).collect();
    if slots * width == 0 {
        for part in &mut parts {
            part.extend((0..steps).map(|_| <&mut [f32]>::default()));
        }
        return parts;
    }
    for step in data.chunks_exact_mut(slots * width) {
        let mut rest = step;
        for (part, run) in parts.iter_mut().zip(runs) {
            let (mine, tail) = rest.split_at_mut(run.len() * width);
            part.push(mine);
            rest = tail;
        }
    }
    parts
}

fn check(weights: &RecurrentWeights<'_>, window: &Window<'_>) -> Result<()> {
    let (t_len, b_len, h) = (window.steps, window.slots, weights.hidden);
    for (name, len, want) in [
        ("weight_hh", weights.weight.len(), 3 * h * h),
        ("bias_hh", weights.bias.len(), 3 * h),
        ("discount", window.discount.len(), t_len * b_len * h),
        ("keep", window.keep.len(), t_len * b_len),
        ("initial", window.initial.len(), b_len * h),
    ] {
        if len != want {
            return Err(Error::invalid_argument(
                name,
                format!(
                    "expected {want} values for T = {t_len}, B = {b_len}, H = {h}, found {len}"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::activations::sigmoid;
    use super::*;

    struct Case {
        weight: Vec<f32>,
        bias: Vec<f32>,
        gates: Vec<f32>,
        discount: Vec<f32>,
        keep: Vec<bool>,
        initial: Vec<f32>,
        steps: usize,
        slots: usize,
        h: usize,
    }

    impl Case {
        fn new(steps: usize, slots: usize, h: usize) -> Self {
            let f = |n: usize, seed: usize, scale: f32| -> Vec<f32> {
                (0..n)
                    .map(|i| (((i * 7919 + seed * 104_729) % 1009) as f32 / 1009.0 - 0.5) * scale)
                    .collect()
            };
            Self {
                weight: f(3 * h * h, 1, 1.0),
                bias: f(3 * h, 2, 0.5),
                gates: f(steps * slots * 3 * h, 3, 2.0),
                discount: f(steps * slots * h, 4, 0.8)
                    .iter()
                    .map(|x| x + 0.5)
                    .collect(),
                keep: (0..steps * slots).map(|i| i % 11 != 4).collect(),
                initial: f(slots * h, 5, 1.0),
                steps,
                slots,
                h,
            }
        }
        fn weights(&self) -> RecurrentWeights<'_> {
            RecurrentWeights {
                weight: &self.weight,
                bias: &self.bias,
                hidden: self.h,
            }
        }
        fn window(&self) -> Window<'_> {
            Window {
                discount: &self.discount,
                keep: &self.keep,
                initial: &self.initial,
                steps: self.steps,
                slots: self.slots,
            }
        }
        /// Σ c · states (a fixed linear functional, so its gradient is `c`), in f64.
        fn objective(&self, c: &[f32]) -> f64 {
            let f = forward(&self.weights(), &self.window(), &self.gates, false).unwrap();
            f.states
                .iter()
                .zip(c)
                .map(|(&s, &c)| f64::from(s) * f64::from(c))
                .sum()
        }
    }

    /// One step of the cell for one slot, written out from docs/model.md.
    fn reference_step(case: &Case, a: &[f32], d: &[f32], keep: bool, prev: &[f32]) -> Vec<f32> {
        let h = case.h;
        let ht: Vec<f32> = (0..h)
            .map(|k| if keep { d[k] * prev[k] } else { 0.0 })
            .collect();
        let g: Vec<f32> = (0..3 * h)
            .map(|j| case.bias[j] + (0..h).map(|k| case.weight[j * h + k] * ht[k]).sum::<f32>())
            .collect();
        (0..h)
            .map(|k| {
                let r = sigmoid(a[k] + g[k]);
                let z = sigmoid(a[h + k] + g[h + k]);
                let n = (a[2 * h + k] + r * g[2 * h + k]).tanh();
                (1.0 - z) * n + z * ht[k]
            })
            .collect()
    }

    #[test]
    fn forward_equals_stepping_each_slot() {
        let case = Case::new(6, 40, 7);
        let got = forward(&case.weights(), &case.window(), &case.gates, true).unwrap();
        let h = case.h;
        for b in 0..case.slots {
            let mut prev = case.initial[b * h..(b + 1) * h].to_vec();
            for t in 0..case.steps {
                let i = t * case.slots + b;
                let next = reference_step(
                    &case,
                    &case.gates[i * 3 * h..(i + 1) * 3 * h],
                    &case.discount[i * h..(i + 1) * h],
                    case.keep[i],
                    &prev,
                );
                for (k, want) in next.iter().enumerate() {
                    assert!(
                        (got.states[i * h + k] - want).abs() < 1e-5,
                        "t {t} b {b} k {k}"
                    );
                }
                prev = next;
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let case = Case::new(5, 33, 6);
        let c: Vec<f32> = (0..5 * 33 * 6)
            .map(|i| ((i * 31 % 23) as f32 - 11.0) * 0.05)
            .collect();
        let f = forward(&case.weights(), &case.window(), &case.gates, true).unwrap();
        let g = backward(&case.weights(), &case.window(), &f.states, &f.saved, &c).unwrap();
        let eps = 1e-2f32;
        let numeric = |mutate: &dyn Fn(&mut Case, f32)| {
            let mut plus = Case::new(5, 33, 6);
            mutate(&mut plus, eps);
            let mut minus = Case::new(5, 33, 6);
            mutate(&mut minus, -eps);
            (plus.objective(&c) - minus.objective(&c)) / (2.0 * f64::from(eps))
        };
        let check = |name: &str, analytic: f32, num: f64| {
            assert!(
                (f64::from(analytic) - num).abs() < 2e-3 * (1.0 + num.abs()),
                "{name}: analytic {analytic} numeric {num}"
            );
        };
        for idx in [0usize, 17, 100, 3 * 6 * 6 - 1] {
            check(
                "W_hh",
                g.grad_weight[idx],
                numeric(&|c, e| c.weight[idx] += e),
            );
        }
        for idx in [0usize, 7, 17] {
            check("b_hh", g.grad_bias[idx], numeric(&|c, e| c.bias[idx] += e));
        }
        for idx in [0usize, 250, 1000, 5 * 33 * 18 - 1] {
            check(
                "a",
                g.grad_input_gates[idx],
                numeric(&|c, e| c.gates[idx] += e),
            );
        }
        for idx in [3usize, 200, 600, 5 * 33 * 6 - 1] {
            check(
                "d",
                g.grad_discount[idx],
                numeric(&|c, e| c.discount[idx] += e),
            );
        }
    }

    #[test]
    fn runs_cover_the_slots_and_mismatched_lengths_are_named() {
        for slots in [0usize, 1, 15, 16, 17, 64, 1000] {
            let runs = slot_runs(slots);
            let covered: usize = runs.iter().map(|r| r.len()).sum();
            assert_eq!(covered, slots);
        }
        let case = Case::new(2, 3, 4);
        let mut window = case.window();
        window.keep = &case.keep[..5];
        let err = forward(&case.weights(), &window, &case.gates, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("keep: expected 6 values for T = 2, B = 3, H = 4, found 5"),
            "{err}"
        );
    }
}
