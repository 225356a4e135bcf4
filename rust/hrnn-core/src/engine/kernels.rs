//! Inner loops and runtime CPU-feature dispatch.
//!
//! The kernels are written once, as plain Rust over fixed-size lane arrays that LLVM vectorizes,
//! generic over how a multiply-add is done ([`MulAdd`]). Each is instantiated twice: inside a
//! `#[target_feature(enable = "avx2,fma")]` function (selected at run time with
//! `is_x86_feature_detected!`, so one portable wheel uses AVX2+FMA where the CPU has it) and as a
//! portable fallback. No intrinsics and no nightly features are needed: an `#[inline(always)]`
//! generic body inlined into a target-feature function is compiled with those features.

use std::fmt;

/// Items per panel of the item table: the output table is stored panel by panel, each panel
/// holding one coordinate of 32 consecutive items contiguously (see `model::ItemTable`).
pub const PANEL: usize = 32;

/// One row of a panel: 32 lanes, 64-byte aligned so vector loads never split a cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct Lanes(pub [f32; PANEL]);

impl Default for Lanes {
    fn default() -> Self {
        Lanes([0.0; PANEL])
    }
}

/// The instruction set chosen at load time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Portable code (SSE2 on x86-64, NEON on aarch64 via autovectorization).
    Portable,
    /// AVX2 with fused multiply-add.
    Avx2Fma,
}

impl Isa {
    /// The best instruction set this CPU supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Isa::Avx2Fma;
            }
        }
        Isa::Portable
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Isa::Portable => "portable",
            Isa::Avx2Fma => "avx2+fma",
        })
    }
}

/// How `a * b + c` is computed: fused where the CPU has FMA (one rounding), plain otherwise
/// (`f32::mul_add` without hardware FMA would be a slow libm call).
pub trait MulAdd {
    /// `a * b + c`.
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

/// Hardware fused multiply-add.
pub struct Fused;
/// Separate multiply and add.
pub struct Unfused;

impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

impl MulAdd for Unfused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// Dot product with 8 independent accumulators (vectorizes; no reliance on fast-math).
#[inline(always)]
pub fn dot<M: MulAdd>(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] = M::mul_add(x[l], y[l], acc[l]);
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail = M::mul_add(*x, *y, tail);
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `out[i] = bias[i] + W[i, ..] · v` for a row-major `W` with `v.len()` columns.
#[inline(always)]
pub fn gemv<M: MulAdd>(w: &[f32], bias: &[f32], v: &[f32], out: &mut [f32]) {
    let cols = v.len();
    for (i, o) in out.iter_mut().enumerate() {
        *o = bias[i] + dot::<M>(&w[i * cols..(i + 1) * cols], v);
    }
}

/// Largest of 32 lanes (a tree of lane-wise maxima, which vectorizes).
#[inline(always)]
pub fn lane_max(x: &[f32; PANEL]) -> f32 {
    let mut m = [f32::NEG_INFINITY; 8];
    for l in 0..8 {
        let a = if x[l] > x[l + 8] { x[l] } else { x[l + 8] };
        let b = if x[l + 16] > x[l + 24] {
            x[l + 16]
        } else {
            x[l + 24]
        };
        m[l] = if a > b { a } else { b };
    }
    m.iter()
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

/// `exp(x - shift)` for 32 lanes where `x - shift ≤ 0` (relative error ≲ 2e-7; inputs below
/// −87 are clamped there, giving ~1e-38 instead of 0, which no sum can notice).
///
/// Range reduction `x = n ln2 + r`, `|r| ≤ ln2/2`, then a degree-7 Taylor polynomial for `e^r` and
/// `2^n` built in the exponent bits. Written branch-free over lanes so it vectorizes.
#[inline(always)]
pub fn exp_lanes<M: MulAdd>(x: &[f32; PANEL], shift: f32) -> [f32; PANEL] {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let mut out = [0.0f32; PANEL];
    for l in 0..PANEL {
        let mut v = x[l] - shift;
        v = if v < -87.0 { -87.0 } else { v };
        let t = M::mul_add(v, LOG2E, MAGIC);
        let n = t - MAGIC;
        let r = M::mul_add(n, -LN2_LO, M::mul_add(n, -LN2_HI, v));
        let mut p = 1.0 / 5040.0;
        p = M::mul_add(p, r, 1.0 / 720.0);
        p = M::mul_add(p, r, 1.0 / 120.0);
        p = M::mul_add(p, r, 1.0 / 24.0);
        p = M::mul_add(p, r, 1.0 / 6.0);
        p = M::mul_add(p, r, 0.5);
        p = M::mul_add(p, r, 1.0);
        p = M::mul_add(p, r, 1.0);
        // The integer n sits in t's low mantissa bits (offset 2^22); n ∈ [-126, 0] here.
        let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
        let scale = f32::from_bits(((ni + 127) << 23) as u32);
        out[l] = p * scale;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_lanes_matches_std_exp() {
        let mut x = [0.0f32; PANEL];
        for (l, v) in x.iter_mut().enumerate() {
            *v = -(l as f32) * 2.7 - 0.013 * l as f32;
        }
        for shift in [0.0f32, 0.5, 3.0] {
            let fast = exp_lanes::<Unfused>(&x, shift);
            let fused = exp_lanes::<Fused>(&x, shift);
            for l in 0..PANEL {
                let exact = f64::from(x[l] - shift).exp();
                if exact < 1e-37 {
                    continue;
                }
                for got in [fast[l], fused[l]] {
                    let rel = ((f64::from(got) - exact) / exact).abs();
                    assert!(rel < 5e-7, "lane {l}: {got} vs {exact} (rel {rel})");
                }
            }
        }
    }

    #[test]
    fn exp_lanes_clamps_very_negative_inputs() {
        let x = [f32::MIN; PANEL];
        let e = exp_lanes::<Unfused>(&x, 0.0);
        assert!(e.iter().all(|&v| (0.0..1e-37).contains(&v)));
    }

    #[test]
    fn dot_and_lane_max() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.1).collect();
        let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot::<Unfused>(&a, &b) - exact).abs() < 1e-4);
        assert!((dot::<Fused>(&a, &b) - exact).abs() < 1e-4);
        let mut lanes = [0.0f32; PANEL];
        lanes[29] = 3.0;
        lanes[3] = -9.0;
        assert_eq!(lane_max(&lanes), 3.0);
    }
}
