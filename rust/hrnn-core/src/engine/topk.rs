//! Fused scoring: one pass over the item table computes each item's logit, folds it into a running
//! log-sum-exp (the softmax denominator) and offers it to a bounded top-K — no score vector, no
//! sort of the catalogue.
//!
//! Per panel of 32 items: 32 logits from `H + 1` broadcast-multiply-adds, their maximum, a
//! vectorized `exp(logit − running max)` added to 32 f64 lane sums (rescaled on the rare occasions
//! the running max grows), and — only when the panel's best logit beats the current K-th best — a
//! scalar look at its lanes. After the first few panels almost every panel is rejected by that one
//! comparison. Batches score groups of 4 users per panel (each panel row loaded once for all 4)
//! over L2-sized blocks of panels, users split across threads with rayon.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::ops::Range;

use rayon::prelude::*;

use super::kernels::{exp_lanes, lane_max, Isa, MulAdd, Unfused, PANEL};
use super::model::ItemTable;

/// A candidate in the heap; "greater" means worse, so the heap's top is the current K-th best.
#[derive(Clone, Copy, Debug)]
struct Entry {
    logit: f32,
    item: u32,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Lower logit is worse; on ties the higher item index is worse.
        other
            .logit
            .total_cmp(&self.logit)
            .then(self.item.cmp(&other.item))
    }
}

/// A bounded top-K with an exclusion list.
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Entry>,
    /// Sorted item indices that may not be returned.
    exclude: Vec<u32>,
    /// A logit must be strictly above this to enter (the K-th best once the heap is full).
    threshold: f32,
}

impl TopK {
    /// A top-`k` that skips the (sorted, deduplicated) items in `exclude`.
    pub fn new(k: usize, exclude: Vec<u32>) -> Self {
        debug_assert!(exclude.windows(2).all(|w| w[0] < w[1]));
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
            exclude,
            threshold: if k == 0 {
                f32::INFINITY
            } else {
                f32::NEG_INFINITY
            },
        }
    }

    /// A logit must be strictly above this to enter.
    #[inline(always)]
    pub(super) fn threshold(&self) -> f32 {
        self.threshold
    }

    #[inline(never)]
    pub(super) fn offer_panel(&mut self, p: usize, logits: &[f32; PANEL], num_items: usize) {
        for (l, &logit) in logits.iter().enumerate() {
            let item = p * PANEL + l;
            if logit > self.threshold
                && item < num_items
                && self.exclude.binary_search(&(item as u32)).is_err()
            {
                self.heap.push(Entry {
                    logit,
                    item: item as u32,
                });
                if self.heap.len() > self.k {
                    self.heap.pop();
                }
                if self.heap.len() == self.k {
                    self.threshold = self.heap.peek().map_or(f32::NEG_INFINITY, |e| e.logit);
                }
            }
        }
    }
}

/// The running state of one query's scan: the running maximum logit, `Σ exp(logit − max)` over
/// the items scanned so far, and the top-K.
pub struct ScanState {
    pub(super) max: f32,
    pub(super) total: f64,
    /// Per-lane partial sums not yet added to `total` (used by the AVX2 kernel).
    pub(super) lane_sums: [f32; PANEL],
    pub(super) top: TopK,
}

impl ScanState {
    /// A fresh scan feeding `top`.
    pub fn new(top: TopK) -> Self {
        Self {
            max: f32::NEG_INFINITY,
            total: 0.0,
            lane_sums: [0.0; PANEL],
            top,
        }
    }

    /// Portable version of the per-panel update (the AVX2 one lives in `kernels_x86`).
    #[inline(always)]
    fn absorb<M: MulAdd>(&mut self, p: usize, logits: &[f32; PANEL], num_items: usize) {
        let panel_max = lane_max(logits);
        if panel_max > self.max {
            self.total *= if self.max == f32::NEG_INFINITY {
                0.0
            } else {
                f64::from(self.max - panel_max).exp()
            };
            self.max = panel_max;
        }
        let e = exp_lanes::<M>(logits, self.max);
        self.total += e.iter().map(|&x| f64::from(x)).sum::<f64>();
        if panel_max > self.top.threshold {
            self.top.offer_panel(p, logits, num_items);
        }
    }

    /// `ln Σ_j exp(logit_j)` over the scanned items.
    pub fn log_normalizer(&self) -> f64 {
        f64::from(self.max) + self.total.ln()
    }

    /// The top-K as `(item, softmax score)`, best first (ties: lower item index first).
    pub fn finish(self) -> Vec<(u32, f32)> {
        let log_z = self.log_normalizer();
        let mut entries = self.top.heap.into_vec();
        entries.sort();
        entries
            .into_iter()
            .map(|e| (e.item, (f64::from(e.logit) - log_z).exp() as f32))
            .collect()
    }
}

#[inline(always)]
fn scan_generic<M: MulAdd, const G: usize>(
    table: &ItemTable,
    queries: [&[f32]; G],
    panels: Range<usize>,
    states: &mut [ScanState],
) {
    let dim = table.dim;
    let queries: [&[f32]; G] = std::array::from_fn(|g| &queries[g][..dim]);
    let states = &mut states[..G];
    for p in panels {
        let panel = &table.panel(p)[..dim];
        let mut acc = [[0.0f32; PANEL]; G];
        for (d, row) in panel.iter().enumerate() {
            for (acc, query) in acc.iter_mut().zip(&queries) {
                let q = query[d];
                for (a, &w) in acc.iter_mut().zip(&row.0) {
                    *a = M::mul_add(w, q, *a);
                }
            }
        }
        for g in 0..G {
            states[g].absorb::<M>(p, &acc[g], table.num_items);
        }
    }
}

