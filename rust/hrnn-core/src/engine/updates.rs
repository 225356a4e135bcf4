//! Real-time updates: `put_events` (Personalize's PutEvents) and the replay of the event log.
//!
//! A call is checked whole (fields, times, sizes), de-duplicated, written to the event log as one
//! record and fsynced — and only then applied to the user's state. So a call that fails (invalid,
//! or a write that did not reach the disk) changes nothing, not even the de-duplication window,
//! and retrying it is safe; a call that returned is on disk, all of it. A striped per-user writer
//! lock, held from de-duplication to application, keeps one user's calls in the same order in the
//! log as in memory, without holding the state's lock (which queries need) across an fsync.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::Ordering::Relaxed;

use rustc_hash::FxBuildHasher;

use super::cell::{step, time_features};
use super::dedup::EventKey;
use super::event_log::{LogContents, Record};
use super::events::{validate, validate_call, Event};
use super::recommender::{Recommender, WRITER_STRIPES};
use super::seen::SeenAdded;
use super::state::{ShardWriter, UserState};
use crate::error::{Error, Result};

/// What one event did.
enum Applied {
    Moved,
    UnknownItem,
    NoItem,
}

impl Recommender {
    fn initial_state(&self, key: &str) -> UserState {
        let m = &self.model;
        match m.users.row(key) {
            Some(r) => UserState {
                hidden: m.users.state[r * m.hidden..(r + 1) * m.hidden].to_vec(),
                last_timestamp: Some(m.users.last_timestamp[r] as f64),
                history: m.users.history(r).iter().copied().collect(),
                seen: SeenAdded::default(),
            },
            None => UserState {
                hidden: vec![0.0; m.hidden],
                last_timestamp: None,
                history: VecDeque::new(),
                seen: SeenAdded::default(),
            },
        }
    }

    /// Applies one validated event to its user's state (the caller holds the user's shard lock).
    fn apply(&self, shard: &mut ShardWriter<'_>, event: &Event) -> Applied {
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

    /// Applies the events read from the event log at load, skipping repeats.
    pub(super) fn replay_log(&mut self, contents: &LogContents) {
        for event in &contents.events {
            if !self.dedup.insert(EventKey::of(event, event.user_key())) {
                self.replay.duplicates += 1;
                continue;
            }
            let mut shard = self.states.write(event.user_key());
            self.apply(&mut shard, event);
            self.replay.events += 1;
        }
        self.replay.dropped_bytes = contents.torn_bytes;
        self.counters
            .logged
            .store(contents.events.len() as u64, Relaxed);
    }

    /// Records `events` for the user `user_id` (or the anonymous session `session_id`) and returns
    /// how many were accepted: every event is checked first (an invalid one rejects the call), then
    /// events accepted before are skipped (see [`super::dedup`]), the rest are written to the event
    /// log as one record and fsynced, and only then applied — one cell step per event with a known
    /// item. On error nothing was recorded or applied.
    pub fn put_events(
        &self,
        user_id: Option<&str>,
        session_id: &str,
        mut events: Vec<Event>,
    ) -> Result<usize> {
        validate_call(user_id, session_id)?;
        let limits = self.limits;
        if events.is_empty() || events.len() > limits.max_events_per_call {
            return Err(Error::invalid_argument(
                "events",
                format!(
                    "expected 1–{} events per call (max_events_per_call), found {}",
                    limits.max_events_per_call,
                    events.len()
                ),
            ));
        }
        for (index, event) in events.iter_mut().enumerate() {
            validate(event, index)?;
            event.user_id = user_id.map(str::to_owned);
            event.session_id = session_id.to_owned();
            let bytes = serde_json::to_vec(event)
                .expect("an Event always serializes")
                .len();
            if bytes > limits.max_event_bytes {
                return Err(Error::Event {
                    index,
                    field: "<event>".into(),
                    message: format!(
                        "{bytes} bytes as JSON, over the limit of {} (max_event_bytes)",
                        limits.max_event_bytes
                    ),
                });
            }
        }
        let key = user_id.unwrap_or(session_id);
        let stripe = FxBuildHasher.hash_one(key) as usize % WRITER_STRIPES;
        let _writer = self.writers[stripe]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let log = self.log.read().unwrap_or_else(|e| e.into_inner());
        if self.logged && log.is_none() {
            return Err(Error::invalid_argument(
                "put_events",
                "the recommender was closed: its event log no longer accepts events",
            ));
        }
        let offered = events.len();
        let mut keys = Vec::with_capacity(offered);
        let mut fresh = Vec::with_capacity(offered);
        for event in events {
            let k = EventKey::of(&event, key);
            if self.dedup.insert(k) {
                keys.push(k);
                fresh.push(event);
            }
        }
        let c = &self.counters;
        let duplicates = (offered - fresh.len()) as u64;
        if fresh.is_empty() {
            c.duplicate.fetch_add(duplicates, Relaxed);
            return Ok(0);
        }
        if let Some(log) = log.as_ref() {
            let record = Record::Events(fresh);
            if let Err(e) = log.write(&record) {
                // Not on disk, so not accepted: a retry must not be taken for a duplicate.
                for k in keys {
                    self.dedup.remove(k);
                }
                return Err(e);
            }
            let Record::Events(events) = record else {
                unreachable!("built above")
            };
            fresh = events;
            c.logged.fetch_add(fresh.len() as u64, Relaxed);
        }
        let mut shard = self.states.write(key);
        for event in &fresh {
            match self.apply(&mut shard, event) {
                Applied::Moved => {}
                Applied::UnknownItem => {
                    c.unknown_item.fetch_add(1, Relaxed);
                }
                Applied::NoItem => {
                    c.without_item.fetch_add(1, Relaxed);
                }
            }
        }
        drop(shard);
        c.duplicate.fetch_add(duplicates, Relaxed);
        c.accepted.fetch_add(fresh.len() as u64, Relaxed);
        Ok(fresh.len())
    }
}
