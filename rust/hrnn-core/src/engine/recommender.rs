//! The recommender: a model plus per-user state kept current by real-time events (Personalize's
//! GetRecommendations and PutEvents, in process), whose model can be replaced while it serves.
//!
//! Every method takes `&self`; it is `Sync`, so many threads can recommend, put events and swap at
//! once. Queries live in `queries` (on a [`Snapshot`] of the current generation), real-time updates,
//! replay and `swap` in `updates`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

use super::dedup::DedupWindow;
use super::event_log::EventLog;
use super::events::EventLimits;
use super::generation::Generation;
use super::model::{Model, Precision};
use super::model_dir::load_model;
pub use super::queries::{Query, Snapshot, MAX_RESULTS};
use crate::error::Result;

/// Stripes of the per-user writer locks (see `updates`).
pub(super) const WRITER_STRIPES: usize = 256;

/// How a recommender is set up, beyond its model.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// How the item table is held in memory.
    pub precision: Precision,
    /// The event log to replay and append to (created when missing).
    pub event_log: Option<PathBuf>,
    /// Limits of one `put_events` call and the de-duplication window.
    pub limits: EventLimits,
}

/// Counters of a recommender (monotone, best-effort consistent).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Events accepted by `put_events` in this process (not counting replayed ones).
    pub events_accepted: u64,
    /// Events ignored because they were accepted before (same `event_id`, or without one, the same
    /// user, time, type, item, value, impression and properties).
    pub events_duplicate: u64,
    /// Accepted events whose item the model does not know (kept, but they cannot move the state).
    pub events_unknown_item: u64,
    /// Accepted events without an item (kept, but they cannot move the state).
    pub events_without_item: u64,
    /// Events replayed from the event log (at load, or at the last `swap`).
    pub events_replayed: u64,
    /// Events in the event log skipped by that replay as repeats of earlier ones.
    pub events_replayed_duplicate: u64,
    /// Events in the event log skipped by that replay because they were recorded for another
    /// model and are not newer than this model's training data (so already learnt from).
    pub events_before_cutoff: u64,
    /// Bytes of a torn tail dropped from the event log at load.
    pub event_log_dropped_bytes: u64,
    /// Events in the event log (replayed plus accepted since).
    pub event_log_events: u64,
    /// The event log's last model marker names another model than this one: its events were
    /// replayed onto a model they were not recorded for.
    pub event_log_other_model: bool,
    /// Users whose state events have changed.
    pub users_with_events: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) accepted: AtomicU64,
    pub(super) duplicate: AtomicU64,
    pub(super) unknown_item: AtomicU64,
    pub(super) without_item: AtomicU64,
    pub(super) logged: AtomicU64,
}

/// What the last replay of the event log found.
#[derive(Clone, Copy, Default)]
pub(super) struct Replay {
    pub(super) events: u64,
    pub(super) duplicates: u64,
    pub(super) before_cutoff: u64,
    pub(super) dropped_bytes: u64,
    pub(super) other_model: bool,
}

/// A model serving recommendations, with per-user state updated by events.
pub struct Recommender {
    /// The model and states queries read (replaced whole by `swap`).
    pub(super) current: RwLock<Arc<Generation>>,
    /// `put_events` holds it shared; `swap` exclusively, so no event is applied while the next
    /// generation is built from the log.
    pub(super) gate: RwLock<()>,
    pub(super) precision: Precision,
    pub(super) dedup: DedupWindow,
    pub(super) limits: EventLimits,
    /// Serialises the writers of one user (by stripe), so the log holds their calls in the order
    /// they were applied — without holding the state's lock, which readers need, across an fsync.
    pub(super) writers: Box<[Mutex<()>]>,
    /// The event log while open (`close` takes it out; calls in flight hold the read lock).
    pub(super) log: RwLock<Option<EventLog>>,
    /// Whether this recommender was loaded with an event log (then it never accepts events
    /// without one).
    pub(super) logged: bool,
    pub(super) counters: Counters,
    pub(super) replay: Mutex<Replay>,
}

