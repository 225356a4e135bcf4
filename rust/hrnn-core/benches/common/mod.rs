//! Inputs shared by the criterion benches and the examples that measure the engine (included by
//! `mod common;` in a bench, `#[path = "../benches/common/mod.rs"] mod common;` in an example).

/// `len` deterministic values, uniform in `[-scale / 2, scale / 2)` (a 64-bit LCG from `seed`).
pub fn random(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
        })
        .collect()
}
