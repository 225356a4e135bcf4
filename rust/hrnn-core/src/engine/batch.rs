//! Scoring many users at once: the register-tiled scan of `engine::topk` (6 users × 16 items of
//! logits in 12 AVX2 accumulators, fused with each user's softmax denominator and a vectorized
//! compare with its current K-th best) driven over the table GEMM-style.
//!
//! - **Groups** of users are the parallel tasks (rayon), one per thread ([`group_users`]): a
//!   group scans the whole table, in **L2 blocks** of panels that every register tile of the
//!   group passes over while the block is in L2, so the table is read from memory (or L3) once
//!   per group.
//! - **Chunks**: a single query over a large catalogue scans [`CHUNK_PANELS`]-panel chunks into
//!   fresh states and merges them in order. A group restarts each user's denominator (running
//!   maximum and sum) at the same chunk boundaries and merges them the same way, so the
//!   denominators are bit for bit the single query's; its selection runs on across the chunks
//!   (merging selections in item order equals selecting over all their items — see
//!   `BoundedTopK::merge`), which spares a fresh selection per chunk and its first, all-candidate
//!   block. Each user's result is therefore its single query's, independent of the number of
//!   threads — with one theoretical exception: a block whose every logit is 40 below the running
//!   maximum is skipped when none of it can enter the selection, and a single query's fresh
//!   chunk selection may still take (and so sum) such a block; the terms skipped are below e^-40
//!   of the largest.

use std::ops::Range;

use rayon::prelude::*;

use super::kernels::Isa;
use super::model::ItemTable;
use super::topk::{
    scan, single_query_is_parallel, ScanState, TopK, BLOCK_PANELS, CHUNK_PANELS, TILE_USERS,
};

/// Bytes of the item table one L2 block takes (half the 512 KiB L2 of a Zen 3 or Skylake core;
/// the rest holds the tiles' logits, the queries and the states).
const BLOCK_BYTES: usize = 256 * 1024;

/// The users of a batch of `users` on `threads` threads, cut into one group per thread (fewer
/// when there are fewer than a tile's users per thread), the sizes differing by at most one.
/// Tiles of a group share each L2 block, so the fewer the groups, the fewer times the table is
/// read from memory, and the threads share one memory bus: on the 2-core Zen 3 VM, 256 users ×
/// 100k items on 2 threads ran at 39–44% of the FMA peak in groups of 132 users (the table read
/// twice) against 36–38% in the earlier fixed groups of 48 (read six times; 8 interleaved runs
/// each of `examples/batch_peak`), and alike on one thread. Equal groups (128 + 128 rather than
/// whole tiles, 132 + 124) take 3% off the slower thread's work; see [`tiles`] for the cost of the
/// smaller tiles this leaves (their effect on the whole batch stayed inside the shared machine's
/// noise over 8 interleaved runs).
fn groups(users: usize, threads: usize) -> Vec<Range<usize>> {
    let n = threads.min(users.div_ceil(TILE_USERS)).max(1);
    let (size, longer) = (users / n, users % n);
    let mut start = 0;
    (0..n)
        .map(|g| {
            let end = start + size + usize::from(g < longer);
            let range = start..end;
            start = end;
            range
        })
        .collect()
}

/// The register tiles a group of `users` is scanned in: full tiles of [`TILE_USERS`], and a
/// remainder of 1 or 2 users merged with one full tile into two tiles of 3–4 (a tile of 1 or 2
/// users loads its table rows for too few multiply-adds). Per user and panel of an L2-resident
/// table, with the softmax pass, a tile of 4 took 18.6–19.6 ns and one of 6 19.8–21.3 ns (minima
/// of 7 runs, three times over), one of 2 20.3–21.5 ns and one of 1 36–37 ns.
fn tiles(users: usize) -> Vec<usize> {
    let (full, rest) = (users / TILE_USERS, users % TILE_USERS);
    let mut sizes = vec![TILE_USERS; full];
    match rest {
        0 => {}
        1 | 2 if full > 0 => {
            sizes.pop();
            let merged = TILE_USERS + rest;
            sizes.extend([merged.div_ceil(2), merged / 2]);
        }
        _ => sizes.push(rest),
    }
    sizes
}

