//! The machine's measured fp32 multiply-add peak, for benchmarks: a scoring kernel's FLOP rate is
//! reported as a fraction of what this probe reaches on the same cores in the same run, not of a
//! nominal clock (a shared or throttled VM rarely runs at its nominal clock).
//!
//! The probe keeps 12 independent chains of 256-bit FMAs in registers: with a 4–5 cycle latency
//! and 2 FMA pipes, 8–10 chains saturate the pipes, so the loop runs at the core's FMA throughput
//! (32 fp32 FLOP per cycle on Zen 3 / Skylake without AVX-512).

use std::time::Instant;

use super::kernels::Isa;

/// Independent accumulator chains of the probe.
const CHAINS: usize = 12;
/// FMAs per inner-loop round (one per chain), 8 lanes, 2 FLOP each.
const FLOP_PER_ROUND: f64 = (CHAINS * 8 * 2) as f64;

/// Runs `rounds` rounds of the probe loop and returns a value that depends on every FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_rounds(rounds: u64, seed: f32) -> f32 {
    use std::arch::x86_64::*;
    let mut acc: [__m256; CHAINS] = std::array::from_fn(|i| _mm256_set1_ps(seed + i as f32));
    // |a| < 1 and a tiny addend: the chains converge to finite values instead of overflowing.
    let a = _mm256_set1_ps(0.999_9);
    let b = _mm256_set1_ps(1e-3);
    for _ in 0..rounds {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let s = acc
        .iter()
        .fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x));
    let half = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
    let half = _mm_add_ps(half, _mm_movehl_ps(half, half));
    _mm_cvtss_f32(_mm_add_ss(half, _mm_shuffle_ps::<0b01>(half, half)))
}

/// The portable probe: the same chains as plain f32 arithmetic (what the portable kernels get).
fn portable_rounds(rounds: u64, seed: f32) -> f32 {
    let mut acc: [[f32; 8]; CHAINS] = std::array::from_fn(|i| [seed + i as f32; 8]);
    for _ in 0..rounds {
        for x in acc.iter_mut() {
            for v in x.iter_mut() {
                *v = *v * 0.999_9 + 1e-3;
            }
        }
    }
    acc.iter().flatten().sum()
}

fn rounds(isa: Isa, rounds: u64, seed: f32) -> f32 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2Fma` is only chosen after `is_x86_feature_detected!` confirmed both.
        Isa::Avx2Fma => unsafe { fma_rounds(rounds, seed) },
        _ => portable_rounds(rounds, seed),
    }
}

/// fp32 FLOP per second the current thread reaches with `isa`'s multiply-adds, over about
/// `seconds` (the best of several short runs, so a preemption on a shared machine costs one run,
/// not the measurement).
pub fn fma_peak_one_thread(isa: Isa, seconds: f64) -> f64 {
    // Calibrate: about 1 ms of rounds.
    let mut n = 1u64 << 12;
    loop {
        let t = Instant::now();
        std::hint::black_box(rounds(isa, n, 1.0));
        if t.elapsed().as_secs_f64() > 1e-3 || n > 1 << 32 {
            break;
        }
        n *= 2;
    }
    let start = Instant::now();
    let mut best = 0.0f64;
    while start.elapsed().as_secs_f64() < seconds || best == 0.0 {
        let t = Instant::now();
        std::hint::black_box(rounds(isa, n, std::hint::black_box(1.0)));
        let rate = n as f64 * FLOP_PER_ROUND / t.elapsed().as_secs_f64();
        best = best.max(rate);
    }
    best
}

/// fp32 FLOP per second of the current rayon pool's threads running the probe at the same time
/// (the sum of each thread's best rate: the peak a kernel spread over the pool can be held to).
pub fn fma_peak(isa: Isa, seconds: f64) -> f64 {
    // One call on every thread of the pool, held until all have started, so they overlap.
    let started = std::sync::Barrier::new(rayon::current_num_threads().max(1));
    rayon::broadcast(|_| {
        started.wait();
        fma_peak_one_thread(isa, seconds)
    })
    .into_iter()
    .sum()
}

/// Seconds one query's softmax pass takes per panel (16 items), best of repeated runs for about
/// `seconds`: the AVX2 kernel's `absorb_block` over an L1-resident block of [`BLOCK_PANELS`]
/// logits spread over [−8, 0], against a selection nothing can enter — the exponentials and sums
/// every block pays whatever its scores. `None` without AVX2 and FMA.
///
/// With [`fma_peak_one_thread`] it splits a batch's time per user and panel into this pass and
/// the `2 H` FMAs of the logits, the pass's cost in FMA slots bounding the batch's fraction of the
/// FMA peak at `2H / (2H + slots)` however fast the logits run.
pub fn softmax_pass_per_panel(isa: Isa, seconds: f64) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2Fma {
        use super::kernels::Lanes;
        use super::topk::{ScanState, TopK, BLOCK_PANELS};
        let block: Vec<Lanes> = (0..BLOCK_PANELS)
            .map(|p| {
                Lanes(std::array::from_fn(|l| {
                    -(((p * 16 + l) * 7919 % 1000) as f32) * 0.008
                }))
            })
            .collect();
        let mut state = ScanState::new(TopK::new(0, Vec::new()));
        let reps = 2000;
        let start = Instant::now();
        let mut best = f64::INFINITY;
        while start.elapsed().as_secs_f64() < seconds || best == f64::INFINITY {
            let t = Instant::now();
            for _ in 0..reps {
                // SAFETY: `isa` is `Avx2Fma`, chosen only where the CPU has AVX2 and FMA.
                unsafe {
                    super::kernels_x86::absorb_block(
                        &mut state,
                        0,
                        std::hint::black_box(&block),
                        0.0,
                        BLOCK_PANELS * 16,
                    )
                };
            }
            best = best.min(t.elapsed().as_secs_f64() / (reps * BLOCK_PANELS) as f64);
        }
        std::hint::black_box(state.total);
        return Some(best);
    }
    let _ = (isa, seconds);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_reports_a_plausible_rate() {
        for isa in [Isa::Portable, Isa::detect()] {
            let one = fma_peak_one_thread(isa, 0.01);
            // Anything from an emulator to a wide server core: 10 MFLOP/s .. 10 TFLOP/s.
            assert!((1e7..1e13).contains(&one), "{isa}: {one}");
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let two = pool.install(|| fma_peak(Isa::detect(), 0.01));
        assert!((1e7..2e13).contains(&two), "{two}");
    }

    #[test]
    fn the_softmax_pass_costs_more_than_nothing_and_less_than_a_millisecond_per_panel() {
        match softmax_pass_per_panel(Isa::detect(), 0.01) {
            Some(s) => assert!(s > 0.0 && s < 1e-3, "{s}"),
            None => assert_ne!(Isa::detect(), Isa::Avx2Fma),
        }
        assert_eq!(softmax_pass_per_panel(Isa::Portable, 0.01), None);
    }
}