impl Recommender {
    /// Loads the model directory `model_dir`; with `event_log`, opens (or creates) that log and
    /// replays it, so a restarted process has the same state.
    pub fn load(model_dir: &Path, event_log: Option<&Path>) -> Result<Self> {
        Self::load_with(
            model_dir,
            Options {
                event_log: event_log.map(Path::to_owned),
                ..Options::default()
            },
        )
    }

    /// [`Recommender::load`] with every option: the item table's precision (bf16 halves the memory
    /// a query streams, at ~0.4% error in each logit; the cell always runs in f32), the event log
    /// and the limits of real-time events.
    pub fn load_with(model_dir: &Path, options: Options) -> Result<Self> {
        options.limits.check()?;
        let generation =
            Self::generation_of(model_dir, options.precision, options.event_log.is_some())?;
        Self::with_generation(generation, options)
    }

    /// Loads `model_dir` as a generation without state (with its fingerprint when `logged`).
    pub(super) fn generation_of(
        model_dir: &Path,
        precision: Precision,
        logged: bool,
    ) -> Result<Generation> {
        let mut model = load_model(model_dir)?;
        model.table = std::mem::take(&mut model.table).with_precision(precision);
        let fingerprint = if logged {
            Some(super::fingerprint::model_fingerprint(model_dir)?)
        } else {
            None
        };
        Ok(Generation::new(Arc::new(model), fingerprint))
    }

    /// A recommender over an already loaded model, without an event log.
    pub fn new(model: Arc<Model>) -> Self {
        Self::with_generation(Generation::new(model, None), Options::default())
            .expect("no event log to open")
    }

    fn with_generation(generation: Generation, options: Options) -> Result<Self> {
        options.limits.check()?;
        let rec = Self {
            current: RwLock::new(Arc::new(generation)),
            gate: RwLock::new(()),
            precision: options.precision,
            dedup: DedupWindow::new(options.limits.dedup_window),
            limits: options.limits,
            writers: (0..WRITER_STRIPES).map(|_| Mutex::new(())).collect(),
            log: RwLock::new(None),
            logged: options.event_log.is_some(),
            counters: Counters::default(),
            replay: Mutex::new(Replay::default()),
        };
        if let Some(path) = &options.event_log {
            let generation = rec.snapshot().generation;
            let (log, contents) = EventLog::open(path, generation.fingerprint.as_deref())?;
            let mut replay = rec.replay_log(&generation, &contents, &rec.dedup);
            replay.dropped_bytes = contents.torn_bytes;
            *lock(&rec.replay) = replay;
            rec.counters
                .logged
                .store(contents.events.len() as u64, Relaxed);
            *rec.log.write().unwrap_or_else(|e| e.into_inner()) = Some(log);
        }
        Ok(rec)
    }

    /// Closes the event log (releasing its writer lock) once the calls in flight are done. Queries
    /// keep working; `put_events` and `swap` then fail, since events could no longer be made
    /// durable. Without an event log this does nothing.
    pub fn close(&self) {
        self.log.write().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The current generation, for queries that must agree with each other (item indices and
    /// the model that produced them).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            generation: Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner())),
        }
    }

    /// The current model.
    pub fn model(&self) -> Arc<Model> {
        Arc::clone(self.snapshot().model())
    }

    /// The best `num_results` items for `user` (see [`Snapshot::recommend`]).
    pub fn recommend(&self, user: &str, q: &Query) -> Result<Vec<(u32, f32)>> {
        self.snapshot().recommend(user, q)
    }

    /// [`Snapshot::recommend_batch`] on the current generation.
    pub fn recommend_batch(&self, users: &[String], q: &Query) -> Result<Vec<Vec<(u32, f32)>>> {
        self.snapshot().recommend_batch(users, q)
    }

