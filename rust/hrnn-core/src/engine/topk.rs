//! Fused scoring: one pass over the item table computes each item's logit, folds it into a running
//! log-sum-exp (the softmax denominator) and offers it to a bounded top-K — no score vector, no
//! sort of the catalogue.
//!
//! The AVX2 kernel (`kernels_x86`) works block by block ([`BLOCK_PANELS`] panels of 16 items): the
//! block's logits from `H` broadcast-multiply-adds onto the biases go to a 2 KB buffer that stays
//! in L1, and the block's maximum from the tiles' registers; then one branch-free pass over the
//! buffer adds every `exp(logit − running max)` into four f32 registers (flushed to f64 once per
//! block; the running max is raised, and the total rescaled, at most once per block). Only a
//! block whose maximum beats the current K-th best also compares its logits with it (one
//! vectorized compare + movemask per 8 lanes) and goes to [`TopK::offer_block`], which keeps at
//! most the block's best K. So the work per item hardly depends on the score distribution: every
//! item costs the same multiply-adds and exponential; flat, peaked, tied or sorted scores differ
//! only in how many blocks hold a candidate.
//! The portable kernel absorbs panel by panel.
//!
//! Register tiles: a single query scores 4 panels at once (8 independent accumulator chains, so
//! the FMA latency is hidden and the loop runs at memory speed); a batch (`engine::batch`) scores
//! 6 users × 1 panel (each loaded row feeds 6 users from registers) over L2-sized blocks of panels.

use std::ops::Range;

use rayon::prelude::*;

use super::kernels::{exp_lanes, lane_max, Isa, Lanes, MulAdd, Row, Unfused, PANEL};
use super::model::{ItemTable, TableWeights};
use crate::top_k::BoundedTopK;

pub use super::batch::top_k_batch;

/// Exponentials of logits more than this below the running maximum are not summed: each is below
/// e^-40 ≈ 4e-18, so even 2^32 of them move the denominator by less than 2e-8 relative.
pub(super) const NEGLIGIBLE: f32 = 40.0;

/// Panels whose logits the AVX2 kernel computes into an L1-resident buffer before absorbing them
/// (512 items, 2 KB per query). Blocks start at multiples of this panel index — chunks of a single
/// query and blocks of a batch are whole multiples of it — so a single query and a batch absorb
/// exactly the same blocks and get bit-identical results.
pub(super) const BLOCK_PANELS: usize = 32;

/// Most users one call of [`scan`] takes (the batch register tile).
pub const TILE_USERS: usize = 6;

/// A bounded top-K with an exclusion list: the shared selection ([`BoundedTopK`]) plus the items
/// a query may not return.
pub struct TopK {
    best: BoundedTopK<f32>,
    /// Sorted item indices that may not be returned.
    exclude: Vec<u32>,
    /// Scratch for [`TopK::offer_block`] (`(logit, item)`), kept to reuse its allocation.
    candidates: Vec<(f32, u32)>,
}

impl TopK {
    /// A top-`k` that skips the (sorted, deduplicated) items in `exclude`.
    pub fn new(k: usize, exclude: Vec<u32>) -> Self {
        debug_assert!(exclude.windows(2).all(|w| w[0] < w[1]));
        Self {
            best: BoundedTopK::new(k),
            exclude,
            // a first block offers some 2K candidates (K = 25: ~46 of 512)
            candidates: Vec::with_capacity(2 * k + PANEL),
        }
    }

    /// A logit must be strictly above this to enter.
    #[inline(always)]
    pub(super) fn threshold(&self) -> f32 {
        self.best.threshold()
    }

