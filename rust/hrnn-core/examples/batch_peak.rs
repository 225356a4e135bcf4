//! A batch of 256 users' top-25 over 100k items at H = 43 on a pool of 2 threads, as a fraction of
//! the fp32 multiply-add peak measured by the FMA probe on the same pool, interleaved with it:
//! `cargo run --release -p hrnn-core --example batch_peak [rounds] [threads]`. On a shared machine,
//! compare two builds with `python scripts/ab_batch_peak.py REPS THREADS BIN_A BIN_B` (runs them
//! in shuffled order, so other load falls on both alike).
//!
//! The FLOP count is the logits' multiply-adds only (256 × N × H × 2); the softmax denominator's
//! exponentials and the top-K selection are overhead against it. The example also measures that
//! softmax pass alone (per user and panel of 16 items, on one thread) and splits the batch's CPU
//! time into the pass and the rest: the pass's cost in FMA slots bounds the fraction of the peak
//! any logits kernel could reach next to it.
//!
//! `BATCH_PEAK_PRECISION=bf16` holds the table as bfloat16 (the FLOP count stays the same).

use std::hint::black_box;
use std::time::Instant;

use hrnn_core::engine::fma_probe::{fma_peak, fma_peak_one_thread, softmax_pass_per_panel};
use hrnn_core::engine::kernels::Isa;
use hrnn_core::engine::model::{ItemTable, Precision};
use hrnn_core::engine::topk::top_k_batch;

#[path = "../benches/common/mod.rs"]
mod common;
use common::random;

const H: usize = 43;
const N: usize = 100_000;
const USERS: usize = 256;
const K: usize = 25;

/// CPU seconds used by every thread of this process so far (time a shared machine gave to
/// another process is not counted).
fn process_cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(15, |a| a.parse().expect("rounds: an integer"));
    let threads: usize = std::env::args()
        .nth(2)
        .map_or(2, |a| a.parse().expect("threads: an integer"));
    let isa = Isa::detect();
    let precision: Precision = std::env::var("BATCH_PEAK_PRECISION")
        .unwrap_or_else(|_| "fp32".into())
        .parse()
        .expect("BATCH_PEAK_PRECISION: fp32 or bf16");
    let table =
        ItemTable::new(&random(N * H, 1, 0.6), &random(N, 2, 1.0), H).with_precision(precision);
    let queries: Vec<Vec<f32>> = (0..USERS as u64).map(|u| random(H, 100 + u, 1.0)).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let flop = (USERS * N * H * 2) as f64;
    let (mut batch_ms, mut cpu_ms, mut peaks) = (Vec::new(), Vec::new(), Vec::new());
    pool.install(|| {
        black_box(top_k_batch(
            isa,
            &table,
            &queries,
            K,
            vec![Vec::new(); USERS],
        ));
        for _ in 0..rounds {
            peaks.push(fma_peak(isa, 0.05));
            let (t, cpu) = (Instant::now(), process_cpu_seconds());
            black_box(top_k_batch(
                isa,
                &table,
                black_box(&queries),
                K,
                vec![Vec::new(); USERS],
            ));
            batch_ms.push(t.elapsed().as_secs_f64() * 1e3);
            cpu_ms.push((process_cpu_seconds() - cpu) * 1e3);
        }
    });
    let (ms, peak) = (median(batch_ms.clone()), median(peaks.clone()));
    let achieved = flop / (ms * 1e-3);
    println!(
        "batch {USERS} users × {N} items × H {H} ({precision:?}), top-{K}, {threads} threads, {isa}, \
         {rounds} rounds"
    );
    println!(
        "  batch: median {ms:.2} ms (min {:.2}, max {:.2}) = {:.1} GFLOP/s",
        batch_ms.iter().copied().fold(f64::INFINITY, f64::min),
        batch_ms.iter().copied().fold(0.0, f64::max),
        achieved / 1e9
    );
    println!(
        "  FMA probe on the same {threads} threads: median {:.1} GFLOP/s (min {:.1}, max {:.1})",
        peak / 1e9,
        peaks.iter().copied().fold(f64::INFINITY, f64::min) / 1e9,
        peaks.iter().copied().fold(0.0, f64::max) / 1e9
    );
    let cpu = median(cpu_ms);
    println!(
        "  CPU time per batch (all threads): median {cpu:.2} ms: {:.1}% of the peak per CPU second",
        100.0 * flop / (cpu * 1e-3) / (peak / threads as f64)
    );
    println!(
        "  fraction of the probe's peak: {:.1}% (the batch at that peak: {:.2} ms)",
        100.0 * achieved / peak,
        flop / peak * 1e3
    );
    let Some(pass) = softmax_pass_per_panel(isa, 0.2) else {
        return;
    };
    // One thread's FMA rate and the time of one 8-lane FMA (16 FLOP) at it.
    let fma = 16.0 / fma_peak_one_thread(isa, 0.2);
    let panels = N.div_ceil(16) as f64;
    let logits_fmas = (2 * H) as f64;
    let slots = pass / fma;
    let per_panel = cpu * 1e-3 / (USERS as f64 * panels);
    println!(
        "  softmax pass alone: {:.1} ns per user and panel = {slots:.1} FMA slots next to the logits' \
         {logits_fmas}: with logits at the peak the batch could reach {:.1}% of it",
        pass * 1e9,
        100.0 * logits_fmas / (logits_fmas + slots)
    );
    println!(
        "  the batch's CPU time per user and panel: {:.1} ns = the pass + {:.1} ns of logits and \
         selection ({:.1}% of the peak for those)",
        per_panel * 1e9,
        (per_panel - pass) * 1e9,
        100.0 * logits_fmas * fma / (per_panel - pass)
    );
}
