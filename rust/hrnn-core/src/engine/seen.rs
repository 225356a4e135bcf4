//! What each user has interacted with, for `exclude_seen` — Personalize's filter
//! `EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN (…)`, or every event type.
//!
//! An entry is a distinct `(item, event type)` pair. A stored (training) user's entries come from
//! the model (`users.seen_*` of docs/format.md, CSR, sorted by item then event type); real-time
//! events add entries to the user's own state ([`SeenAdded`]). Event types are numbered in one
//! recommender-wide space ([`EventTypeIds`]): the model's types `0..K`, then every other type an
//! event names, in order of first sight — so a filter can name a type the model never saw.
//!
//! Memory: 8 bytes per distinct `(item, event type)` pair of a user, stored or added.

use std::sync::{PoisonError, RwLock};

use rustc_hash::FxHashMap;

use crate::error::{Error, Result};

/// The event type of entries whose type is not recorded: stored users of a format-version-1
/// model, whose seen items are their recent history. It matches every event-type filter.
pub const ANY_EVENT_TYPE: u32 = u32::MAX;

/// The stored users' seen entries (CSR over users).
#[derive(Clone, Debug, Default)]
pub struct StoredSeen {
    offsets: Vec<usize>,
    items: Vec<u32>,
    event_types: Vec<u32>,
}

impl StoredSeen {
    /// Validates `users.seen_offsets` (`[U+1]`), `users.seen_items` and `users.seen_event_types`
    /// (`[S]` each): offsets from 0 to `S`, non-decreasing; items in `[0, num_items)`; event
    /// types in `[0, num_event_types)`; each user's entries strictly increasing by (item, type).
    ///
    /// # Errors
    /// [`Error::ModelFormat`] naming `file` and the tensor.
    pub fn new(
        offsets: &[i64],
        items: &[i32],
        event_types: &[i32],
        (users, num_items, num_event_types): (usize, usize, usize),
        file: &str,
    ) -> Result<Self> {
        let err = |tensor: &str, message: String| Error::model_format(file, tensor, message);
        let s = items.len();
        if event_types.len() != s {
            return Err(err(
                "users.seen_event_types",
                format!(
                    "expected shape [S] = [{s}] (the length of users.seen_items), found [{}]",
                    event_types.len()
                ),
            ));
        }
        if offsets.len() != users + 1 || offsets[0] != 0 || offsets[users] != s as i64 {
            return Err(err(
                "users.seen_offsets",
                format!(
                    "expected U + 1 = {} offsets from 0 to S = {s}, found {} from {:?} to {:?}",
                    users + 1,
                    offsets.len(),
                    offsets.first(),
                    offsets.last()
                ),
            ));
        }
        if let Some(u) = offsets.windows(2).position(|w| w[1] < w[0]) {
            return Err(err(
                "users.seen_offsets",
                format!(
                    "offsets must be non-decreasing: {} then {} at user {u}",
                    offsets[u],
                    offsets[u + 1]
                ),
            ));
        }
        if let Some(p) = items.iter().position(|&j| j < 0 || j as usize >= num_items) {
            return Err(err(
                "users.seen_items",
                format!(
                    "item indices must lie in [0, {num_items}), found {} at position {p}",
                    items[p]
                ),
            ));
        }
        if let Some(p) = event_types
            .iter()
            .position(|&k| k < 0 || k as usize >= num_event_types)
        {
            return Err(err(
                "users.seen_event_types",
                format!(
                    "event-type indices must lie in [0, {num_event_types}), found {} at position {p}",
                    event_types[p]
                ),
            ));
        }
        for (u, w) in offsets.windows(2).enumerate() {
            let (a, b) = (w[0] as usize, w[1] as usize);
            for p in a + 1..b {
                if (items[p - 1], event_types[p - 1]) >= (items[p], event_types[p]) {
                    return Err(err(
                        "users.seen_items",
                        format!(
                            "each user's (item, event type) entries must be strictly increasing: user {u} has \
                             ({}, {}) then ({}, {}) at position {p}",
                            items[p - 1],
                            event_types[p - 1],
                            items[p],
                            event_types[p]
                        ),
                    ));
                }
            }
        }
        Ok(Self {
            offsets: offsets.iter().map(|&o| o as usize).collect(),
            items: items.iter().map(|&j| j as u32).collect(),
            event_types: event_types.iter().map(|&k| k as u32).collect(),
        })
    }

    /// Seen entries of a format-version-1 model: each user's recent history, of any event type.
    pub fn from_history(offsets: &[usize], history: &[u32]) -> Self {
        let mut out = Self {
            offsets: Vec::with_capacity(offsets.len()),
            items: Vec::with_capacity(history.len()),
            event_types: Vec::new(),
        };
        out.offsets.push(0);
        for w in offsets.windows(2) {
            let mut own = history[w[0]..w[1]].to_vec();
            own.sort_unstable();
            own.dedup();
            out.items.extend_from_slice(&own);
            out.offsets.push(out.items.len());
        }
        out.event_types = vec![ANY_EVENT_TYPE; out.items.len()];
        out
    }

    /// The entries of stored user `row`: items and their event types, sorted.
    pub fn row(&self, row: usize) -> (&[u32], &[u32]) {
        let span = self.offsets[row]..self.offsets[row + 1];
        (&self.items[span.clone()], &self.event_types[span])
    }

    /// Whether stored user `row` has the entry `(item, event_type)`.
    pub fn contains(&self, row: usize, item: u32, event_type: u32) -> bool {
        let (items, types) = self.row(row);
        let lo = items.partition_point(|&j| j < item);
        items[lo..]
            .iter()
            .zip(&types[lo..])
            .take_while(|(&j, _)| j == item)
            .any(|(_, &k)| k == event_type || k == ANY_EVENT_TYPE)
    }