/// The catalogue's chunks, as a single query scans them (one chunk when it is not parallel).
fn chunks(num_panels: usize) -> Vec<Range<usize>> {
    let chunk = if single_query_is_parallel(num_panels) {
        CHUNK_PANELS
    } else {
        num_panels.max(1)
    };
    (0..num_panels)
        .step_by(chunk)
        .map(|start| start..(start + CHUNK_PANELS).min(num_panels))
        .collect()
}

/// Scans `panels` for a group of users (their queries and states), L2 block by L2 block, one
/// register tile of users after another.
fn scan_group(
    isa: Isa,
    table: &ItemTable,
    queries: &[Vec<f32>],
    panels: Range<usize>,
    states: &mut [ScanState],
) {
    // A whole number of the kernels' absorption blocks, so blocks start where a single query's do.
    let block = (BLOCK_BYTES / table.panel_bytes() / BLOCK_PANELS).max(1) * BLOCK_PANELS;
    let sizes = tiles(queries.len());
    for start in panels.clone().step_by(block) {
        let block = start..(start + block).min(panels.end);
        let mut first = 0;
        for &size in &sizes {
            let users = first..first + size;
            first += size;
            let (states, queries) = (&mut states[users.clone()], &queries[users]);
            let mut tile: [&[f32]; TILE_USERS] = [&[]; TILE_USERS];
            for (t, q) in tile.iter_mut().zip(queries) {
                *t = q;
            }
            scan(isa, table, &tile[..queries.len()], block.clone(), states);
        }
    }
}

/// `state`'s softmax denominator (running maximum and sum) with no selection, for merging.
fn denominator(state: &ScanState) -> ScanState {
    let mut d = ScanState::new(TopK::new(0, Vec::new()));
    (d.max, d.total) = (state.max, state.total);
    d
}

/// The top-`k` of a group of users over the whole table, each as its single query computes it.
///
/// A single query over several chunks scans each into a fresh state and merges them in order.
/// Here each user's selection runs on across the chunks (a merge of selections in order is the
/// selection of all their items, and a selection that starts from the previous chunks' K-th
/// best offers far fewer candidates than a fresh one), while its denominator restarts at each
/// chunk and the chunks' denominators are merged exactly as a single query merges them.
fn top_k_group(
    isa: Isa,
    table: &ItemTable,
    queries: &[Vec<f32>],
    k: usize,
    excludes: &[Vec<u32>],
) -> Vec<Vec<(u32, f32)>> {
    let chunks = chunks(table.num_panels());
    let mut states: Vec<ScanState> = excludes
        .iter()
        .map(|e| ScanState::new(TopK::new(k, e.clone())))
        .collect();
    let mut denominators: Vec<Vec<ScanState>> = states.iter().map(|_| Vec::new()).collect();
    for panels in &chunks {
        scan_group(isa, table, queries, panels.clone(), &mut states);
        if chunks.len() > 1 {
            for (state, d) in states.iter_mut().zip(&mut denominators) {
                d.push(denominator(state));
                (state.max, state.total) = (f32::NEG_INFINITY, 0.0);
            }
        }
    }
    states
        .into_iter()
        .zip(denominators)
        .map(|(mut state, d)| {
            if chunks.len() > 1 {
                let fresh = ScanState::new(TopK::new(0, Vec::new()));
                let merged = d.into_iter().fold(fresh, ScanState::merge);
                (state.max, state.total) = (merged.max, merged.total);
            }
            state.finish()
        })
        .collect()
}

