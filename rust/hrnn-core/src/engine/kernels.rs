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
/// holding one coordinate of 16 consecutive items contiguously (see `model::ItemTable`). 16 f32
/// lanes are one cache line and two AVX2 registers, so a register tile of 6 users × 1 panel
/// (12 accumulators) or 1 user × 4 panels (8 accumulators) fits the 16 AVX2 registers.
pub const PANEL: usize = 16;

/// One f32 row of a panel: 16 lanes, 64-byte aligned (exactly one cache line).
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(64))]
pub struct Lanes(pub [f32; PANEL]);

impl Default for Lanes {
    fn default() -> Self {
        Lanes([0.0; PANEL])
    }
}

/// One bfloat16 row of a panel: 16 lanes of the upper halves of f32 bit patterns, 32-byte
/// aligned (two rows per cache line).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[repr(C, align(32))]
pub struct Bf16Lanes(pub [u16; PANEL]);

/// A panel row of either precision, widened to f32 for the portable kernels.
pub trait Row: Copy + Send + Sync + 'static {
    /// The 16 lanes as f32.
    fn to_f32(&self) -> [f32; PANEL];
    /// Lane `l` as f32.
    fn lane(&self, l: usize) -> f32;
}

impl Row for Lanes {
    #[inline(always)]
    fn to_f32(&self) -> [f32; PANEL] {
        self.0
    }
    #[inline(always)]
    fn lane(&self, l: usize) -> f32 {
        self.0[l]
    }
}

impl Row for Bf16Lanes {
    #[inline(always)]
    fn to_f32(&self) -> [f32; PANEL] {
        self.0.map(bf16_to_f32)
    }
    #[inline(always)]
    fn lane(&self, l: usize) -> f32 {
        bf16_to_f32(self.0[l])
    }
}

/// `x` rounded to bfloat16 (round to nearest, ties to even — the rounding of torch's
/// `.to(torch.bfloat16)` and of the AVX-512 BF16 instructions); NaN stays a quiet NaN.
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) as u16) | 0x0040;
    }
    let rounding = 0x7FFF + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// The f32 value of a bfloat16 (exact).
#[inline(always)]
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
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

/// Largest of 16 lanes (a tree of lane-wise maxima, which vectorizes).
#[inline(always)]
pub fn lane_max(x: &[f32; PANEL]) -> f32 {
    let mut m = [f32::NEG_INFINITY; 8];
    for l in 0..8 {
        m[l] = if x[l] > x[l + 8] { x[l] } else { x[l + 8] };
    }
    m.iter()
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

/// Coefficients (constant term first) of the degree-5 polynomial closest to `e^r` in relative
/// error on `|r| ≤ ln2/2` (fitted by iteratively reweighted least squares): 1.9e-7 relative in f32
/// Horner evaluation, where the degree-7 Taylor polynomial needs two more multiply-adds.
pub const EXP_POLY: [f32; 6] = [
    1.000_000_1,
    0.999_999_7,
    0.499_988_94,
    0.166_675_75,
    0.041_915_383,
    0.008_297_655,
];

/// `exp(x - shift)` for 16 lanes where `x - shift ≤ 0` (relative error ≲ 2e-7; inputs below
/// −87 are clamped there, giving ~1e-38 instead of 0, which no sum can notice).
///
/// Range reduction `x = n ln2 + r`, `|r| ≤ ln2/2`, then [`EXP_POLY`] for `e^r` and `2^n` built in
/// the exponent bits. Written branch-free over lanes so it vectorizes.
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
        let mut p = EXP_POLY[5];
        for &c in EXP_POLY[..5].iter().rev() {
            p = M::mul_add(p, r, c);
        }
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
    use crate::engine::test_fixtures::lcg_step;

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
        lanes[13] = 3.0;
        lanes[3] = -9.0;
        assert_eq!(lane_max(&lanes), 3.0);
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        // (input bits, expected bf16 bits): exact, below/above half, ties to even both ways.
        let cases: [(u32, u16); 9] = [
            (0x3F80_0000, 0x3F80), // 1.0
            (0x3F80_7FFF, 0x3F80), // just below half an ulp: down
            (0x3F80_8001, 0x3F81), // just above: up
            (0x3F80_8000, 0x3F80), // tie, even stays
            (0x3F81_8000, 0x3F82), // tie, odd rounds up to even
            (0xBF81_8000, 0xBF82), // negative tie
            (0x7F7F_FFFF, 0x7F80), // f32::MAX overflows to +inf, as torch does
            (0x0000_0001, 0x0000), // smallest subnormal: to zero
            (0x7F80_0000, 0x7F80), // +inf stays
        ];
        for (bits, want) in cases {
            let got = f32_to_bf16(f32::from_bits(bits));
            assert_eq!(got, want, "{bits:#010x}: {got:#06x} vs {want:#06x}");
        }
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        // Round trip: the result is the nearest bf16 (ties to even), checked against f64.
        let mut s = 12345u64;
        for _ in 0..10_000 {
            lcg_step(&mut s);
            // Finite magnitudes below 4, subnormals included.
            let x = f32::from_bits((s >> 32) as u32 & 0x3FFF_FFFF);
            let r = f64::from(bf16_to_f32(f32_to_bf16(x)));
            let ulp = f64::from(bf16_to_f32(f32_to_bf16(x) + 1)) - r;
            let err = (f64::from(x) - r).abs();
            assert!(err <= ulp / 2.0 + 1e-300, "{x}: {r}");
        }
    }
}
