//! Real-time updates: `put_events` (Personalize's PutEvents), the replay of the event log, and
//! `swap` (a new model under a live recommender).
//!
//! A call is checked whole (fields, times, sizes), de-duplicated, written to the event log as one
//! record and fsynced — and only then applied to the user's state. So a call that fails (invalid,
//! or a write that did not reach the disk) changes nothing, not even the de-duplication window,
//! and retrying it is safe; a call that returned is on disk, all of it. A striped per-user writer
//! lock, held from de-duplication to application, keeps one user's calls in the same order in the
//! log as in memory, without holding the state's lock (which queries need) across an fsync.
//!
//! Replay (at load and at `swap`) rebuilds states from the log with one rule: an event recorded
//! for this model is applied (it was, live); one recorded for another model only when it is newer
//! than this model's training data — older ones are in that data already.

use std::hash::BuildHasher;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;

use super::dedup::{DedupWindow, EventKey};
use super::event_log::{read_event_log, LogContents, Record};
use super::events::{validate, validate_call, Event};
use super::generation::{Applied, Generation};
use super::recommender::{lock, Recommender, Replay, WRITER_STRIPES};
use crate::error::{Error, Result};

/// What a swap did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapReport {
    /// Events of the log applied to the new model's states.
    pub events_replayed: u64,
    /// Events of the log left out as already in the new model's training data.
    pub events_before_cutoff: u64,
}

impl Recommender {
    /// Applies the logged events to `generation`'s states by the replay rule, skipping repeats
    /// (remembered in `dedup`).
    pub(super) fn replay_log(
        &self,
        generation: &Generation,
        contents: &LogContents,
        dedup: &DedupWindow,
    ) -> Replay {
        let mut replay = Replay {
            other_model: match (&contents.model, &generation.fingerprint) {
                (Some(logged), Some(ours)) => logged != ours,
                _ => false,
            },
            ..Replay::default()
        };
        for (event, recorded_for) in contents.events_with_models() {
            if !dedup.insert(EventKey::of(event, event.user_key())) {
                replay.duplicates += 1;
                continue;
            }
            if !generation.replays(event, recorded_for) {
                replay.before_cutoff += 1;
                continue;
            }
            let mut shard = generation.states.write(event.user_key());
            generation.apply(&mut shard, event);
            replay.events += 1;
        }
        replay
    }

    /// Replaces the model with the one in `model_dir` while requests are served. Queries already
    /// running finish on the old model; `put_events` waits while the new generation is built.
    /// Each user's real-time state is rebuilt from the new model's stored state plus the logged
    /// events the replay rule keeps (see the module docs), the log records the new model and
    /// keeps running, and no event is lost or applied twice. A model that fails to load leaves
    /// the old one serving. Without an event log, the new model starts from its stored states
    /// (nothing recorded the events since the old one was loaded).
    pub fn swap(&self, model_dir: &Path) -> Result<SwapReport> {
        // The slow part — reading and checking the model — happens while the old one serves.
        let generation = Self::generation_of(model_dir, self.precision, self.logged)?;
        let _gate = self.gate.write().unwrap_or_else(|e| e.into_inner());
        let log = self.log.read().unwrap_or_else(|e| e.into_inner());
        let mut replay = Replay::default();
        match log.as_ref() {
            Some(log) => {
                let contents = read_event_log(log.path())?;
                // Repeats are skipped exactly as a fresh load's replay would skip them.
                replay = self.replay_log(
                    &generation,
                    &contents,
                    &DedupWindow::new(self.limits.dedup_window),
                );
                if let Some(fingerprint) = &generation.fingerprint {
                    if contents.model.as_ref() != Some(fingerprint) {
                        log.write(&Record::Model {
                            fingerprint: fingerprint.clone(),
                        })?;
                    }
                }
                replay.other_model = false;
            }
            None if self.logged => {
                return Err(Error::invalid_argument(
                    "swap",
                    "the recommender was closed: its event log can no longer be replayed",
                ));
            }
            None => {}
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(generation);
        *lock(&self.replay) = replay;
        Ok(SwapReport {
            events_replayed: replay.events,
            events_before_cutoff: replay.before_cutoff,
        })
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
            let bytes = json_len(event);
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
        let _gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
        let generation = self.snapshot().generation;
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
        let mut shard = generation.states.write(key);
        for event in &fresh {
            match generation.apply(&mut shard, event) {
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

/// The length of `event` as JSON, counted without building the text (the log encodes it once).
fn json_len(event: &Event) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, event).expect("an Event always serializes");
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counted_length_is_the_encoded_length() {
        let event = Event {
            user_id: Some("u".into()),
            session_id: "s".into(),
            event_type: "click".into(),
            sent_at: 1.5e9,
            item_id: Some("item-\u{e9}\"quoted\"".into()),
            event_value: Some(0.25),
            event_id: None,
            impression: vec!["a".into(), "b\\".into()],
            properties: Some("{\"a\": [1, 2]}".into()),
        };
        assert_eq!(json_len(&event), serde_json::to_vec(&event).unwrap().len());
    }
}
