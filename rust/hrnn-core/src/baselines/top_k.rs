//! Top-K selection over a score vector with a deterministic order.

use std::cmp::Ordering;

/// Orders `(item, score)` pairs best first: higher score, then lower item index.
fn better(a: &(u32, f64), b: &(u32, f64)) -> Ordering {
    b.1.partial_cmp(&a.1)
        .unwrap_or(Ordering::Equal)
        .then(a.0.cmp(&b.0))
}

/// The `k` best items of `scores` (highest score first; equal scores in item-index order).
///
/// Items whose score is `-inf` (excluded) are never returned, so the result may be shorter
/// than `k`. NaN scores are treated as excluded too.
pub fn top_k(scores: &[f64], k: usize) -> Vec<(u32, f64)> {
    let mut candidates: Vec<(u32, f64)> = scores
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_finite() || **s == f64::INFINITY)
        .map(|(i, s)| (i as u32, *s))
        .collect();
    if k == 0 {
        return Vec::new();
    }
    if candidates.len() > k {
        candidates.select_nth_unstable_by(k - 1, better);
        candidates.truncate(k);
    }
    candidates.sort_unstable_by(better);
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ties_keep_item_order_and_excluded_items_are_dropped() {
        let scores = [1.0, 3.0, f64::NEG_INFINITY, 3.0, 0.5];
        assert_eq!(top_k(&scores, 3), vec![(1, 3.0), (3, 3.0), (0, 1.0)]);
        assert_eq!(top_k(&scores, 10).len(), 4);
        assert!(top_k(&scores, 0).is_empty());
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
    }
}
