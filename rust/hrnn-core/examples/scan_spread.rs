//! How a single query's scan time depends on the score distribution, next to the memory floor
//! (a plain AVX2 sum over the same table), interleaved: `cargo run --release -p hrnn-core
//! --example scan_spread` (H = 43, 100k items, top-25, one thread).

use std::hint::black_box;
use std::time::Instant;

use hrnn_core::engine::kernels::{Isa, Lanes};
use hrnn_core::engine::model::{ItemTable, TableWeights};
use hrnn_core::engine::topk::top_k;

const H: usize = 43;
const N: usize = 100_000;

fn normal(seed: u64, len: usize) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            (0..4)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .sum::<f32>()
                * 1.73
        })
        .collect()
}

/// Sum of every weight with AVX2 loads, 8 accumulators: the cost of reading the table once.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn read_floor(rows: &[Lanes]) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); 8];
    for pair in rows.chunks_exact(4) {
        for (i, row) in pair.iter().enumerate() {
            // SAFETY: a row is 16 f32, 64-byte aligned.
            unsafe {
                let p = row.0.as_ptr();
                acc[2 * i] = _mm256_add_ps(acc[2 * i], _mm256_load_ps(p));
                acc[2 * i + 1] = _mm256_add_ps(acc[2 * i + 1], _mm256_load_ps(p.add(8)));
            }
        }
    }
    let mut out = [0.0f32; 8];
    let s = acc
        .iter()
        .fold(_mm256_setzero_ps(), |a, &b| _mm256_add_ps(a, b));
    // SAFETY: 8 f32.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
    out.iter().sum()
}

fn main() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let isa = Isa::detect();
    let query: Vec<f32> = normal(9, H).iter().map(|x| x * 0.5).chain([1.0]).collect();
    let mut cases: Vec<(String, ItemTable)> = Vec::new();
    for scale in [0.01f32, 0.3, 0.05, 0.01] {
        let w: Vec<f32> = normal(1, N * H).iter().map(|x| x * scale).collect();
        let b: Vec<f32> = normal(2, N).iter().map(|x| x * 0.3).collect();
        cases.push((format!("random scale {scale}"), ItemTable::new(&w, &b, H)));
        if scale == 0.01 && cases.is_empty() {
            let mut sorted = b.clone();
            sorted.sort_by(f32::total_cmp);
            cases.push((
                format!("scale {scale}, bias ascending"),
                ItemTable::new(&w, &sorted, H),
            ));
        }
    }
    cases.push((
        "all tied (zeros)".into(),
        ItemTable::new(&vec![0.0; N * H], &vec![0.0; N], H),
    ));
    let reps = 300;
    let mut times = vec![Vec::with_capacity(reps); cases.len() + 1];
    pool.install(|| {
        for _ in 0..reps {
            for (c, (_, t)) in cases.iter().enumerate() {
                let start = Instant::now();
                black_box(top_k(isa, t, black_box(&query), 25, Vec::new()));
                times[c].push(start.elapsed().as_secs_f64());
            }
            let TableWeights::F32(rows) = &cases[0].1.weights else {
                unreachable!()
            };
            let start = Instant::now();
            // SAFETY: AVX2 is present (this probe is for x86-64 machines with it).
            black_box(unsafe { read_floor(black_box(rows)) });
            times[cases.len()].push(start.elapsed().as_secs_f64());
        }
    });
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let floor = median(&mut times[cases.len()]);
    println!("read floor (17.2 MB, AVX2 sum): {:8.1} µs", floor * 1e6);
    for (c, (name, _)) in cases.iter().enumerate() {
        let m = median(&mut times[c]);
        println!("{name:32} {:8.1} µs  {:5.2}× floor", m * 1e6, m / floor);
    }
}