    /// [`Snapshot::history`] on the current generation.
    pub fn history(&self, user: &str) -> Vec<u32> {
        self.snapshot().history(user)
    }

    /// [`Snapshot::state`] on the current generation.
    pub fn state(&self, user: &str) -> Option<(Vec<f32>, Option<f64>)> {
        self.snapshot().state(user)
    }

    /// [`Snapshot::scores`] on the current generation.
    pub fn scores(&self, user: &str, at: Option<f64>) -> Option<Vec<f32>> {
        self.snapshot().scores(user, at)
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let replay = *lock(&self.replay);
        Stats {
            events_accepted: c.accepted.load(Relaxed),
            events_duplicate: c.duplicate.load(Relaxed),
            events_unknown_item: c.unknown_item.load(Relaxed),
            events_without_item: c.without_item.load(Relaxed),
            events_replayed: replay.events,
            events_replayed_duplicate: replay.duplicates,
            events_before_cutoff: replay.before_cutoff,
            event_log_dropped_bytes: replay.dropped_bytes,
            event_log_events: c.logged.load(Relaxed),
            event_log_other_model: replay.other_model,
            users_with_events: self.snapshot().generation.states.len() as u64,
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model_dir::tests::{temp_dir, write_model};
    use crate::engine::Event;
    use crate::error::Error;

    fn ev(item: &str, t: f64, id: Option<&str>) -> Event {
        Event {
            user_id: None,
            session_id: String::new(),
            event_type: "click".into(),
            sent_at: t,
            item_id: Some(item.into()),
            event_value: None,
            event_id: id.map(Into::into),
            impression: vec![],
            properties: None,
        }
    }

    fn query(k: usize) -> Query {
        Query {
            num_results: k,
            ..Query::default()
        }
    }

    #[test]
    fn state_update_equals_replaying_the_events() {
        let dir = temp_dir("rec-replay");
        write_model(&dir.join("m"), 6, 50, 3, 2);
        let log = dir.join("events.log");
        let rec = Recommender::load(&dir.join("m"), Some(&log)).unwrap();
        let events: Vec<Event> = (0..10)
            .map(|i| ev(&format!("i{}", i * 3), 1e9 + i as f64 * 500.0, None))
            .collect();
        rec.put_events(Some("u1"), "s1", events[..4].to_vec())
            .unwrap();
        rec.put_events(None, "anon", events.clone()).unwrap();
        rec.put_events(Some("u1"), "s2", events[4..].to_vec())
            .unwrap();
        // One call with all events gives the same state as three calls.
        let rec2 = Recommender::load(&dir.join("m"), None).unwrap();
        rec2.put_events(Some("u1"), "s", events.clone()).unwrap();
        assert_eq!(rec.state("u1"), rec2.state("u1"));
        // While it runs, the log has one writer.
        assert!(matches!(
            Recommender::load(&dir.join("m"), Some(&log)),
            Err(Error::EventLogLocked { .. })
        ));
        // A restarted process replays the log to the same state and history.
        let users = ["u1", "anon", "u0"];
        let before: Vec<_> = users
            .iter()
            .map(|u| (rec.state(u), rec.history(u)))
            .collect();
        assert_eq!(rec.history("anon").len(), 10);
        drop(rec);
        let again = Recommender::load(&dir.join("m"), Some(&log)).unwrap();
        for (user, (state, history)) in users.iter().zip(before) {
            assert_eq!(again.state(user), state, "{user}");
            assert_eq!(again.history(user), history, "{user}");
        }
        let stats = again.stats();
        assert_eq!((stats.events_replayed, stats.event_log_events), (20, 20));
        assert!(!stats.event_log_other_model);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn queries_unknown_users_duplicates_and_filters() {
        let dir = temp_dir("rec-queries");
        write_model(&dir, 4, 40, 2, 7);
        let rec = Recommender::load(&dir, None).unwrap();
        // Unknown user: popularity order.
        let pop = rec.recommend("stranger", &query(5)).unwrap();
        let order: Vec<u32> = rec.model().popularity_order[..5].to_vec();
        assert_eq!(pop.iter().map(|p| p.0).collect::<Vec<_>>(), order);
        assert!(rec.recommend("u0", &query(0)).is_err());
        assert!(rec.recommend("u0", &query(501)).is_err());
        // exclude_seen drops the stored history [0, 1].
        let q = Query {
            num_results: 40,
            exclude_seen: true,
            ..Query::default()
        };
        let got = rec.recommend("u0", &q).unwrap();
        assert_eq!(got.len(), 38);
        assert!(got.iter().all(|&(j, _)| j > 1));
        // include_items restricts; scores are the same softmax.
        let all = rec.scores("u0", None).unwrap();
        let q = Query {
            num_results: 10,
            include_items: Some(vec!["i5".into(), "i7".into(), "nope".into()]),
            ..Query::default()
        };
        let got = rec.recommend("u0", &q).unwrap();
        assert_eq!(got.len(), 2);
        for (j, s) in got {
            assert!((all[j as usize] - s).abs() <= 1e-6 * s);
        }
        // Duplicate event ids are ignored; unknown items are counted but do not move the state.
        let before = rec.state("u1");
        assert_eq!(
            rec.put_events(Some("u1"), "s", vec![ev("zzz", 2e9, Some("a"))])
                .unwrap(),
            1
        );
        assert_eq!(rec.state("u1"), before);
        assert_eq!(
            rec.put_events(
                Some("u1"),
                "s",
                vec![ev("i3", 2e9, Some("a")), ev("i3", 2e9, Some("b"))]
            )
            .unwrap(),
            1
        );
        assert_ne!(rec.state("u1"), before);
        let s = rec.stats();
        assert_eq!(
            (s.events_accepted, s.events_duplicate, s.events_unknown_item),
            (2, 1, 1)
        );
        // Seen sets: user 1 (no recent history) bought 3 in training; events add more.
        let fresh = Recommender::load(&dir, None).unwrap();
        let seen = |types: Option<Vec<&str>>| {
            let q = Query {
                num_results: 40,
                exclude_seen: true,
                seen_event_types: types.map(|t| t.into_iter().map(String::from).collect()),
                ..Query::default()
            };
            let got: Vec<u32> = fresh
                .recommend("u1", &q)
                .unwrap()
                .iter()
                .map(|p| p.0)
                .collect();
            (0..40).filter(|j| !got.contains(j)).collect::<Vec<u32>>()
        };
        assert_eq!(seen(None), [3]);
        assert_eq!(seen(Some(vec!["buy"])), [3]);
        let mut bought = ev("i7", 2e9 + 1.0, None);
        bought.event_type = "buy".into();
        let mut returned = ev("i8", 2e9 + 2.0, None);
        returned.event_type = "return".into(); // a type the model never saw
        fresh
            .put_events(Some("u1"), "s", vec![ev("i9", 2e9, None), bought, returned])
            .unwrap();
        assert_eq!(seen(None), [3, 7, 8, 9]);
        assert_eq!(seen(Some(vec!["click"])), [9]);
        assert_eq!(seen(Some(vec!["buy", "return"])), [3, 7, 8]);
        assert_eq!(seen(Some(vec!["never-seen"])), [] as [u32; 0]);
        assert_eq!(seen(Some(vec![])), [] as [u32; 0]);
        // Batch equals one by one.
        let users: Vec<String> = ["u0", "u1", "stranger", "u0", "u1", "u0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let batch = rec.recommend_batch(&users, &query(7)).unwrap();
        for (u, b) in users.iter().zip(&batch) {
            assert_eq!(b, &rec.recommend(u, &query(7)).unwrap());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
