//! Criterion micro-benchmarks of the engine's kernels at the size: H = 43, 100k items,
//! top-25. `cargo bench -p hrnn-core --bench engine`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hrnn_core::engine::blocks::CellBlock;
use hrnn_core::engine::cell::{step, time_features};
use hrnn_core::engine::kernels::Isa;
use hrnn_core::engine::model::{CellWeights, ItemTable, Precision};
use hrnn_core::engine::topk::{top_k, top_k_batch};

mod common;
use common::random;

const H: usize = 43;
const N: usize = 100_000;

fn query(seed: u64) -> Vec<f32> {
    let mut q = random(H, seed, 1.0);
    q.push(1.0);
    q
}

fn scoring(c: &mut Criterion) {
    let fp32 = ItemTable::new(&random(N * H, 1, 0.6), &random(N, 2, 1.0), H);
    let bf16 = fp32.clone().with_precision(Precision::Bf16);
    let mut group = c.benchmark_group("scoring");
    for (table, isa) in [
        (&fp32, Isa::Portable),
        (&fp32, Isa::detect()),
        (&bf16, Isa::detect()),
    ] {
        let q = query(3);
        let precision = table.precision();
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("top25_single_{precision}_{isa}"), |b| {
            b.iter(|| top_k(isa, table, black_box(&q), 25, Vec::new()))
        });
    }
    let queries: Vec<Vec<f32>> = (0..256).map(query).collect();
    group.throughput(Throughput::Elements(256));
    group.sample_size(20);
    for table in [&fp32, &bf16] {
        let precision = table.precision();
        group.bench_function(format!("top25_batch256_{precision}"), |b| {
            b.iter(|| {
                top_k_batch(
                    Isa::detect(),
                    table,
                    black_box(&queries),
                    25,
                    vec![Vec::new(); 256],
                )
            })
        });
    }
    group.finish();
}

fn cell_step(c: &mut Criterion) {
    let w = CellWeights {
        hidden: H,
        item_embedding: random(1000 * H, 4, 1.0),
        event_type_embedding: random(2 * H, 5, 1.0),
        blocks: vec![CellBlock {
            width: H,
            discount_weight: random(H * (H + 2), 6, 0.3),
            discount_bias: random(H, 7, 0.3),
            weight_ih: random(3 * H * (H + 2), 8, 0.3),
            bias_ih: random(3 * H, 10, 0.3),
            weight_hh: random(3 * H * H, 9, 0.3),
            bias_hh: random(3 * H, 11, 0.3),
        }],
        readout_weight: random(2 * H, 12, 0.3),
        readout_bias: random(H, 13, 0.3),
    };
    let mut h = vec![0.0f32; H];
    let tau = time_features(120.0, false);
    for isa in [Isa::Portable, Isa::detect()] {
        c.bench_function(&format!("cell_step_h43_{isa}"), |b| {
            b.iter(|| step(&w, isa, black_box(&mut h), 17, Some(1), tau))
        });
    }
}

criterion_group!(benches, scoring, cell_step);
criterion_main!(benches);