    /// Total number of stored entries.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when no user has a stored entry.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Entries a user's real-time events added, beyond the stored ones: sorted, distinct.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeenAdded(Vec<(u32, u32)>);

impl SeenAdded {
    /// Adds `(item, event_type)` unless present.
    pub fn insert(&mut self, item: u32, event_type: u32) {
        if let Err(at) = self.0.binary_search(&(item, event_type)) {
            self.0.insert(at, (item, event_type));
        }
    }

    /// The entries, sorted by item then event type.
    pub fn entries(&self) -> &[(u32, u32)] {
        &self.0
    }
}

/// Which seen entries a query excludes.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum SeenFilter {
    /// None.
    #[default]
    Off,
    /// Every entry, whatever its event type.
    All,
    /// Entries of these event types (ids of [`EventTypeIds`]; entries of [`ANY_EVENT_TYPE`] too).
    EventTypes(Vec<u32>),
}

impl SeenFilter {
    /// Whether an entry of `event_type` is excluded.
    pub fn matches(&self, event_type: u32) -> bool {
        match self {
            SeenFilter::Off => false,
            SeenFilter::All => true,
            SeenFilter::EventTypes(types) => {
                event_type == ANY_EVENT_TYPE || types.contains(&event_type)
            }
        }
    }

    /// Appends to `out` the items of `entries` (parallel item and event-type slices) it excludes.
    pub fn collect(&self, items: &[u32], event_types: &[u32], out: &mut Vec<u32>) {
        match self {
            SeenFilter::Off => {}
            SeenFilter::All => out.extend_from_slice(items),
            SeenFilter::EventTypes(_) => out.extend(
                items
                    .iter()
                    .zip(event_types)
                    .filter(|(_, &k)| self.matches(k))
                    .map(|(&j, _)| j),
            ),
        }
    }
}

/// The recommender-wide numbering of event-type names: the model's `0..K`, then new names.
#[derive(Debug)]
pub struct EventTypeIds {
    names: RwLock<FxHashMap<String, u32>>,
}

impl EventTypeIds {
    /// Starts from the model's event types.
    pub fn new(model_types: &[String]) -> Self {
        let names = model_types
            .iter()
            .enumerate()
            .map(|(k, name)| (name.clone(), k as u32))
            .collect();
        Self {
            names: RwLock::new(names),
        }
    }

    /// The id of `name`, numbering it if it is new.
    pub fn id(&self, name: &str) -> u32 {
        if let Some(&k) = self
            .names
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return k;
        }
        let mut names = self.names.write().unwrap_or_else(PoisonError::into_inner);
        let next = names.len() as u32;
        *names.entry(name.to_owned()).or_insert(next)
    }

    /// The ids of the names already numbered (names never seen match nothing and are skipped).
    pub fn known(&self, names: &[String]) -> Vec<u32> {
        let map = self.names.read().unwrap_or_else(PoisonError::into_inner);
        names
            .iter()
            .filter_map(|n| map.get(n.as_str()).copied())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_entries_are_validated_and_looked_up() {
        let dims = (2, 10, 3);
        let ok = StoredSeen::new(&[0, 3, 4], &[1, 1, 7, 2], &[0, 2, 1, 0], dims, "m").unwrap();
        assert_eq!(ok.row(0), (&[1, 1, 7][..], &[0, 2, 1][..]));
        assert!(ok.contains(0, 1, 2) && !ok.contains(0, 1, 1) && !ok.contains(1, 7, 1));
        let err = |o: &[i64], i: &[i32], k: &[i32]| {
            StoredSeen::new(o, i, k, dims, "m").unwrap_err().to_string()
        };
        assert!(err(&[0, 3, 4], &[1, 1, 7, 10], &[0, 2, 1, 0])
            .contains("users.seen_items: item indices must lie in [0, 10)"));
        assert!(err(&[0, 3, 4], &[1, 1, 7, 2], &[0, 2, 3, 0]).contains("users.seen_event_types"));
        assert!(err(&[0, 3, 4], &[1, 1, 1, 2], &[0, 2, 1, 0])
            .contains("strictly increasing: user 0 has (1, 2) then (1, 1)"));
        assert!(err(&[0, 3], &[1, 1, 7, 2], &[0, 2, 1, 0]).contains("users.seen_offsets"));
        assert!(err(&[0, 3, 4], &[1], &[0, 1]).contains("users.seen_event_types"));
    }

    #[test]
    fn filters_event_types_and_version_one_entries_match_every_filter() {
        let v1 = StoredSeen::from_history(&[0, 3, 3], &[5, 2, 5]);
        assert_eq!(
            v1.row(0),
            (&[2, 5][..], &[ANY_EVENT_TYPE, ANY_EVENT_TYPE][..])
        );
        assert!(v1.contains(0, 5, 9));
        let mut out = Vec::new();
        SeenFilter::EventTypes(vec![1]).collect(&[3, 4, 5], &[0, 1, ANY_EVENT_TYPE], &mut out);
        assert_eq!(out, [4, 5]);
        let ids = EventTypeIds::new(&["".into(), "click".into()]);
        assert_eq!((ids.id("click"), ids.id("buy"), ids.id("buy")), (1, 2, 2));
        assert_eq!(ids.known(&["buy".into(), "nope".into(), "".into()]), [2, 0]);
        let mut added = SeenAdded::default();
        for (j, k) in [(4, 1), (2, 0), (4, 1), (4, 0)] {
            added.insert(j, k);
        }
        assert_eq!(added.entries(), &[(2, 0), (4, 0), (4, 1)]);
    }
}
