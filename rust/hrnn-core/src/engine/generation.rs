//! One model and the per-user state built on it: what every query reads and every event changes.
//!
//! A recommender holds its current generation behind an `Arc`; `swap` builds the next one (a new
//! model, states rebuilt from the event log) and replaces the `Arc`, so a query that started on the
//! old generation finishes on it, consistently.

use std::collections::VecDeque;

use super::cell::{readout, step, time_features};
use super::events::Event;
use super::model::Model;
use super::queries::Query;
use super::seen::{EventTypeIds, SeenAdded, SeenFilter};
use super::state::{ShardWriter, StateStore, UserState};
use std::sync::Arc;

/// What one event did.
pub(super) enum Applied {
    Moved,
    UnknownItem,
    NoItem,
}

/// A user as seen by a query: a state to read out, or nothing (served by popularity).
pub(super) struct UserView {
    pub(super) hidden: Vec<f32>,
    pub(super) last_timestamp: Option<f64>,
    pub(super) history: Vec<u32>,
    /// The seen items a query's filter excludes (unsorted, may repeat).
    pub(super) excluded: Vec<u32>,
}

/// A model, the states real-time events built on it, and what the event log replay needs.
pub(super) struct Generation {
    pub(super) model: Arc<Model>,
    pub(super) states: StateStore,
    pub(super) event_type_ids: EventTypeIds,
    /// The model's fingerprint (known when an event log is in use).
    pub(super) fingerprint: Option<String>,
    /// Unix seconds of the latest event in the model's training data (its training cut-off).
    pub(super) cutoff: f64,
}

impl Generation {
    /// A generation over `model` with no real-time state yet.
    pub(super) fn new(model: Arc<Model>, fingerprint: Option<String>) -> Self {
        let cutoff = model
            .users
            .last_timestamp
            .iter()
            .copied()
            .max()
            .map_or(f64::NEG_INFINITY, |t| t as f64);
        Self {
            event_type_ids: EventTypeIds::new(&model.event_types),
            model,
            states: StateStore::default(),
            fingerprint,
            cutoff,
        }
    }

    /// Whether replaying a logged event recorded under the model `recorded_for` applies it: every
    /// event recorded for this model was applied to it live; one recorded for another model only
    /// when it is newer than this model's training data (older ones are in it already).
    pub(super) fn replays(&self, event: &Event, recorded_for: Option<&str>) -> bool {
        (recorded_for.is_some() && recorded_for == self.fingerprint.as_deref())
            || event.sent_at > self.cutoff
    }

    /// The user's state, history (when asked for) and the seen items `filter` excludes.
    pub(super) fn view(
        &self,
        user: &str,
        with_history: bool,
        filter: &SeenFilter,
    ) -> Option<UserView> {
        let m = &self.model;
        let row = m.users.row(user);
        let stored_seen = |excluded: &mut Vec<u32>| {
            if let Some(r) = row {
                let (items, types) = m.users.seen.row(r);
                filter.collect(items, types, excluded);
            }
        };
        let from_events = self.states.read(user, |s| {
            s.map(|s| {
                let mut excluded = Vec::new();
                if *filter != SeenFilter::Off {
                    stored_seen(&mut excluded);
                    let (items, types): (Vec<u32>, Vec<u32>) =
                        s.seen.entries().iter().copied().unzip();
                    filter.collect(&items, &types, &mut excluded);
                }
                UserView {
                    hidden: s.hidden.clone(),
                    last_timestamp: s.last_timestamp,
                    history: if with_history {
                        s.history.iter().copied().collect()
                    } else {
                        Vec::new()
                    },
                    excluded,
                }
            })
        });
        from_events.or_else(|| {
            row.map(|r| {
                let mut excluded = Vec::new();
                stored_seen(&mut excluded);
                let (hidden, last_timestamp, history) = self.stored(r);
                UserView {
                    hidden: hidden.to_vec(),
                    last_timestamp: Some(last_timestamp),
                    history: if with_history {
                        history.to_vec()
                    } else {
                        Vec::new()
                    },
                    excluded,
                }
            })
        })
    }

    /// A stored user's state, last event time and recent history (model row `r`).
    fn stored(&self, r: usize) -> (&[f32], f64, &[u32]) {
        let m = &self.model;
        (
            &m.users.state[r * m.hidden..(r + 1) * m.hidden],
            m.users.last_timestamp[r] as f64,
            m.users.history(r),
        )
    }

