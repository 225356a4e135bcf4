//! Top-K selection: the `k` best `(item, score)` pairs — higher score first, equal scores in
//! item-index order — kept in a bounded heap, so a candidate below the current K-th best costs one
//! comparison. Shared by the engine's fused scan (`engine::topk`, f32 logits, which adds an
//! exclusion list and calls [`BoundedTopK::threshold`] once per panel of 16 items) and the
//! baselines ([`top_k`] over f64 scores).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Debug;

/// A score type: `f32` (engine logits) or `f64` (baseline scores).
pub trait Score: Copy + PartialOrd {
    /// The lowest value: a score must be above it to be selected.
    const NEG_INFINITY: Self;
    /// The highest value (the threshold of a top-0).
    const INFINITY: Self;
    /// A pair `(score, item)` as one value whose order is the selection's: greater is better —
    /// the higher score in IEEE 754 totalOrder (`f32::total_cmp`), on equal scores the lower
    /// item. The heap compares these, one integer comparison where a `total_cmp` and a tie-break
    /// took several.
    type Key: Copy + Ord + Debug;
    /// The key of a pair.
    fn key(self, item: u32) -> Self::Key;
    /// The pair of a key.
    fn pair(key: Self::Key) -> (Self, u32);
}

/// `bits` of a float (its sign in the top bit) mapped to an unsigned integer of the same
/// totalOrder: negatives have every bit flipped, the rest the sign bit set.
macro_rules! ordered {
    ($bits:expr, $sign:expr) => {{
        let bits = $bits;
        if bits & $sign != 0 {
            !bits
        } else {
            bits | $sign
        }
    }};
}

/// The inverse of [`ordered!`].
macro_rules! unordered {
    ($key:expr, $sign:expr) => {{
        let key = $key;
        if key & $sign != 0 {
            key ^ $sign
        } else {
            !key
        }
    }};
}

impl Score for f32 {
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    const INFINITY: Self = f32::INFINITY;
    /// The ordered score bits above the complemented item.
    type Key = u64;
    #[inline(always)]
    fn key(self, item: u32) -> u64 {
        u64::from(ordered!(self.to_bits(), 1 << 31)) << 32 | u64::from(!item)
    }
    #[inline(always)]
    fn pair(key: u64) -> (Self, u32) {
        let score = unordered!((key >> 32) as u32, 1 << 31);
        (f32::from_bits(score), !(key as u32))
    }
}

impl Score for f64 {
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    const INFINITY: Self = f64::INFINITY;
    /// The ordered score bits, then the complemented item.
    type Key = (u64, u32);
    #[inline(always)]
    fn key(self, item: u32) -> (u64, u32) {
        (ordered!(self.to_bits(), 1 << 63), !item)
    }
    #[inline(always)]
    fn pair((score, item): (u64, u32)) -> (Self, u32) {
        (f64::from_bits(unordered!(score, 1 << 63)), !item)
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
    /// The kept pairs' keys, the worst on top.
    heap: BinaryHeap<Reverse<S::Key>>,
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

    /// Sets the threshold to the K-th best score once `k` pairs are kept.
    #[inline(always)]
    fn raise_threshold(&mut self) {
        if self.heap.len() == self.k {
            self.threshold = self
                .heap
                .peek()
                .map_or(S::NEG_INFINITY, |&Reverse(key)| S::pair(key).0);
        }
    }

    /// Offers one candidate (kept when it beats the current K-th best).
    #[inline]
    pub fn offer(&mut self, score: S, item: u32) {
        if score > self.threshold {
            let key = Reverse(score.key(item));
            if self.heap.len() < self.k {
                self.heap.push(key);
            } else if let Some(mut worst) = self.heap.peek_mut() {
                // A full heap: the newcomer scores strictly above the worst entry, so it replaces
                // it (one sift down, where a push and a pop took two sifts).
                *worst = key;
            }
            self.raise_threshold();
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
        let keys: Vec<Reverse<S::Key>> = best
            .into_iter()
            .filter(|&(score, _)| score > self.threshold)
            .map(|(score, item)| Reverse(score.key(item)))
            .collect();
        assert!(keys.len() <= self.k, "more pairs than k");
        self.heap = BinaryHeap::from(keys);
        self.raise_threshold();
    }

    /// Offers every pair of `other`, whose items all lie after the ones offered to `self`.
    ///
    /// They are offered in item order, as a scan would offer them: of two pairs of `other` with
    /// exactly the same score at the K-th place, the earlier item is kept (in heap order the
    /// later one could push it out), so a merge of two selections equals the selection of the
    /// concatenated items.
    pub fn merge(&mut self, other: BoundedTopK<S>) {
        let mut pairs: Vec<(S, u32)> = other
            .heap
            .into_iter()
            .map(|Reverse(k)| S::pair(k))
            .collect();
        pairs.sort_unstable_by_key(|&(_, item)| item);
        for (score, item) in pairs {
            self.offer(score, item);
        }
    }

    /// The selected pairs, best first (equal scores: lower item index first).
    pub fn into_sorted(self) -> Vec<(u32, S)> {
        // worst first in `Reverse` order is best first
        let mut keys = self.heap.into_vec();
        keys.sort_unstable();
        keys.into_iter()
            .map(|Reverse(key)| {
                let (score, item) = S::pair(key);
                (item, score)
            })
            .collect()
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
    use std::cmp::Ordering;

    /// Floats at the edges of totalOrder: both NaNs, both infinities, both zeros, subnormals.
    fn edge_bits32() -> Vec<u32> {
        [
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            1e-45,
            -1e-45,
            1.0,
            -1.0,
            f32::MAX,
            f32::MIN,
        ]
        .iter()
        .map(|x| x.to_bits())
        .collect()
    }

    #[test]
    fn keys_order_pairs_as_total_cmp_then_the_lower_item() {
        let bits = edge_bits32();
        for &a in &bits {
            for &b in &bits {
                for (i, j) in [(0u32, 0u32), (1, 2), (2, 1), (0, u32::MAX)] {
                    let (x, y) = (f32::from_bits(a), f32::from_bits(b));
                    let want = x.total_cmp(&y).then(j.cmp(&i));
                    assert_eq!(x.key(i).cmp(&y.key(j)), want, "{x:?}@{i} vs {y:?}@{j}");
                    let (xx, yy) = (f64::from(x), f64::from(y));
                    assert_eq!(xx.key(i).cmp(&yy.key(j)), xx.total_cmp(&yy).then(j.cmp(&i)));
                    assert_eq!(f32::pair(x.key(i)).0.to_bits(), a);
                    assert_eq!(f32::pair(x.key(i)).1, i);
                    assert_eq!(f64::pair(xx.key(i)).0.to_bits(), xx.to_bits());
                }
            }
        }
    }

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
        fn keys_order_any_two_f32_pairs_as_total_cmp(a in any::<u32>(), b in any::<u32>(), i in any::<u32>(), j in any::<u32>()) {
            let (x, y) = (f32::from_bits(a), f32::from_bits(b));
            prop_assert_eq!(x.key(i).cmp(&y.key(j)), x.total_cmp(&y).then(j.cmp(&i)));
            let (score, item) = f32::pair(x.key(i));
            prop_assert_eq!((score.to_bits(), item), (a, i));
        }

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
