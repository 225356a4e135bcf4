//! Item popularity as aws-popularity-count counts it: the number of distinct users who interacted
//! with each item. The model's `items.popularity` tensor (docs/format.md) and the evaluation's
//! popularity baseline both use this one count.

use rayon::prelude::*;

use crate::error::{Error, Result};

/// For each of `num_items` items, how many distinct users interacted with it; `user[r]` and
/// `item[r]` are the indices of row `r` (users ≥ 0, items in `[0, num_items)`).
pub fn distinct_user_counts(user: &[i64], item: &[i64], num_items: usize) -> Result<Vec<i64>> {
    if user.len() != item.len() {
        return Err(Error::invalid_argument(
            "item",
            format!(
                "expected one per row of user ({}), found {}",
                user.len(),
                item.len()
            ),
        ));
    }
    if let Some((r, &u)) = user.iter().enumerate().find(|(_, &u)| u < 0) {
        return Err(Error::invalid_argument(
            "user",
            format!("expected indices ≥ 0, found {u} at row {r}"),
        ));
    }
    if let Some((r, &i)) = item
        .iter()
        .enumerate()
        .find(|(_, &i)| i < 0 || i as u64 >= num_items as u64)
    {
        return Err(Error::invalid_argument(
            "item",
            format!("expected indices in [0, {num_items}), found {i} at row {r}"),
        ));
    }
    let mut pairs: Vec<(i64, i64)> = item.iter().copied().zip(user.iter().copied()).collect();
    pairs.par_sort_unstable();
    pairs.dedup();
    let mut counts = vec![0i64; num_items];
    for &(i, _) in &pairs {
        counts[i as usize] += 1;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counts_each_user_once_per_item() {
        let counts = distinct_user_counts(&[0, 0, 1, 2, 1], &[3, 3, 3, 0, 0], 5).unwrap();
        assert_eq!(counts, vec![2, 0, 0, 2, 0]);
        assert!(distinct_user_counts(&[], &[], 0).unwrap().is_empty());
        let e = distinct_user_counts(&[0], &[5], 5).unwrap_err().to_string();
        assert_eq!(e, "item: expected indices in [0, 5), found 5 at row 0");
        let e = distinct_user_counts(&[-1], &[0], 5)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "user: expected indices ≥ 0, found -1 at row 0");
        assert!(distinct_user_counts(&[0, 1], &[0], 5).is_err());
    }

    proptest! {
        #[test]
        fn equals_counting_a_set_of_pairs(rows in proptest::collection::vec((0i64..6, 0i64..4), 0..80)) {
            let (user, item): (Vec<i64>, Vec<i64>) = rows.iter().copied().unzip();
            let set: std::collections::BTreeSet<(i64, i64)> = rows.into_iter().collect();
            let expected: Vec<i64> = (0..4).map(|j| set.iter().filter(|p| p.1 == j).count() as i64).collect();
            prop_assert_eq!(distinct_user_counts(&user, &item, 4).unwrap(), expected);
        }
    }
}
