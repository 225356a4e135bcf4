//! A 256-user batch's time per user and panel of 16 items, on one thread, for a catalogue of any
//! size: `cargo run --release -p hrnn-core --example batch_catalogue -- ITEMS [USERS] [ROUNDS]`
//! (H = 43, random weights, top-25). On small catalogues each user's selection weighs more than
//! on the 100k items of `batch_peak`; compare builds by running their binaries in turn.

use std::hint::black_box;
use std::time::Instant;

use hrnn_core::engine::kernels::Isa;
use hrnn_core::engine::model::ItemTable;
use hrnn_core::engine::topk::top_k_batch;

#[path = "../benches/common/mod.rs"]
mod common;
use common::random;

const H: usize = 43;
const K: usize = 25;

fn arg(i: usize, default: Option<usize>) -> usize {
    std::env::args()
        .nth(i)
        .map(|a| a.parse().expect("a whole number"))
        .or(default)
        .expect("usage: batch_catalogue ITEMS [USERS] [ROUNDS]")
}

fn main() {
    let items = arg(1, None);
    let users = arg(2, Some(256));
    // about 2 GFLOP of logits by default
    let rounds = arg(3, Some((2_000_000_000 / (items * users * H * 2)).max(3)));
    let isa = Isa::detect();
    let table = ItemTable::new(&random(items * H, 1, 0.6), &random(items, 2, 1.0), H);
    let queries: Vec<Vec<f32>> = (0..users as u64).map(|u| random(H, 100 + u, 1.0)).collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut times = Vec::with_capacity(rounds);
    pool.install(|| {
        for _ in 0..rounds {
            let start = Instant::now();
            black_box(top_k_batch(
                isa,
                &table,
                black_box(&queries),
                K,
                vec![Vec::new(); users],
            ));
            times.push(start.elapsed().as_secs_f64());
        }
    });
    times.sort_by(f64::total_cmp);
    let per_panel = |t: f64| t / (users * items.div_ceil(16)) as f64 * 1e9;
    println!(
        "{users} users × {items} items × H {H}, top-{K}, 1 thread, {isa}, {rounds} rounds: \
         median {:.2} ns per user and panel (min {:.2})",
        per_panel(times[times.len() / 2]),
        per_panel(times[0])
    );
}
