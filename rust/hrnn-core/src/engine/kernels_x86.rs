//! AVX2 + FMA versions of the scoring kernels (x86-64 only), written with `std::arch` intrinsics.
//!
//! LLVM does not vectorize the portable panel loop well (it keeps the 32 accumulators in memory),
//! so the hot loop — 32 logits per panel for `G` queries, their running log-sum-exp and the top-K
//! threshold test — is spelled out here. Callers must have checked `Isa::Avx2Fma`.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::ops::Range;

use super::kernels::PANEL;
use super::model::ItemTable;
use super::topk::ScanState;

/// Panels whose exponentials are summed in f32 before being flushed into the f64 total: each f32
/// lane then sums at most 64 values ≤ 1, keeping the denominator's relative error ≲ 1e-6.
const FLUSH_PANELS: usize = 64;

/// `exp(x)` for `x ≤ 0` (clamped at −87), the same reduction and polynomial as
/// `kernels::exp_lanes`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp8(x: __m256) -> __m256 {
    let x = _mm256_max_ps(x, _mm256_set1_ps(-87.0));
    let magic = _mm256_set1_ps(12_582_912.0);
    let t = _mm256_fmadd_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E), magic);
    let n = _mm256_sub_ps(t, magic);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
    let mut p = _mm256_set1_ps(1.0 / 5040.0);
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let ni = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4B40_0000));
    let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        ni,
        _mm256_set1_epi32(127),
    )));
    _mm256_mul_ps(p, scale)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hmax(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_max_ss(m, _mm_shuffle_ps::<0b01>(m, m));
    _mm_cvtss_f32(m)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum_f64(v: [__m256; 4]) -> f64 {
    let mut total = _mm256_setzero_pd();
    for x in v {
        total = _mm256_add_pd(total, _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
        total = _mm256_add_pd(total, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(x)));
    }
    let mut lanes = [0.0f64; 4];
    // SAFETY: `lanes` holds 4 f64, exactly one 256-bit store.
    unsafe { _mm256_storeu_pd(lanes.as_mut_ptr(), total) };
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
}

/// The 32 logits of one panel for `G` queries, as 4 vectors each. Every row of the panel is
/// loaded once and multiplied into all `G` queries' accumulators (plain indexed loops with
/// constant trip counts, which LLVM unrolls into registers).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn panel_logits<const G: usize>(
    panel: &[super::kernels::Lanes],
    queries: &[&[f32]; G],
) -> [[__m256; 4]; G] {
    let dim = panel.len();
    assert!(queries.iter().all(|q| q.len() >= dim));
    let q: [*const f32; G] = std::array::from_fn(|g| queries[g].as_ptr());
    let mut acc = [[_mm256_setzero_ps(); 4]; G];
    for (d, row) in panel.iter().enumerate() {
        let w = row.0.as_ptr();
        // SAFETY: a row holds 32 f32 (4 × 8 lanes, 64-byte aligned); each query has ≥ dim values.
        unsafe {
            let w = [
                _mm256_load_ps(w),
                _mm256_load_ps(w.add(8)),
                _mm256_load_ps(w.add(16)),
                _mm256_load_ps(w.add(24)),
            ];
            #[allow(clippy::needless_range_loop)]
            for g in 0..G {
                let b = _mm256_broadcast_ss(&*q[g].add(d));
                for i in 0..4 {
                    acc[g][i] = _mm256_fmadd_ps(w[i], b, acc[g][i]);
                }
            }
        }
    }
    acc
}

