//! Percentile filtering of users by history length (Personalize's featurization
//! `min_user_history_length_percentile` / `max_user_history_length_percentile`).
//!
//! Rule: let `L` be the per-user history lengths (rows per user) and `q(p)` numpy's default
//! (`method="linear"`) quantile of `L` at `p`: with `L` sorted ascending and `v = p·(n−1)`,
//! `q(p) = L[⌊v⌋] + (v − ⌊v⌋)·(L[⌊v⌋+1] − L[⌊v⌋])`. A user is kept when
//! `q(min) ≤ length ≤ q(max)`; every row of a dropped user is dropped.

use crate::error::{Error, Result};
use crate::interactions::Interactions;

/// numpy's default linear quantile of `sorted` (ascending, non-empty) at `p` in [0, 1].
pub fn linear_quantile(sorted: &[u32], p: f64) -> f64 {
    let n = sorted.len();
    let v = p * (n - 1) as f64;
    let lo = v.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = v - lo as f64;
    let (a, b) = (f64::from(sorted[lo]), f64::from(sorted[hi]));
    // numpy computes a + frac·(b − a) with the same rounding; keep the same expression.
    a + frac * (b - a)
}

/// Sorts history lengths by counting (lengths are bounded by the row count).
fn sorted_lengths(lengths: &[u32]) -> Vec<u32> {
    let max = lengths.iter().copied().max().unwrap_or(0) as usize;
    if max > 4 * lengths.len() + 1024 {
        let mut sorted = lengths.to_vec();
        sorted.sort_unstable();
        return sorted;
    }
    let mut counts = vec![0u32; max + 1];
    for &l in lengths {
        counts[l as usize] += 1;
    }
    let mut sorted = Vec::with_capacity(lengths.len());
    for (l, &c) in counts.iter().enumerate() {
        sorted.extend(std::iter::repeat_n(l as u32, c as usize));
    }
    sorted
}

fn check_percentile(name: &str, p: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::invalid_argument(
            name,
            format!("expected a value in [0, 1], found {p}"),
        ));
    }
    Ok(())
}

/// The history-length bounds `(q(min), q(max))` for the given percentiles.
pub fn history_length_bounds(
    lengths: &[u32],
    min_percentile: f64,
    max_percentile: f64,
) -> Result<(f64, f64)> {
    check_percentile("min_user_history_length_percentile", min_percentile)?;
    check_percentile("max_user_history_length_percentile", max_percentile)?;
    if min_percentile > max_percentile {
        return Err(Error::invalid_argument(
            "min_user_history_length_percentile",
            format!("expected at most max_user_history_length_percentile ({max_percentile}), found {min_percentile}"),
        ));
    }
    if lengths.is_empty() {
        return Ok((0.0, f64::INFINITY));
    }
    let sorted = sorted_lengths(lengths);
    Ok((
        linear_quantile(&sorted, min_percentile),
        linear_quantile(&sorted, max_percentile),
    ))
}

/// Drops users whose history length lies outside the percentile bounds (see the module docs).
pub fn filter_by_history_length(
    data: &Interactions,
    min_percentile: f64,
    max_percentile: f64,
) -> Result<Interactions> {
    let lengths = data.history_lengths();
    let (lo, hi) = history_length_bounds(&lengths, min_percentile, max_percentile)?;
    let keep_user: Vec<bool> = lengths
        .iter()
        .map(|&l| f64::from(l) >= lo && f64::from(l) <= hi)
        .collect();
    let detail = format!(
        "history length in [{lo}, {hi}] (percentiles {min_percentile}..{max_percentile} of {} users)",
        lengths.len()
    );
    Ok(
        data.retain_rows("user_history_length_percentile", detail, |r| {
            keep_user[data.user[r] as usize]
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quantile_matches_numpy_examples() {
        // numpy.quantile([1, 2, 3, 4, 10], [0, .5, .9, .99, 1]) = [1, 3, 7.6, 9.76, 10]
        let s = [1, 2, 3, 4, 10];
        let got: Vec<f64> = [0.0, 0.5, 0.9, 0.99, 1.0]
            .iter()
            .map(|&p| linear_quantile(&s, p))
            .collect();
        let want = [1.0, 3.0, 7.6, 9.76, 10.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-9, "{got:?}");
        }
    }

    #[test]
    fn rejects_bad_percentiles() {
        assert!(history_length_bounds(&[1], -0.1, 0.5)
            .unwrap_err()
            .to_string()
            .contains("min_user_history_length_percentile"));
        assert!(history_length_bounds(&[1], 0.0, 1.5)
            .unwrap_err()
            .to_string()
            .contains("max_user_history_length_percentile"));
        assert!(history_length_bounds(&[1], 0.6, 0.5).is_err());
    }

    proptest! {
        #[test]
        fn bounds_are_monotone_in_percentile(lengths in prop::collection::vec(1u32..500, 1..200), a in 0.0f64..1.0, b in 0.0f64..1.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let (qlo, qhi) = history_length_bounds(&lengths, lo, hi).unwrap();
            prop_assert!(qlo <= qhi);
            let sorted = sorted_lengths(&lengths);
            let mut expect = lengths.clone();
            expect.sort_unstable();
            prop_assert_eq!(sorted, expect);
        }
    }
}
