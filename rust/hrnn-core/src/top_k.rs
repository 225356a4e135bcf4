//! Top-K selection: the `k` best `(item, score)` pairs — higher score first, equal scores in
//! item-index order — kept in a bounded heap, so a candidate below the current K-th best costs one
//! comparison. Shared by the engine's fused scan (`engine::topk`, f32 logits, which adds an
//! exclusion list and calls [`BoundedTopK::threshold`] once per panel of 16 items) and the
//! baselines ([`top_k`] over f64 scores).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A score type: `f32` (engine logits) or `f64` (baseline scores).
pub trait Score: Copy + PartialOrd {
    /// The lowest value: a score must be above it to be selected.
    const NEG_INFINITY: Self;
    /// The highest value (the threshold of a top-0).
    const INFINITY: Self;
    /// IEEE 754 totalOrder (`f32::total_cmp`), the order of the selected pairs.
    fn total_cmp(&self, other: &Self) -> Ordering;
}

impl Score for f32 {
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    const INFINITY: Self = f32::INFINITY;
    #[inline(always)]
    fn total_cmp(&self, other: &Self) -> Ordering {
        f32::total_cmp(self, other)
    }
}

impl Score for f64 {
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    const INFINITY: Self = f64::INFINITY;
    #[inline(always)]
    fn total_cmp(&self, other: &Self) -> Ordering {
        f64::total_cmp(self, other)
    }
}

/// A candidate in the heap; "greater" means worse, so the heap's top is the current K-th best.
#[derive(Clone, Copy, Debug)]
struct Entry<S> {
    score: S,
    item: u32,
}

impl<S: Score> PartialEq for Entry<S> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<S: Score> Eq for Entry<S> {}
impl<S: Score> PartialOrd for Entry<S> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<S: Score> Ord for Entry<S> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Lower score is worse; on ties the higher item index is worse.
        other
            .score
            .total_cmp(&self.score)
            .then(self.item.cmp(&other.item))
    }
}

/// The `k` best `(item, score)` pairs offered so far.
///
/// Candidates must be offered in increasing item order (or, as when merging, with indices above
/// every item already offered): a score equal to the current K-th best then belongs to a later,
/// hence worse, item and is rejected by the strict [`threshold`](Self::threshold) test.
#[derive(Clone, Debug)]
pub struct BoundedTopK<S: Score> {
    k: usize,
    heap: BinaryHeap<Entry<S>>,
    /// A score must be strictly above this to enter (the K-th best once the heap is full).
    threshold: S,
}

impl<S: Score> BoundedTopK<S> {
    /// An empty selection of at most `k` pairs.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
            threshold: if k == 0 { S::INFINITY } else { S::NEG_INFINITY },
        }
    }

    /// How many pairs are kept at most.
    pub fn k(&self) -> usize {
        self.k
    }

    /// A score must be strictly above this to enter: NaN and `-inf` never do.
    #[inline(always)]
    pub fn threshold(&self) -> S {
        self.threshold
    }

    /// Offers one candidate (kept when it beats the current K-th best).
    #[inline]
    pub fn offer(&mut self, score: S, item: u32) {
        if score > self.threshold {
            let entry = Entry { score, item };
            if self.heap.len() < self.k {
                self.heap.push(entry);
            } else if let Some(mut worst) = self.heap.peek_mut() {
                // A full heap: the newcomer scores strictly above the worst entry, so it replaces
                // it (one sift down, where a push and a pop took two sifts).
                *worst = entry;
            }
            if self.heap.len() == self.k {
                self.threshold = self.heap.peek().map_or(S::NEG_INFINITY, |e| e.score);
            }
        }
    }

    /// Whether no pair has been kept yet.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Starts an empty selection with `best`: at most `k` pairs, in any order, that are the best
    /// of every pair offered (pairs that could not enter — NaN, `-inf` — are dropped). One
    /// heapify, where offering them one by one, in item order, took a sift each.
    pub fn start_with(&mut self, best: impl IntoIterator<Item = (S, u32)>) {
        assert!(
            self.heap.is_empty(),
            "start_with on a selection already started"
        );
        let entries: Vec<Entry<S>> = best
            .into_iter()
            .filter(|&(score, _)| score > self.threshold)
            .map(|(score, item)| Entry { score, item })
            .collect();
        assert!(entries.len() <= self.k, "more pairs than k");
        self.heap = BinaryHeap::from(entries);
        if self.heap.len() == self.k {
            self.threshold = self.heap.peek().map_or(S::NEG_INFINITY, |e| e.score);
        }
    }

    /// Offers every pair of `other`, whose items all lie after the ones offered to `self`.
    ///
    /// They are offered in item order, as a scan would offer them: of two pairs of `other` with
    /// exactly the same score at the K-th place, the earlier item is kept (in heap order the
    /// later one could push it out), so a merge of two selections equals the selection of the
    /// concatenated items.
    pub fn merge(&mut self, other: BoundedTopK<S>) {
        let mut entries = other.heap.into_vec();
        entries.sort_unstable_by_key(|e| e.item);
        for e in entries {
            self.offer(e.score, e.item);
        }
    }

    /// The selected pairs, best first (equal scores: lower item index first).
    pub fn into_sorted(self) -> Vec<(u32, S)> {
        let mut entries = self.heap.into_vec();
        // no two entries are equal (each item is offered once), so an unstable sort is exact
        entries.sort_unstable();
        entries.into_iter().map(|e| (e.item, e.score)).collect()
    }
}