/// Scans `panels` for `G` queries (each at least `table.dim` long), updating `states[..G]`.
#[target_feature(enable = "avx2,fma")]
pub(super) fn scan<const G: usize>(
    table: &ItemTable,
    queries: [&[f32]; G],
    panels: Range<usize>,
    states: &mut [ScanState],
) {
    let dim = table.dim;
    let states = &mut states[..G];
    let queries: [&[f32]; G] = std::array::from_fn(|g| &queries[g][..dim]);
    // Per-lane f32 sums of exp(logit − max) live in each state (memory, not registers: the
    // registers are for the G × 4 accumulators of the panel loop).
    let mut since_flush = 0;
    for p in panels {
        let panel = &table.panel(p)[..dim];
        let acc = panel_logits::<G>(panel, &queries);
        for (state, acc) in states.iter_mut().zip(&acc) {
            let lane_sums = state.lane_sums.as_mut_ptr();
            // SAFETY: `lane_sums` holds 32 f32 = 4 × 8 lanes.
            let mut sums = unsafe { [0, 8, 16, 24].map(|i| _mm256_loadu_ps(lane_sums.add(i))) };
            let panel_max = hmax(_mm256_max_ps(
                _mm256_max_ps(acc[0], acc[1]),
                _mm256_max_ps(acc[2], acc[3]),
            ));
            if panel_max > state.max {
                // Rare after the first panels: rescale what was summed against the old maximum.
                let scale = if state.max == f32::NEG_INFINITY {
                    0.0
                } else {
                    (state.max - panel_max).exp()
                };
                let s = _mm256_set1_ps(scale);
                for x in &mut sums {
                    *x = _mm256_mul_ps(*x, s);
                }
                state.total *= f64::from(scale);
                state.max = panel_max;
            }
            let m = _mm256_set1_ps(state.max);
            for (i, (x, &a)) in sums.iter_mut().zip(acc).enumerate() {
                *x = _mm256_add_ps(*x, exp8(_mm256_sub_ps(a, m)));
                // SAFETY: as above.
                unsafe { _mm256_storeu_ps(lane_sums.add(8 * i), *x) };
            }
            if panel_max > state.top.threshold() {
                let mut logits = [0.0f32; PANEL];
                for (i, &a) in acc.iter().enumerate() {
                    // SAFETY: `logits` has room for 4 × 8 lanes.
                    unsafe { _mm256_storeu_ps(logits.as_mut_ptr().add(8 * i), a) };
                }
                state.top.offer_panel(p, &logits, table.num_items);
            }
        }
        since_flush += 1;
        if since_flush == FLUSH_PANELS {
            since_flush = 0;
            for state in states.iter_mut() {
                flush(state);
            }
        }
    }
    for state in states.iter_mut() {
        flush(state);
    }
}

/// Moves a state's f32 lane sums into its f64 total.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn flush(state: &mut ScanState) {
    let lane_sums = state.lane_sums.as_ptr();
    // SAFETY: `lane_sums` holds 32 f32 = 4 × 8 lanes.
    let sums = unsafe { [0, 8, 16, 24].map(|i| _mm256_loadu_ps(lane_sums.add(i))) };
    state.total += hsum_f64(sums);
    state.lane_sums = [0.0; PANEL];
}

/// `out[i] = bias[i] + W[i, ..] · v` for a row-major `W` with `v.len()` columns (the cell's gate
/// pre-activations): 8-lane FMAs along each row, a scalar tail, one horizontal sum per row.
#[target_feature(enable = "avx2,fma")]
pub(super) fn gemv(w: &[f32], bias: &[f32], v: &[f32], out: &mut [f32]) {
    let cols = v.len();
    let full = cols / 8 * 8;
    assert!(w.len() >= out.len() * cols && bias.len() >= out.len());
    for (i, o) in out.iter_mut().enumerate() {
        let row = &w[i * cols..(i + 1) * cols];
        let mut acc = _mm256_setzero_ps();
        for c in (0..full).step_by(8) {
            // SAFETY: c + 8 ≤ full ≤ cols = row.len() = v.len().
            acc = unsafe {
                _mm256_fmadd_ps(
                    _mm256_loadu_ps(row.as_ptr().add(c)),
                    _mm256_loadu_ps(v.as_ptr().add(c)),
                    acc,
                )
            };
        }
        let half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
        let half = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let mut sum = _mm_cvtss_f32(_mm_add_ss(half, _mm_shuffle_ps::<0b01>(half, half)));
        for (x, y) in row[full..].iter().zip(&v[full..]) {
            sum = x.mul_add(*y, sum);
        }
        *o = bias[i] + sum;
    }
}