    /// The `k` of this top-K.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) fn k(&self) -> usize {
        self.best.k()
    }

    /// How many items of `items` are excluded.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) fn excluded_in(&self, items: Range<usize>) -> usize {
        let below = |end: usize| self.exclude.partition_point(|&e| (e as usize) < end);
        below(items.end) - below(items.start)
    }

    #[inline(never)]
    pub(super) fn offer_panel(&mut self, p: usize, logits: &[f32; PANEL], num_items: usize) {
        for (l, &logit) in logits.iter().enumerate() {
            let item = p * PANEL + l;
            if item < num_items {
                self.offer(logit, item as u32);
            }
        }
    }

    /// Offers the items of panels `first..first + logits.len()` whose bit is set in `above` (bit
    /// `l` of `above[i]`: lane `l` of panel `first + i` beat the threshold). When more than `k`
    /// do (early blocks, or a catalogue sorted by increasing score), only the block's best `k`
    /// reach the heap, so a block costs O(candidates + k log k) whatever the order.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    #[inline(never)]
    pub(super) fn offer_block(
        &mut self,
        first: usize,
        logits: &[Lanes],
        above: &[u16],
        num_items: usize,
    ) {
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        // The panels holding a candidate, one bit each: most blocks past the first hold one or two.
        debug_assert!(above.len() <= 64);
        let mut panels = above
            .iter()
            .enumerate()
            .fold(0u64, |m, (i, &bits)| m | u64::from(bits != 0) << i);
        while panels != 0 {
            let i = panels.trailing_zeros() as usize;
            panels &= panels - 1;
            let (row, mut bits) = (&logits[i], above[i]);
            while bits != 0 {
                let l = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let item = (first + i) * PANEL + l;
                if item < num_items {
                    candidates.push((row.0[l], item as u32));
                }
            }
        }
        let k = self.best.k();
        if candidates.len() > k {
            candidates.retain(|e| self.exclude.binary_search(&e.1).is_err());
            if candidates.len() > k {
                // best first: the higher logit, on ties the lower item (the heap's order)
                candidates
                    .select_nth_unstable_by(k, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                candidates.truncate(k);
                if self.best.is_empty() {
                    // nothing kept yet (every earlier item was excluded or could not enter):
                    // these are the best K so far, and need no order to enter
                    self.best.start_with(candidates.drain(..));
                    self.candidates = candidates;
                    return;
                }
                // offered in item order, as a scan would: among equal logits the lower item
                // enters first, and a later equal one cannot push it out
                candidates.sort_unstable_by_key(|c| c.1);
            }
        }
        for &(logit, item) in &candidates {
            self.offer(logit, item);
        }
        self.candidates = candidates;
    }

    /// Offers one candidate (kept when it beats the current K-th best and is not excluded).
    #[inline]
    fn offer(&mut self, logit: f32, item: u32) {
        if logit > self.best.threshold() && self.exclude.binary_search(&item).is_err() {
            self.best.offer(logit, item);
        }
    }
}

/// The running state of one query's scan: the running maximum logit, `Σ exp(logit − max)` over
/// the items scanned so far, and the top-K.
pub struct ScanState {
    pub(super) max: f32,
    pub(super) total: f64,
    pub(super) top: TopK,
}

impl ScanState {
    /// A fresh scan feeding `top`.
    pub fn new(top: TopK) -> Self {
        Self {
            max: f32::NEG_INFINITY,
            total: 0.0,
            top,
        }
    }

    /// Raises the running maximum to `max` when it is higher, rescaling what was summed against
    /// the old one.
    #[inline(always)]
    pub(super) fn raise_max(&mut self, max: f32) {
        if max > self.max {
            self.total *= if self.max == f32::NEG_INFINITY {
                0.0
            } else {
                f64::from(self.max - max).exp()
            };
            self.max = max;
        }
    }

    /// Portable version of the per-panel update (the AVX2 one lives in `kernels_x86`).
    #[inline(always)]
    fn absorb<M: MulAdd>(&mut self, p: usize, logits: &[f32; PANEL], num_items: usize) {
        let panel_max = lane_max(logits);
        self.raise_max(panel_max);
        if panel_max > self.max - NEGLIGIBLE {
            let e = exp_lanes::<M>(logits, self.max);
            self.total += e.iter().map(|&x| f64::from(x)).sum::<f64>();
        }
        if panel_max > self.top.threshold() {
            self.top.offer_panel(p, logits, num_items);
        }
    }

