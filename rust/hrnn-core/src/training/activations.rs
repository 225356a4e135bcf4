//! The cell's gate activations over slices, vectorized: `σ(x)` and `tanh(x)` from one exponential
//! of `−|x|` (never overflows), with the engine's polynomial exponential
//! ([`crate::engine::kernels::exp_lanes`]; relative error ≲ 2e-7), AVX2+FMA where the CPU has it.

use crate::engine::kernels::{exp_lanes, Fused, Isa, MulAdd, Unfused, PANEL};

/// `x ← σ(x)` element-wise.
pub fn sigmoid_in_place(isa: Isa, x: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2Fma` is only chosen after `is_x86_feature_detected!` confirmed both.
        Isa::Avx2Fma => unsafe { sigmoid_avx2(x) },
        _ => map_lanes(x, sigmoid_lanes::<Unfused>, sigmoid),
    }
}

/// `x ← tanh(x)` element-wise.
pub fn tanh_in_place(isa: Isa, x: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `sigmoid_in_place`.
        Isa::Avx2Fma => unsafe { tanh_avx2(x) },
        _ => map_lanes(x, tanh_lanes::<Unfused>, f32::tanh),
    }
}

/// `σ(x)` of one value (the scalar tail of the lane loops, and the reference of the tests).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sigmoid_avx2(x: &mut [f32]) {
    map_lanes(x, sigmoid_lanes::<Fused>, sigmoid)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn tanh_avx2(x: &mut [f32]) {
    map_lanes(x, tanh_lanes::<Fused>, f32::tanh)
}

#[inline(always)]
fn map_lanes(
    x: &mut [f32],
    lanes: impl Fn(&[f32; PANEL]) -> [f32; PANEL],
    scalar: impl Fn(f32) -> f32,
) {
    let mut chunks = x.chunks_exact_mut(PANEL);
    for chunk in &mut chunks {
        let v: &mut [f32; PANEL] = chunk.try_into().expect("chunks are PANEL long");
        *v = lanes(v);
    }
    for v in chunks.into_remainder() {
        *v = scalar(*v);
    }
}

#[inline(always)]
fn sigmoid_lanes<M: MulAdd>(x: &[f32; PANEL]) -> [f32; PANEL] {
    let mut neg_abs = [0.0f32; PANEL];
    for l in 0..PANEL {
        neg_abs[l] = -x[l].abs();
    }
    let e = exp_lanes::<M>(&neg_abs, 0.0);
    let mut out = [0.0f32; PANEL];
    for l in 0..PANEL {
        let inv = 1.0 / (1.0 + e[l]);
        out[l] = if x[l] >= 0.0 { inv } else { e[l] * inv };
    }
    out
}

#[inline(always)]
fn tanh_lanes<M: MulAdd>(x: &[f32; PANEL]) -> [f32; PANEL] {
    let mut neg_abs2 = [0.0f32; PANEL];
    for l in 0..PANEL {
        neg_abs2[l] = -2.0 * x[l].abs();
    }
    let e = exp_lanes::<M>(&neg_abs2, 0.0);
    let mut out = [0.0f32; PANEL];
    for l in 0..PANEL {
        let t = (1.0 - e[l]) / (1.0 + e[l]);
        out[l] = if x[l] >= 0.0 { t } else { -t };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations_match_std_over_the_whole_range() {
        let x: Vec<f32> = (0..2003).map(|i| (i as f32 - 1001.0) * 0.05).collect();
        for isa in [Isa::Portable, Isa::detect()] {
            let mut s = x.clone();
            sigmoid_in_place(isa, &mut s);
            let mut t = x.clone();
            tanh_in_place(isa, &mut t);
            for ((&v, &sv), &tv) in x.iter().zip(&s).zip(&t) {
                let (ws, wt) = (sigmoid(v), v.tanh());
                assert!(
                    (sv - ws).abs() <= 1e-6 * ws.max(1e-30) + 1e-37,
                    "σ({v}) = {sv} vs {ws}"
                );
                assert!((tv - wt).abs() <= 3e-7, "tanh({v}) = {tv} vs {wt}");
            }
        }
    }
}