/// The `k` best items of `scores` (highest score first; equal scores in item-index order).
///
/// Items whose score is `-inf` (excluded) are never returned, so the result may be shorter
/// than `k`. NaN scores are treated as excluded too.
pub fn top_k<S: Score>(scores: &[S], k: usize) -> Vec<(u32, S)> {
    let mut best = BoundedTopK::new(k);
    for (i, &s) in scores.iter().enumerate() {
        best.offer(s, i as u32);
    }
    best.into_sorted()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Orders `(item, score)` pairs best first: higher score, then lower item index.
    fn better(a: &(u32, f64), b: &(u32, f64)) -> Ordering {
        b.1.partial_cmp(&a.1)
            .unwrap_or(Ordering::Equal)
            .then(a.0.cmp(&b.0))
    }

    #[test]
    fn ties_keep_item_order_and_excluded_items_are_dropped() {
        let scores = [1.0, 3.0, f64::NEG_INFINITY, 3.0, 0.5];
        assert_eq!(top_k(&scores, 3), vec![(1, 3.0), (3, 3.0), (0, 1.0)]);
        assert_eq!(top_k(&scores, 10).len(), 4);
        assert!(top_k(&scores, 0).is_empty());
        let odd = [f64::NAN, f64::INFINITY, 2.0];
        assert_eq!(top_k(&odd, 3), vec![(1, f64::INFINITY), (2, 2.0)]);
    }

    proptest! {
        #[test]
        fn equals_prefix_of_full_sort(scores in proptest::collection::vec(-5i32..5, 0..60), k in 0usize..70) {
            let scores: Vec<f64> = scores.into_iter().map(f64::from).collect();
            let mut full: Vec<(u32, f64)> = scores.iter().enumerate().map(|(i, s)| (i as u32, *s)).collect();
            full.sort_by(better);
            full.truncate(k);
            prop_assert_eq!(top_k(&scores, k), full);
        }

        /// Selections of consecutive runs of items, merged in order, equal the selection of all
        /// the items, ties included (few distinct scores, so the K-th place is often tied).
        #[test]
        fn merged_selections_equal_one_selection(
            scores in proptest::collection::vec(-3i32..3, 0..80), cuts in proptest::collection::vec(0usize..80, 0..4), k in 1usize..12
        ) {
            let scores: Vec<f64> = scores.into_iter().map(f64::from).collect();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(scores.len())).chain([0, scores.len()]).collect();
            cuts.sort_unstable();
            let mut merged = BoundedTopK::new(k);
            for run in cuts.windows(2) {
                let mut part = BoundedTopK::new(k);
                for (j, &score) in scores.iter().enumerate().take(run[1]).skip(run[0]) {
                    part.offer(score, j as u32);
                }
                merged.merge(part);
            }
            prop_assert_eq!(merged.into_sorted(), top_k(&scores, k));
        }

        /// A selection started with the best `k` of a first run of items (shuffled), then offered
        /// the rest in order, equals offering every item in order, ties and -inf included.
        #[test]
        fn a_selection_started_with_a_runs_best_equals_offering_it(
            scores in proptest::collection::vec(-3i32..3, 0..80), cut in 0usize..80, k in 1usize..12, seed in 0usize..1000
        ) {
            let scores: Vec<f64> = scores.into_iter().map(|s| if s == -3 { f64::NEG_INFINITY } else { f64::from(s) }).collect();
            let cut = cut.min(scores.len());
            let mut best: Vec<(f64, u32)> = top_k(&scores[..cut], k).into_iter().map(|(j, s)| (s, j)).collect();
            let shift = seed % best.len().max(1);
            best.rotate_left(shift);
            let mut started = BoundedTopK::new(k);
            started.start_with(best);
            for (j, &score) in scores.iter().enumerate().skip(cut) {
                started.offer(score, j as u32);
            }
            prop_assert_eq!(started.into_sorted(), top_k(&scores, k));
        }
    }

    #[test]
    fn a_merge_keeps_the_earlier_of_two_tied_items() {
        // `other` holds items 30 and 40 at the same score; in heap order 40 (the worse) comes
        // first and, offered first, would raise the threshold and shut 30 out.
        let mut mine = BoundedTopK::new(2);
        mine.offer(5.0, 1);
        mine.offer(1.0, 2);
        let mut other = BoundedTopK::new(2);
        other.offer(3.0, 30);
        other.offer(3.0, 40);
        mine.merge(other);
        assert_eq!(mine.into_sorted(), vec![(1, 5.0), (30, 3.0)]);
    }
}
