//! Row passes of the softmax: the maximum and `e^(x − shift)` with its sum, vectorized (AVX2+FMA
//! where the CPU has it, portable otherwise), using the engine's exponential
//! ([`crate::engine::kernels::exp_lanes`], relative error ≲ 2e-7).

use crate::engine::kernels::{exp_lanes, Fused, Isa, MulAdd, Unfused, PANEL};

/// Lane sums are flushed into the f64 total every this many 16-lane chunks (each lane then sums
/// at most 64 values ≤ 1, keeping the f32 partial sums exact to ~1e-6).
const FLUSH_CHUNKS: usize = 64;

/// Adds `bias` to `row` element-wise and returns the largest result (`-inf` for an empty row).
pub fn add_bias_and_max(isa: Isa, row: &mut [f32], bias: &[f32]) -> f32 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2Fma` is only chosen after `is_x86_feature_detected!` confirmed both.
        Isa::Avx2Fma => unsafe { add_bias_and_max_avx2(row, bias) },
        _ => add_bias_and_max_generic(row, bias),
    }
}

/// Replaces each `x` of `row` by `e^(x − shift)` (exactly 0 for `x = −inf`) and returns their
/// sum. Every `x − shift` must be ≤ 0 (`shift` is the row's maximum).
pub fn exp_in_place(isa: Isa, row: &mut [f32], shift: f32) -> f64 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `row_max`.
        Isa::Avx2Fma => unsafe { exp_in_place_avx2(row, shift) },
        _ => exp_in_place_generic::<Unfused>(row, shift),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn add_bias_and_max_avx2(row: &mut [f32], bias: &[f32]) -> f32 {
    add_bias_and_max_generic(row, bias)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn exp_in_place_avx2(row: &mut [f32], shift: f32) -> f64 {
    exp_in_place_generic::<Fused>(row, shift)
}

#[inline(always)]
fn add_bias_and_max_generic(row: &mut [f32], bias: &[f32]) -> f32 {
    assert_eq!(row.len(), bias.len(), "a bias per logit");
    let mut lanes = [f32::NEG_INFINITY; PANEL];
    let mut chunks = row.chunks_exact_mut(PANEL);
    let mut bias_chunks = bias.chunks_exact(PANEL);
    for (chunk, b) in (&mut chunks).zip(&mut bias_chunks) {
        for l in 0..PANEL {
            chunk[l] += b[l];
            lanes[l] = if chunk[l] > lanes[l] {
                chunk[l]
            } else {
                lanes[l]
            };
        }
    }
    let mut tail = f32::NEG_INFINITY;
    for (x, &b) in chunks
        .into_remainder()
        .iter_mut()
        .zip(bias_chunks.remainder())
    {
        *x += b;
        tail = if *x > tail { *x } else { tail };
    }
    lanes.iter().fold(tail, |m, &x| if x > m { x } else { m })
}

#[inline(always)]
fn exp_in_place_generic<M: MulAdd>(row: &mut [f32], shift: f32) -> f64 {
    let mut total = 0.0f64;
    let mut lanes = [0.0f32; PANEL];
    let mut chunks = row.chunks_exact_mut(PANEL);
    for (c, chunk) in (&mut chunks).enumerate() {
        let x: &mut [f32; PANEL] = chunk.try_into().expect("chunks are PANEL long");
        let e = exp_lanes::<M>(x, shift);
        for l in 0..PANEL {
            x[l] = if x[l] == f32::NEG_INFINITY { 0.0 } else { e[l] };
            lanes[l] += x[l];
        }
        if (c + 1) % FLUSH_CHUNKS == 0 {
            total += lanes.iter().map(|&v| f64::from(v)).sum::<f64>();
            lanes = [0.0; PANEL];
        }
    }
    total += lanes.iter().map(|&v| f64::from(v)).sum::<f64>();
    for x in chunks.into_remainder() {
        *x = (*x - shift).exp();
        total += f64::from(*x);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_in_place_matches_std_and_zeroes_minus_infinity() {
        for isa in [Isa::Portable, Isa::detect()] {
            let mut row: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 * -0.3).collect();
            row[17] = f32::NEG_INFINITY;
            row[999] = f32::NEG_INFINITY;
            let original = row.clone();
            let max = add_bias_and_max(isa, &mut row, &vec![0.0; 1000]);
            assert_eq!(max, 0.0);
            let sum = exp_in_place(isa, &mut row, max);
            let mut want = 0.0f64;
            for (got, x) in row.iter().zip(&original) {
                let e = (x - max).exp();
                want += f64::from(e);
                assert!((got - e).abs() <= 1e-6 * e.max(1e-30), "{got} vs {e}");
            }
            assert_eq!((row[17], row[999]), (0.0, 0.0));
            assert!((sum - want).abs() <= 1e-6 * want);
        }
    }
}