    /// The state of a scan over this state's items followed by `other`'s (disjoint) items.
    pub fn merge(mut self, other: ScanState) -> ScanState {
        let max = self.max.max(other.max);
        let rescaled = |m: f32, total: f64| {
            if m == f32::NEG_INFINITY {
                0.0
            } else {
                total * (f64::from(m) - f64::from(max)).exp()
            }
        };
        self.total = rescaled(self.max, self.total) + rescaled(other.max, other.total);
        self.max = max;
        self.top.best.merge(other.top.best);
        self
    }

    /// `ln Σ_j exp(logit_j)` over the scanned items.
    pub fn log_normalizer(&self) -> f64 {
        f64::from(self.max) + self.total.ln()
    }

    /// The top-K as `(item, softmax score)`, best first (ties: lower item index first).
    pub fn finish(self) -> Vec<(u32, f32)> {
        let log_z = self.log_normalizer();
        self.top
            .best
            .into_sorted()
            .into_iter()
            .map(|(item, logit)| (item, (f64::from(logit) - log_z).exp() as f32))
            .collect()
    }
}

/// Portable scan: per panel, each user's 16 logits (bias, then `d = 0, 1, …`, unfused — the
/// order of [`ItemTable::logit`]) and their absorption.
fn scan_portable<R: Row>(
    rows: &[R],
    table: &ItemTable,
    queries: &[&[f32]],
    panels: Range<usize>,
    states: &mut [ScanState],
) {
    let h = table.hidden;
    for p in panels {
        let panel = &rows[p * h..(p + 1) * h];
        for (state, query) in states.iter_mut().zip(queries) {
            let mut acc = table.bias[p].0;
            for (row, &q) in panel.iter().zip(&query[..h]) {
                let w = row.to_f32();
                for (a, w) in acc.iter_mut().zip(w) {
                    *a = Unfused::mul_add(w, q, *a);
                }
            }
            state.absorb::<Unfused>(p, &acc, table.num_items);
        }
    }
}