/// Scans `panels` of `table` for `G` queries (each of length `table.dim`) at once.
pub fn scan<const G: usize>(
    isa: Isa,
    table: &ItemTable,
    queries: [&[f32]; G],
    panels: Range<usize>,
    states: &mut [ScanState],
) {
    assert!(states.len() >= G && queries.iter().all(|q| q.len() >= table.dim));
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2Fma` is only chosen after `is_x86_feature_detected!` confirmed both.
        Isa::Avx2Fma => unsafe { super::kernels_x86::scan::<G>(table, queries, panels, states) },
        _ => scan_generic::<Unfused, G>(table, queries, panels, states),
    }
}

/// The top-`k` items for one query `[o; 1]`, with softmax scores over the whole catalogue.
pub fn top_k(
    isa: Isa,
    table: &ItemTable,
    query: &[f32],
    k: usize,
    exclude: Vec<u32>,
) -> Vec<(u32, f32)> {
    let mut state = [ScanState::new(TopK::new(k, exclude))];
    scan::<1>(isa, table, [query], 0..table.num_panels(), &mut state);
    let [state] = state;
    state.finish()
}

/// `ln Σ_j exp(logit_j)` for one query (no top-K).
pub fn log_normalizer(isa: Isa, table: &ItemTable, query: &[f32]) -> f64 {
    let mut state = [ScanState::new(TopK::new(0, Vec::new()))];
    scan::<1>(isa, table, [query], 0..table.num_panels(), &mut state);
    state[0].log_normalizer()
}

/// The logit of item `j` for `query` (a gather from the panel layout; for small candidate sets).
pub fn logit(table: &ItemTable, query: &[f32], j: u32) -> f32 {
    let (p, l) = (j as usize / PANEL, j as usize % PANEL);
    table
        .panel(p)
        .iter()
        .zip(query)
        .map(|(row, q)| row.0[l] * q)
        .sum()
}

/// Every item's softmax score for one query (allocates `N` floats: for inspection and tests).
pub fn full_scores(isa: Isa, table: &ItemTable, query: &[f32]) -> Vec<f32> {
    let log_z = log_normalizer(isa, table, query);
    (0..table.num_items as u32)
        .map(|j| (f64::from(logit(table, query, j)) - log_z).exp() as f32)
        .collect()
}

/// Users scored together per panel (each panel row is loaded once for all of them; 2 × 4
/// accumulators + 4 row vectors fit the 16 AVX2 registers without spilling).
const GROUP: usize = 2;
/// Panels per block: `32 × 32 × (H + 1) × 4` bytes ≈ 180 KB at H = 43, so a block stays in L2
/// while every group of users passes over it.
const BLOCK_PANELS: usize = 32;
/// Users per parallel task.
const TASK_USERS: usize = 16;

/// Top-`k` for many queries (`queries[u]` of length `table.dim`), in parallel; `excludes[u]` is
/// user `u`'s sorted exclusion list.
pub fn top_k_batch(
    isa: Isa,
    table: &ItemTable,
    queries: &[Vec<f32>],
    k: usize,
    excludes: Vec<Vec<u32>>,
) -> Vec<Vec<(u32, f32)>> {
    let mut states: Vec<ScanState> = excludes
        .into_iter()
        .map(|e| ScanState::new(TopK::new(k, e)))
        .collect();
    let num_panels = table.num_panels();
    states
        .par_chunks_mut(TASK_USERS)
        .zip(queries.par_chunks(TASK_USERS))
        .for_each(|(states, queries)| {
            for start in (0..num_panels).step_by(BLOCK_PANELS) {
                let block = start..(start + BLOCK_PANELS).min(num_panels);
                let mut groups = states
                    .chunks_exact_mut(GROUP)
                    .zip(queries.chunks_exact(GROUP));
                for (s, q) in &mut groups {
                    scan::<GROUP>(
                        isa,
                        table,
                        std::array::from_fn(|g| q[g].as_slice()),
                        block.clone(),
                        s,
                    );
                }
                let done = states.len() / GROUP * GROUP;
                for (s, q) in states[done..].chunks_exact_mut(1).zip(&queries[done..]) {
                    scan::<1>(isa, table, [q], block.clone(), s);
                }
            }
        });
    states.into_iter().map(ScanState::finish).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table(n: usize, h: usize, seed: u64) -> ItemTable {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
        };
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

    proptest! {
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
            let batch = top_k_batch(Isa::detect(), &t, &vec![query.clone(); 6], k, vec![exclude.clone(); 6]);
            let single = top_k(Isa::detect(), &t, &query, k, exclude.clone());
            for b in batch {
                prop_assert_eq!(&b, &single);
            }
        }
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
    fn excluding_everything_returns_nothing() {
        let t = table(40, 3, 1);
        let q = vec![1.0, 2.0, 3.0, 1.0];
        assert!(top_k(Isa::detect(), &t, &q, 10, (0..40).collect()).is_empty());
    }
}