    /// What `q` excludes of a user's seen items.
    pub(super) fn seen_filter(&self, q: &Query) -> SeenFilter {
        match (&q.exclude_seen, &q.seen_event_types) {
            (false, _) => SeenFilter::Off,
            (true, None) => SeenFilter::All,
            (true, Some(names)) => SeenFilter::EventTypes(self.event_type_ids.known(names)),
        }
    }

    /// The query vector `[o; 1]` for a user view at time `at`.
    pub(super) fn query_vector(&self, view: &UserView, at: Option<f64>) -> Vec<f32> {
        let m = &self.model;
        let elapsed = match (at, view.last_timestamp) {
            (Some(at), Some(last)) => at - last,
            _ => 0.0,
        };
        let tau = time_features(elapsed, elapsed > m.session_timeout as f64);
        let mut query = Vec::with_capacity(m.hidden + 1);
        readout(&m.cell, &view.hidden, tau, &mut query);
        query
    }

    pub(super) fn indices(&self, ids: &[String]) -> Vec<u32> {
        ids.iter()
            .filter_map(|id| self.model.item_index.get(id.as_str()).copied())
            .collect()
    }

    pub(super) fn exclusions(&self, q: &Query, view: Option<&UserView>) -> Vec<u32> {
        let mut exclude = self.indices(&q.exclude_items);
        if let Some(v) = view {
            exclude.extend_from_slice(&v.excluded);
        }
        exclude.sort_unstable();
        exclude.dedup();
        exclude
    }

    /// Popularity list (for users without a state), honouring exclusions and an include list.
    pub(super) fn popular(
        &self,
        k: usize,
        exclude: &[u32],
        include: Option<&[u32]>,
    ) -> Vec<(u32, f32)> {
        let m = &self.model;
        let allowed = |j: &u32| {
            exclude.binary_search(j).is_err()
                && include.is_none_or(|inc| inc.binary_search(j).is_ok())
        };
        m.popularity_order
            .iter()
            .copied()
            .filter(allowed)
            .take(k)
            .map(|j| (j, m.popularity_score(j)))
            .collect()
    }

    /// The state a user's first real-time event starts from: the stored one, or `h_0 = 0`.
    fn initial_state(&self, key: &str) -> UserState {
        let m = &self.model;
        match m.users.row(key) {
            Some(r) => {
                let (hidden, last_timestamp, history) = self.stored(r);
                UserState {
                    hidden: hidden.to_vec(),
                    last_timestamp: Some(last_timestamp),
                    history: history.iter().copied().collect(),
                    seen: SeenAdded::default(),
                }
            }
            None => UserState {
                hidden: vec![0.0; m.hidden],
                last_timestamp: None,
                history: VecDeque::new(),
                seen: SeenAdded::default(),
            },
        }
    }

    /// Applies one validated event to its user's state (the caller holds the user's shard lock).
    pub(super) fn apply(&self, shard: &mut ShardWriter<'_>, event: &Event) -> Applied {
        let m = &self.model;
        let Some(item_id) = &event.item_id else {
            return Applied::NoItem;
        };
        let Some(&item) = m.item_index.get(item_id.as_str()) else {
            return Applied::UnknownItem;
        };
        let key = event.user_key();
        if !shard.contains_key(key) {
            let initial = self.initial_state(key);
            shard.insert(key.to_owned(), initial);
        }
        let state = shard.get_mut(key).expect("inserted above");
        // Events arriving out of order are clamped to a zero gap and never move the clock back.
        let (gap, session_start) = match state.last_timestamp {
            None => (0.0, true),
            Some(last) => {
                let gap = event.sent_at - last;
                (gap, gap > m.session_timeout as f64)
            }
        };
        // A model trained without EVENT_TYPE has the single type "" (docs/format.md), which every
        // training event used. Real-time events must name a type (1–256 characters), so there each
        // one maps to "" — otherwise serving would differ from training by K[""].
        let event_type = if m.event_types.len() == 1 && m.event_types[0].is_empty() {
            Some(0)
        } else {
            m.event_type_index.get(event.event_type.as_str()).copied()
        };
        step(
            &m.cell,
            m.isa,
            &mut state.hidden,
            item,
            event_type,
            time_features(gap, session_start),
        );
        state.last_timestamp = Some(
            state
                .last_timestamp
                .map_or(event.sent_at, |t| t.max(event.sent_at)),
        );
        if m.history_limit > 0 {
            if state.history.len() >= m.history_limit {
                state.history.pop_front();
            }
            state.history.push_back(item);
        }
        let seen_type = self.event_type_ids.id(&event.event_type);
        if !m
            .users
            .row(key)
            .is_some_and(|r| m.users.seen.contains(r, item, seen_type))
        {
            state.seen.insert(item, seen_type);
        }
        Applied::Moved
    }
}