/// Scans `panels` of `table` for up to [`TILE_USERS`] queries at once (each query's first `H`
/// values are `o`), updating `states` (one per query).
pub fn scan(
    isa: Isa,
    table: &ItemTable,
    queries: &[&[f32]],
    panels: Range<usize>,
    states: &mut [ScanState],
) {
    assert!(queries.len() == states.len() && queries.len() <= TILE_USERS);
    assert!(queries.iter().all(|q| q.len() >= table.hidden));
    assert!(panels.end <= table.num_panels());
    match (isa, &table.weights) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2Fma` is only chosen after `is_x86_feature_detected!` confirmed both.
        (Isa::Avx2Fma, _) => unsafe { super::kernels_x86::scan(table, queries, panels, states) },
        (_, TableWeights::F32(rows)) => scan_portable(rows, table, queries, panels, states),
        (_, TableWeights::Bf16(rows)) => scan_portable(rows, table, queries, panels, states),
    }
}

/// Panels one task of a single query's scan covers (32k items; 5.6 MB of f32 table at H = 43):
/// a large catalogue is scanned in chunks of this size in parallel and the chunk states merged in
/// chunk order, so the result does not depend on the number of threads.
pub(super) const CHUNK_PANELS: usize = 2048;

/// Whether one query's scan of a table of `num_panels` panels runs in parallel (otherwise it stays
/// on the calling thread, and a caller may skip handing it to a thread pool).
pub fn single_query_is_parallel(num_panels: usize) -> bool {
    num_panels > CHUNK_PANELS
}

/// Whether handing one query's chunked scan to a pool of `threads` pays: the busiest thread's
/// chunks (dealt out largest first to the least loaded thread) must leave at least one whole chunk
/// of the scan to the others. Otherwise the caller runs the chunks in turn on its own thread
/// ([`crate::threads::sequential`], the same result), sparing the hand-off: waking a pool thread
/// costs about as much as scanning 1,000 panels on the 2-core Zen 3 VM this was measured on, and
/// two threads share one memory bus, so a 34k-item catalogue (chunks of 2,048 and 77 panels) was
/// slower on 2 threads than on 1 (180 against 115 µs), 50k (2,048 + 1,077) too (260 against
/// 215 µs), and 100k (3 × 2,048 + 106) about even.
pub fn single_query_fans_out(num_panels: usize, threads: usize) -> bool {
    if !single_query_is_parallel(num_panels) || threads < 2 {
        return false;
    }
    let mut load = vec![0usize; threads.min(num_panels.div_ceil(CHUNK_PANELS))];
    // chunks are all full but the last, so "largest first" is chunk order
    for start in (0..num_panels).step_by(CHUNK_PANELS) {
        let size = CHUNK_PANELS.min(num_panels - start);
        *load.iter_mut().min().expect("at least two threads") += size;
    }
    let busiest = load.iter().copied().max().unwrap_or(0);
    busiest + CHUNK_PANELS <= num_panels
}

/// One query's scan of the whole table into `state` (in parallel chunks for large tables).
fn scan_all(isa: Isa, table: &ItemTable, query: &[f32], state: ScanState) -> ScanState {
    let num_panels = table.num_panels();
    if !single_query_is_parallel(num_panels) {
        let mut state = [state];
        scan(isa, table, &[query], 0..num_panels, &mut state);
        let [state] = state;
        return state;
    }
    let chunks = num_panels.div_ceil(CHUNK_PANELS);
    let fresh = || ScanState::new(TopK::new(state.top.best.k(), state.top.exclude.clone()));
    let chunk = |c: usize| {
        let mut s = [fresh()];
        let panels = c * CHUNK_PANELS..((c + 1) * CHUNK_PANELS).min(num_panels);
        scan(isa, table, &[query], panels, &mut s);
        let [s] = s;
        s
    };
    // the same chunks merged in the same order either way: the result does not depend on it
    let states: Vec<ScanState> = if crate::threads::is_sequential() {
        (0..chunks).map(chunk).collect()
    } else {
        (0..chunks).into_par_iter().map(chunk).collect()
    };
    states.into_iter().fold(state, ScanState::merge)
}

/// The top-`k` items for one query `o`, with softmax scores over the whole catalogue.
pub fn top_k(
    isa: Isa,
    table: &ItemTable,
    query: &[f32],
    k: usize,
    exclude: Vec<u32>,
) -> Vec<(u32, f32)> {
    scan_all(isa, table, query, ScanState::new(TopK::new(k, exclude))).finish()
}

/// `ln Σ_j exp(logit_j)` for one query (no top-K).
pub fn log_normalizer(isa: Isa, table: &ItemTable, query: &[f32]) -> f64 {
    scan_all(isa, table, query, ScanState::new(TopK::new(0, Vec::new()))).log_normalizer()
}

/// The logit of item `j` for `query` (see [`ItemTable::logit`]).
pub fn logit(table: &ItemTable, query: &[f32], j: u32) -> f32 {
    table.logit(query, j)
}

/// Every item's softmax score for one query (allocates `N` floats: for inspection and tests).
pub fn full_scores(isa: Isa, table: &ItemTable, query: &[f32]) -> Vec<f32> {
    let log_z = log_normalizer(isa, table, query);
    (0..table.num_items as u32)
        .map(|j| (f64::from(logit(table, query, j)) - log_z).exp() as f32)
        .collect()
}

/// Reads every weight of the table once and returns a meaningless sum: with the AVX2 kernel's
/// loads, the memory floor of one query's scan on this machine (for benchmarks: report a scan's
/// time as a multiple of this one, measured on the same table in the same run).
pub fn read_floor(isa: Isa, table: &ItemTable) -> f32 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2Fma` is only chosen after `is_x86_feature_detected!` confirmed both.
        Isa::Avx2Fma => unsafe { super::kernels_x86::read_floor(table) },
        _ => match &table.weights {
            TableWeights::F32(rows) => rows.iter().flat_map(|r| r.0).sum(),
            TableWeights::Bf16(rows) => rows.iter().flat_map(|r| r.to_f32()).sum(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::Precision;
    use crate::engine::test_fixtures::{lcg, lcg_int};
    use proptest::prelude::*;

    #[test]
    fn a_single_query_fans_out_only_when_others_take_a_whole_chunk_of_it() {
        let c = CHUNK_PANELS;
        // one chunk, or one thread: never
        assert!(!single_query_fans_out(c, 8));
        assert!(!single_query_fans_out(10 * c, 1));
        // a full chunk and a small one: the busiest thread holds almost everything
        assert!(!single_query_fans_out(c + 77, 2));
        assert!(!single_query_fans_out(2 * c - 1, 2));
        // two full chunks on two threads: the other thread takes a whole chunk
        assert!(single_query_fans_out(2 * c, 2));
        // three full chunks and a bit: on 2 threads one holds 2c, the other c + bit
        assert!(single_query_fans_out(3 * c + 106, 2));
        assert!(single_query_fans_out(3 * c + 106, 4));
        assert!(single_query_fans_out(12 * c + 424, 2));
    }

    fn table(n: usize, h: usize, seed: u64) -> ItemTable {
        let mut s = seed;
        let mut next = || lcg(&mut s) * 4.0;
        let w: Vec<f32> = (0..n * h).map(|_| next()).collect();
        // Quantized biases create ties, to exercise the tie rule.
        let b: Vec<f32> = (0..n).map(|_| (next() * 2.0).round()).collect();
        ItemTable::new(&w, &b, h)
    }

    /// Full softmax in f64, then a stable sort: the obviously-correct answer.
    fn by_full_sort(
        t: &ItemTable,
        query: &[f32],
        k: usize,
        exclude: &[u32],
    ) -> (Vec<(u32, f64)>, Vec<f32>) {
        let logits: Vec<f32> = (0..t.num_items as u32)
            .map(|j| logit(t, query, j))
            .collect();
        let m = logits
            .iter()
            .fold(f64::NEG_INFINITY, |a, &b| a.max(f64::from(b)));
        let z: f64 = logits.iter().map(|&l| (f64::from(l) - m).exp()).sum();
        let mut order: Vec<u32> = (0..t.num_items as u32)
            .filter(|j| !exclude.contains(j))
            .collect();
        order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        let top = order
            .iter()
            .take(k)
            .map(|&j| (j, (f64::from(logits[j as usize]) - m).exp() / z))
            .collect();
        (top, logits)
    }

    #[test]
    fn a_large_catalogue_scanned_in_parallel_chunks_equals_a_full_sort() {
        // 2.4 chunks: parallel chunks, a partial last chunk, exclusions in several chunks.
        let n = CHUNK_PANELS * PANEL * 12 / 5 + 7;
        let h = 5;
        let t = table(n, h, 3);
        let query: Vec<f32> = (0..h).map(|i| (i as f32 * 0.9).cos()).collect();
        let (all, _) = by_full_sort(&t, &query, 60, &[]);
        let exclude: Vec<u32> = {
            let mut e: Vec<u32> = all.iter().step_by(3).map(|&(j, _)| j).collect();
            e.sort_unstable();
            e
        };
        let (want, _) = by_full_sort(&t, &query, 30, &exclude);
        let log_z_want = {
            let logits: Vec<f64> = (0..n as u32)
                .map(|j| f64::from(logit(&t, &query, j)))
                .collect();
            let m = logits.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            m + logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln()
        };
        for isa in [Isa::Portable, Isa::detect()] {
            let got = top_k(isa, &t, &query, 30, exclude.clone());
            assert_eq!(
                got.iter().map(|g| g.0).collect::<Vec<_>>(),
                want.iter().map(|w| w.0).collect::<Vec<_>>()
            );
            for ((_, g), (_, w)) in got.iter().zip(&want) {
                assert!((f64::from(*g) - w).abs() <= 1e-5 * w, "{g} vs {w}");
            }
            assert!((log_normalizer(isa, &t, &query) - log_z_want).abs() < 1e-5);
            // The same answer, bit for bit, on a single thread.
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            assert_eq!(
                pool.install(|| top_k(isa, &t, &query, 30, exclude.clone())),
                got
            );
            // And on the calling thread, the chunks in turn.
            let here = crate::threads::sequential(|| {
                assert!(crate::threads::is_sequential());
                top_k(isa, &t, &query, 30, exclude.clone())
            });
            assert!(!crate::threads::is_sequential());
            assert_eq!(here, got);
        }
    }

    /// A table whose logits are exact in f32 whatever the summation order (small dyadic weights,
    /// biases and query values), so the kernels must match a naive f64 reference exactly.
    /// `shape`: 0 flat (tiny weights, no bias), 1 peaked (logits spread over hundreds), 2 tied
    /// (three distinct logits), 3 sorted (bias rising with the item index).
    fn dyadic_case(n: usize, h: usize, shape: u8, seed: u64) -> (ItemTable, Vec<f32>, Vec<f64>) {
        let mut s = seed;
        let mut int = |r: i64| lcg_int(&mut s, r);
        let (w, b): (Vec<f32>, Vec<f32>) = match shape {
            0 => (
                (0..n * h).map(|_| int(2) as f32 / 1024.0).collect(),
                vec![0.0; n],
            ),
            1 => (
                (0..n * h).map(|_| int(8) as f32 / 4.0).collect(),
                (0..n).map(|_| int(64) as f32).collect(),
            ),
            2 => (vec![0.0; n * h], (0..n).map(|_| int(1) as f32).collect()),
            _ => (
                (0..n * h).map(|_| int(1) as f32 / 256.0).collect(),
                (0..n).map(|j| j as f32 / 64.0).collect(),
            ),
        };
        let query: Vec<f32> = (0..h).map(|_| int(4) as f32 / 4.0).chain([1.0]).collect();
        let logits = (0..n)
            .map(|j| {
                let row = w[j * h..(j + 1) * h].iter().zip(&query);
                f64::from(b[j]) + row.map(|(&w, &q)| f64::from(w) * f64::from(q)).sum::<f64>()
            })
            .collect();
        (ItemTable::new(&w, &b, h), query, logits)
    }

    proptest! {
        #[test]
        fn blocked_kernel_equals_a_naive_reference_on_flat_peaked_tied_and_sorted_scores(
            n in 1usize..3000, h in 1usize..20, k in 1usize..60, shape in 0u8..4, seed in 0u64..1000,
            excl in proptest::collection::vec(0u32..3000, 0..40)
        ) {
            let (t, query, logits) = dyadic_case(n, h, shape, seed);
            let mut exclude: Vec<u32> = excl.into_iter().filter(|&j| (j as usize) < n).collect();
            exclude.sort_unstable();
            exclude.dedup();
            let m = logits.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            let log_z = m + logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
            let mut order: Vec<u32> = (0..n as u32).filter(|j| exclude.binary_search(j).is_err()).collect();
            // Best first; ties: lower item index first (a stable sort keeps index order).
            order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
            order.truncate(k);
            for isa in [Isa::Portable, Isa::detect()] {
                let got = top_k(isa, &t, &query, k, exclude.clone());
                prop_assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), order.clone());
                for &(j, score) in &got {
                    let want = (logits[j as usize] - log_z).exp();
                    prop_assert!((f64::from(score) - want).abs() <= 2e-6 * want + 1e-30, "{} vs {}", score, want);
                }
                let got_z = log_normalizer(isa, &t, &query);
                prop_assert!((got_z - log_z).abs() <= 2e-6 * log_z.abs().max(1.0), "{} vs {}", got_z, log_z);
            }
        }

        #[test]
        fn top_k_is_the_prefix_of_a_full_sort(
            n in 1usize..200, h in 1usize..12, k in 1usize..40, seed in 0u64..1000, excl in proptest::collection::vec(0u32..200, 0..20)
        ) {
            let t = table(n, h, seed);
            let query: Vec<f32> = (0..h).map(|i| ((i as f32 + seed as f32) * 0.7).sin()).chain([1.0]).collect();
            let mut exclude: Vec<u32> = excl.into_iter().filter(|&j| (j as usize) < n).collect();
            exclude.sort_unstable();
            exclude.dedup();
            let (want, logits) = by_full_sort(&t, &query, k, &exclude);
            for isa in [Isa::Portable, Isa::detect()] {
                let got = top_k(isa, &t, &query, k, exclude.clone());
                prop_assert_eq!(got.len(), want.len());
                for ((gj, gs), (wj, ws)) in got.iter().zip(&want) {
                    // Same item, or an exact tie in logits computed with a different summation order.
                    let same = gj == wj || (logits[*gj as usize] - logits[*wj as usize]).abs() < 1e-5;
                    prop_assert!(same, "item {} vs {}", gj, wj);
                    prop_assert!((f64::from(*gs) - ws).abs() <= 1e-5 * ws.max(1e-30) + 1e-7, "{} vs {}", gs, ws);
                }
            }
            // Batches of every tile shape (1–6 users per tile, remainders) equal single queries.
            let users = 1 + (seed as usize % 14);
            let queries: Vec<Vec<f32>> = (0..users)
                .map(|u| query.iter().map(|&x| x * (1.0 + u as f32 * 0.1)).collect())
                .collect();
            for isa in [Isa::Portable, Isa::detect()] {
                let batch = top_k_batch(isa, &t, &queries, k, vec![exclude.clone(); users]);
                for (b, q) in batch.iter().zip(&queries) {
                    prop_assert_eq!(b, &top_k(isa, &t, q, k, exclude.clone()));
                }
            }
        }

        #[test]
        fn bf16_table_is_exact_over_the_rounded_weights(
            n in 1usize..150, h in 1usize..12, k in 1usize..20, seed in 0u64..1000
        ) {
            let t = table(n, h, seed).with_precision(Precision::Bf16);
            let query: Vec<f32> = (0..h).map(|i| ((i as f32 * 1.3 + seed as f32) * 0.7).cos()).collect();
            // by_full_sort reads the table through `logit`, i.e. the bf16 weights widened to f32.
            let (want, logits) = by_full_sort(&t, &query, k, &[]);
            for isa in [Isa::Portable, Isa::detect()] {
                let got = top_k(isa, &t, &query, k, Vec::new());
                prop_assert_eq!(got.len(), want.len());
                for ((gj, gs), (wj, ws)) in got.iter().zip(&want) {
                    let same = gj == wj || (logits[*gj as usize] - logits[*wj as usize]).abs() < 1e-5;
                    prop_assert!(same, "item {} vs {}", gj, wj);
                    prop_assert!((f64::from(*gs) - ws).abs() <= 1e-5 * ws.max(1e-30) + 1e-7, "{} vs {}", gs, ws);
                }
                let batch = top_k_batch(isa, &t, &vec![query.clone(); 7], k, vec![Vec::new(); 7]);
                prop_assert!(batch.iter().all(|b| b == &got));
            }
        }
    }

    #[test]
    fn bf16_rounds_every_weight_and_keeps_the_biases() {
        let t = table(40, 5, 9);
        let b = t.clone().with_precision(Precision::Bf16);
        assert_eq!(b.precision(), Precision::Bf16);
        let (TableWeights::F32(f), TableWeights::Bf16(r)) = (&t.weights, &b.weights) else {
            panic!("unexpected precisions");
        };
        for (f, r) in f.iter().zip(r) {
            assert_eq!(r.0, f.0.map(crate::engine::kernels::f32_to_bf16));
        }
        assert_eq!(t.bias, b.bias);
        assert_eq!(b.panel_bytes(), 5 * 32 + 64);
    }

    /// Top-25 agreement of a bf16 table with the f32 one on a model at the shape (H = 43)
    /// with trained-like norms: the logits of 4,000 items spread over ~±8, densely at the top.
    #[test]
    fn bf16_top25_overlaps_f32() {
        let (n, h, k) = (4000, 43, 25);
        let mut s = 7u64;
        let mut normal = || {
            // Sum of 4 uniforms: close enough to a normal for norms.
            (0..4).map(|_| lcg(&mut s)).sum::<f32>() * 1.73
        };
        let w: Vec<f32> = (0..n * h).map(|_| normal() * 0.5).collect();
        let b: Vec<f32> = (0..n).map(|_| normal()).collect();
        let f32_table = ItemTable::new(&w, &b, h);
        let bf16_table = f32_table.clone().with_precision(Precision::Bf16);
        let queries: Vec<Vec<f32>> = (0..200)
            .map(|_| (0..h).map(|_| normal() * 0.6).collect())
            .collect();
        let none = vec![Vec::new(); queries.len()];
        let exact = top_k_batch(Isa::detect(), &f32_table, &queries, k, none.clone());
        let rounded = top_k_batch(Isa::detect(), &bf16_table, &queries, k, none);
        let mut shared = 0;
        for (e, r) in exact.iter().zip(&rounded) {
            shared += r
                .iter()
                .filter(|(j, _)| e.iter().any(|(i, _)| i == j))
                .count();
            // Scores of the shared best item agree to the bf16 logit error (~1%).
            if e[0].0 == r[0].0 {
                assert!(
                    (e[0].1 / r[0].1 - 1.0).abs() < 0.05,
                    "{:?} vs {:?}",
                    e[0],
                    r[0]
                );
            }
        }
        let overlap = shared as f64 / (k * queries.len()) as f64;
        assert!(overlap >= 0.995, "top-25 overlap {overlap}");
    }

    #[test]
    fn full_scores_sum_to_one_and_match_top_k() {
        let t = table(1000, 7, 3);
        let query: Vec<f32> = vec![0.3, -0.2, 0.9, 0.0, 1.5, -1.0, 0.25, 1.0];
        let all = full_scores(Isa::detect(), &t, &query);
        let total: f64 = all.iter().map(|&s| f64::from(s)).sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        let top = top_k(Isa::detect(), &t, &query, 5, vec![]);
        for (j, s) in top {
            assert!((all[j as usize] - s).abs() <= 1e-6 * s);
        }
    }

    #[test]
    fn a_large_table_lives_in_its_own_huge_page_mapping_in_both_precisions() {
        // 3,000 items × 43 × 64 B per 16 items: 8 MB of f32 rows, 4 MB of bf16 ones.
        let t = table(3000 * 16, 43, 5);
        let b = t.clone().with_precision(Precision::Bf16);
        for weights in [&t.weights, &b.weights] {
            let (mapped, ptr) = match weights {
                TableWeights::F32(rows) => (rows.is_mapped(), rows.as_ptr() as usize),
                TableWeights::Bf16(rows) => (rows.is_mapped(), rows.as_ptr() as usize),
            };
            assert_eq!(mapped, cfg!(target_os = "linux"));
            if mapped {
                assert_eq!(ptr % (2 << 20), 0);
            }
        }
        let q: Vec<f32> = (0..43).map(|i| (i as f32 * 0.3).sin()).collect();
        assert_eq!(
            top_k(Isa::detect(), &t, &q, 10, vec![]),
            top_k(Isa::detect(), &t.clone(), &q, 10, vec![])
        );
    }

    #[test]
    fn excluding_everything_returns_nothing() {
        let t = table(40, 3, 1);
        let q = vec![1.0, 2.0, 3.0, 1.0];
        assert!(top_k(Isa::detect(), &t, &q, 10, (0..40).collect()).is_empty());
    }
}