/// Top-`k` for many queries (`queries[u]` starts with `o`), in parallel over groups of users;
/// `excludes[u]` is user `u`'s sorted exclusion list. Each result equals
/// [`super::topk::top_k`] of the user's query.
pub fn top_k_batch(
    isa: Isa,
    table: &ItemTable,
    queries: &[Vec<f32>],
    k: usize,
    excludes: Vec<Vec<u32>>,
) -> Vec<Vec<(u32, f32)>> {
    assert_eq!(queries.len(), excludes.len());
    assert!(queries.iter().all(|q| q.len() >= table.hidden));
    groups(queries.len(), rayon::current_num_threads())
        .into_par_iter()
        .with_max_len(1)
        .flat_map_iter(|users| {
            top_k_group(isa, table, &queries[users.clone()], k, &excludes[users])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::PANEL;
    use crate::engine::model::Precision;
    use crate::engine::test_fixtures::lcg_int;
    use crate::engine::topk::top_k;
    use proptest::prelude::*;

    /// A table with dyadic weights, biases and queries (every logit exact in f32 whatever the
    /// summation order) whose biases take few values, so logits tie often.
    fn dyadic(n: usize, h: usize, users: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<Vec<f32>>) {
        let mut s = seed;
        let mut int = |r: i64| lcg_int(&mut s, r);
        let w: Vec<f32> = (0..n * h).map(|_| int(4) as f32 / 8.0).collect();
        let b: Vec<f32> = (0..n).map(|_| int(2) as f32).collect();
        let queries = (0..users)
            .map(|_| (0..h).map(|_| int(2) as f32 / 4.0).chain([1.0]).collect())
            .collect();
        (w, b, queries)
    }

    /// The obviously-correct answer: every logit in f64 (exact here), softmax in f64, a stable
    /// sort (ties: lower item first), the exclusions dropped.
    fn reference(
        t: &ItemTable,
        w: &[f32],
        b: &[f32],
        query: &[f32],
        k: usize,
        exclude: &[u32],
    ) -> Vec<(u32, f64)> {
        let h = t.hidden;
        let logits: Vec<f64> = (0..t.num_items)
            .map(|j| {
                f64::from(b[j])
                    + (0..h)
                        .map(|d| f64::from(w[j * h + d]) * f64::from(query[d]))
                        .sum::<f64>()
            })
            .collect();
        let m = logits.iter().fold(f64::NEG_INFINITY, |a, &x| a.max(x));
        let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
        let mut order: Vec<u32> = (0..t.num_items as u32)
            .filter(|j| exclude.binary_search(j).is_err())
            .collect();
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        order
            .into_iter()
            .take(k)
            .map(|j| (j, (logits[j as usize] - m).exp() / z))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Awkward sizes (items not a multiple of the panel or the block, H not a multiple of 8,
        /// users not a multiple of the tile or the group), ties and exclusions: the batch equals
        /// each user's single query bit for bit, and a scalar f64 reference in items and scores.
        #[test]
        fn batch_equals_single_queries_and_a_scalar_reference(
            n in 1usize..1500, h in 1usize..20, users in 1usize..40, k in 1usize..40,
            seed in 0u64..1000, excl in proptest::collection::vec(0u32..2500, 0..30),
            bf16 in proptest::bool::ANY,
        ) {
            // Dyadic weights of at most 4 bits are exact in bf16 too.
            let (w, b, queries) = dyadic(n, h, users, seed);
            let t = ItemTable::new(&w, &b, h);
            let t = if bf16 { t.with_precision(Precision::Bf16) } else { t };
            let excludes: Vec<Vec<u32>> = (0..users)
                .map(|u| {
                    let mut e: Vec<u32> = excl.iter().skip(u % 3).step_by(1 + u % 2).copied()
                        .filter(|&j| (j as usize) < n).collect();
                    e.sort_unstable();
                    e.dedup();
                    e
                })
                .collect();
            for isa in [Isa::Portable, Isa::detect()] {
                let batch = top_k_batch(isa, &t, &queries, k, excludes.clone());
                prop_assert_eq!(batch.len(), users);
                for ((got, q), e) in batch.iter().zip(&queries).zip(&excludes) {
                    prop_assert_eq!(got, &top_k(isa, &t, q, k, e.clone()));
                    let want = reference(&t, &w, &b, q, k, e);
                    prop_assert_eq!(
                        got.iter().map(|g| g.0).collect::<Vec<_>>(),
                        want.iter().map(|w| w.0).collect::<Vec<_>>()
                    );
                    for (&(_, g), &(_, w)) in got.iter().zip(&want) {
                        prop_assert!((f64::from(g) - w).abs() <= 2e-6 * w + 1e-30, "{} vs {}", g, w);
                    }
                }
            }
        }
    }

    #[test]
    fn a_batch_is_cut_into_one_equal_group_per_thread() {
        let sizes = |users, threads| -> Vec<usize> {
            let g = groups(users, threads);
            assert_eq!(g.first().map_or(0, |r| r.start), 0);
            assert!(g.windows(2).all(|w| w[0].end == w[1].start));
            assert_eq!(g.last().map_or(0, |r| r.end), users);
            g.iter().map(|r| r.len()).collect()
        };
        assert_eq!(sizes(256, 2), [128, 128]);
        assert_eq!(sizes(256, 1), [256]);
        assert_eq!(sizes(1000, 3), [334, 333, 333]);
        assert_eq!(sizes(7, 4), [4, 3]);
        assert_eq!(sizes(5, 4), [5]);
        assert_eq!(sizes(0, 2), [0]);
        assert_eq!(sizes(5, 0), [5]);
    }

    #[test]
    fn a_group_is_scanned_in_full_tiles_and_no_tile_of_one_or_two_beside_them() {
        assert_eq!(
            tiles(128),
            [6; 20].into_iter().chain([4, 4]).collect::<Vec<_>>()
        );
        assert_eq!(tiles(12), [6, 6]);
        assert_eq!(tiles(13), [6, 4, 3]);
        assert_eq!(tiles(9), [6, 3]);
        assert_eq!(tiles(2), [2]);
        assert_eq!(tiles(0), Vec::<usize>::new());
        for users in 0..100 {
            let t = tiles(users);
            assert_eq!(t.iter().sum::<usize>(), users);
            assert!(t.iter().all(|&s| (1..=TILE_USERS).contains(&s)));
            assert!(users < TILE_USERS || t.iter().all(|&s| s >= 3));
        }
    }

    /// A catalogue of several chunks (parallel single queries, a partial last chunk) at H = 43:
    /// the batch equals single queries bit for bit, on 1 and 3 threads alike.
    #[test]
    fn a_batch_over_several_chunks_equals_single_queries() {
        let n = CHUNK_PANELS * PANEL * 2 + 5 * PANEL + 3;
        let (w, b, queries) = dyadic(n, 43, 14, 5);
        let t = ItemTable::new(&w, &b, 43);
        let excludes: Vec<Vec<u32>> = (0..14u32)
            .map(|u| (0..u * 7).map(|j| j * 977).collect())
            .collect();
        let single: Vec<_> = queries
            .iter()
            .zip(&excludes)
            .map(|(q, e)| top_k(Isa::detect(), &t, q, 30, e.clone()))
            .collect();
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for isa in [Isa::Portable, Isa::detect()] {
                let batch = pool.install(|| top_k_batch(isa, &t, &queries, 30, excludes.clone()));
                if isa == Isa::detect() {
                    assert_eq!(batch, single);
                }
                for (b, (q, e)) in batch.iter().zip(queries.iter().zip(&excludes)) {
                    assert_eq!(b, &top_k(isa, &t, q, 30, e.clone()));
                }
            }
        }
    }
}
