//! The recommender: an immutable [`Model`] plus per-user state kept current by real-time events
//! (Personalize's GetRecommendations and PutEvents, in process).
//!
//! Every method takes `&self`; it is `Sync`, so many threads can recommend and put events at once.
//! Queries live here; real-time updates (`put_events`, replay of the event log) in `updates`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

use super::cell::{readout, time_features};
use super::dedup::DedupWindow;
use super::event_log::EventLog;
use super::events::EventLimits;
use super::model::{Model, Precision};
use super::model_dir::load_model;
use super::seen::{EventTypeIds, SeenFilter};
use super::state::StateStore;
use super::topk::{log_normalizer, logit, top_k, top_k_batch};
use crate::error::{Error, Result};

/// Most results one query may ask for (Personalize's limit).
pub const MAX_RESULTS: usize = 500;
/// Stripes of the per-user writer locks (see `updates`).
pub(super) const WRITER_STRIPES: usize = 256;

/// How a recommender is set up, beyond its model.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// How the item table is held in memory.
    pub precision: Precision,
    /// The event log to replay and append to (created when missing).
    pub event_log: Option<std::path::PathBuf>,
    /// Limits of one `put_events` call and the de-duplication window.
    pub limits: EventLimits,
}

/// The options of a recommendation query.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// How many items, 1–500.
    pub num_results: usize,
    /// Drop the items the user interacted with (training data and real-time events).
    pub exclude_seen: bool,
    /// With `exclude_seen`, only items the user interacted with through these event types
    /// (Personalize's `EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN (…)`); `None`: every type.
    pub seen_event_types: Option<Vec<String>>,
    /// Items never to return (unknown ids are ignored).
    pub exclude_items: Vec<String>,
    /// When given, return only these items (unknown ids are ignored).
    pub include_items: Option<Vec<String>>,
    /// Unix seconds of the query; `None` = no extra elapsed time since the user's last event.
    pub at: Option<f64>,
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
    /// Events replayed from the event log at load.
    pub events_replayed: u64,
    /// Events in the event log skipped at load as duplicates of earlier ones.
    pub events_replayed_duplicate: u64,
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

/// What loading found in the event log.
#[derive(Default)]
pub(super) struct Replay {
    pub(super) events: u64,
    pub(super) duplicates: u64,
    pub(super) dropped_bytes: u64,
    pub(super) other_model: bool,
}

/// A model serving recommendations, with per-user state updated by events.
pub struct Recommender {
    pub(super) model: Arc<Model>,
    pub(super) states: StateStore,
    pub(super) event_type_ids: EventTypeIds,
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
    pub(super) replay: Replay,
}

/// A user as seen by a query: a state to read out, or nothing (served by popularity).
struct UserView {
    hidden: Vec<f32>,
    last_timestamp: Option<f64>,
    history: Vec<u32>,
    /// The seen items a query's filter excludes (unsorted, may repeat).
    excluded: Vec<u32>,
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
        let mut model = load_model(model_dir)?;
        model.table = std::mem::take(&mut model.table).with_precision(options.precision);
        let fingerprint = match &options.event_log {
            Some(_) => Some(super::fingerprint::model_fingerprint(model_dir)?),
            None => None,
        };
        Self::with_model(Arc::new(model), fingerprint.as_deref(), options)
    }

    /// A recommender over an already loaded model, without an event log.
    pub fn new(model: Arc<Model>) -> Self {
        Self::with_model(model, None, Options::default()).expect("no event log to open")
    }

    /// A recommender over `model` (whose fingerprint, when known, marks the event log).
    pub(super) fn with_model(
        model: Arc<Model>,
        fingerprint: Option<&str>,
        options: Options,
    ) -> Result<Self> {
        options.limits.check()?;
        let mut rec = Self {
            event_type_ids: EventTypeIds::new(&model.event_types),
            model,
            states: StateStore::default(),
            dedup: DedupWindow::new(options.limits.dedup_window),
            limits: options.limits,
            writers: (0..WRITER_STRIPES).map(|_| Mutex::new(())).collect(),
            log: RwLock::new(None),
            logged: options.event_log.is_some(),
            counters: Counters::default(),
            replay: Replay::default(),
        };
        if let Some(path) = &options.event_log {
            let (log, contents) = EventLog::open(path, fingerprint)?;
            rec.replay_log(&contents);
            rec.replay.other_model = match (&contents.model, fingerprint) {
                (Some(logged), Some(ours)) => logged != ours,
                _ => false,
            };
            rec.log = RwLock::new(Some(log));
        }
        Ok(rec)
    }

    /// Closes the event log (releasing its writer lock) once the calls in flight are done. Queries
    /// keep working; `put_events` then fails, since events could no longer be made durable.
    /// Without an event log this does nothing.
    pub fn close(&self) {
        self.log.write().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The user's state, history (when asked for) and the seen items `filter` excludes.
    fn view(&self, user: &str, with_history: bool, filter: &SeenFilter) -> Option<UserView> {
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
                UserView {
                    hidden: m.users.state[r * m.hidden..(r + 1) * m.hidden].to_vec(),
                    last_timestamp: Some(m.users.last_timestamp[r] as f64),
                    history: if with_history {
                        m.users.history(r).to_vec()
                    } else {
                        Vec::new()
                    },
                    excluded,
                }
            })
        })
    }

    /// What `q` excludes of a user's seen items.
    fn seen_filter(&self, q: &Query) -> SeenFilter {
        match (&q.exclude_seen, &q.seen_event_types) {
            (false, _) => SeenFilter::Off,
            (true, None) => SeenFilter::All,
            (true, Some(names)) => SeenFilter::EventTypes(self.event_type_ids.known(names)),
        }
    }

    /// The query vector `[o; 1]` for a user view at time `at`.
    fn query_vector(&self, view: &UserView, at: Option<f64>) -> Vec<f32> {
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

    fn indices(&self, ids: &[String]) -> Vec<u32> {
        ids.iter()
            .filter_map(|id| self.model.item_index.get(id.as_str()).copied())
            .collect()
    }

    fn check_query(q: &Query) -> Result<()> {
        if !(1..=MAX_RESULTS).contains(&q.num_results) {
            return Err(Error::invalid_argument(
                "num_results",
                format!("expected 1–{MAX_RESULTS}, found {}", q.num_results),
            ));
        }
        if let Some(at) = q.at {
            if !at.is_finite() {
                return Err(Error::invalid_argument(
                    "at",
                    format!("expected finite Unix seconds, found {at}"),
                ));
            }
        }
        Ok(())
    }

    fn exclusions(&self, q: &Query, view: Option<&UserView>) -> Vec<u32> {
        let mut exclude = self.indices(&q.exclude_items);
        if let Some(v) = view {
            exclude.extend_from_slice(&v.excluded);
        }
        exclude.sort_unstable();
        exclude.dedup();
        exclude
    }

    /// Popularity list (for users without a state), honouring exclusions and an include list.
    fn popular(&self, k: usize, exclude: &[u32], include: Option<&[u32]>) -> Vec<(u32, f32)> {
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

    /// The best `num_results` items for `user` as `(item index, softmax score)`, best first. Users
    /// without a state (unknown, or anonymous without events) get the popularity list.
    pub fn recommend(&self, user: &str, q: &Query) -> Result<Vec<(u32, f32)>> {
        self.recommend_explained(user, q).map(|(items, _)| items)
    }

    /// [`Recommender::recommend`], and whether the list is personal (`false`: the user has no
    /// state, so it is the popularity list).
    pub fn recommend_explained(&self, user: &str, q: &Query) -> Result<(Vec<(u32, f32)>, bool)> {
        Self::check_query(q)?;
        let m = &self.model;
        let k = q.num_results.min(m.num_items());
        let view = self.view(user, false, &self.seen_filter(q));
        let exclude = self.exclusions(q, view.as_ref());
        let include = q.include_items.as_ref().map(|ids| {
            let mut inc = self.indices(ids);
            inc.sort_unstable();
            inc.dedup();
            inc
        });
        let Some(view) = view else {
            return Ok((self.popular(k, &exclude, include.as_deref()), false));
        };
        let query = self.query_vector(&view, q.at);
        let items = match include {
            None => top_k(m.isa, &m.table, &query, k, exclude),
            Some(include) => {
                let log_z = log_normalizer(m.isa, &m.table, &query);
                let mut scored: Vec<(u32, f32)> = include
                    .into_iter()
                    .filter(|j| exclude.binary_search(j).is_err())
                    .map(|j| (j, logit(&m.table, &query, j)))
                    .collect();
                scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                scored.truncate(k);
                scored
                    .into_iter()
                    .map(|(j, l)| (j, (f64::from(l) - log_z).exp() as f32))
                    .collect()
            }
        };
        Ok((items, true))
    }

    /// [`Recommender::recommend`] for many users at once (blocked over items, parallel over
    /// users); `include_items` is not supported here.
    pub fn recommend_batch(&self, users: &[String], q: &Query) -> Result<Vec<Vec<(u32, f32)>>> {
        Self::check_query(q)?;
        if q.include_items.is_some() {
            return Err(Error::invalid_argument(
                "include_items",
                "not supported by recommend_batch",
            ));
        }
        let m = &self.model;
        let k = q.num_results.min(m.num_items());
        let filter = self.seen_filter(q);
        let views: Vec<Option<UserView>> =
            users.iter().map(|u| self.view(u, false, &filter)).collect();
        let mut queries = Vec::new();
        let mut excludes = Vec::new();
        let mut slots = Vec::with_capacity(users.len());
        for view in &views {
            let exclude = self.exclusions(q, view.as_ref());
            match view {
                Some(v) => {
                    slots.push(Ok(queries.len()));
                    queries.push(self.query_vector(v, q.at));
                    excludes.push(exclude);
                }
                None => slots.push(Err(exclude)),
            }
        }
        let mut scored = top_k_batch(m.isa, &m.table, &queries, k, excludes)
            .into_iter()
            .map(Some)
            .collect::<Vec<_>>();
        Ok(slots
            .into_iter()
            .map(|slot| match slot {
                Ok(i) => scored[i].take().expect("each slot is taken once"),
                Err(exclude) => self.popular(k, &exclude, None),
            })
            .collect())
    }

    /// The item indices held for `user` (most recent last): stored history plus events.
    pub fn history(&self, user: &str) -> Vec<u32> {
        self.view(user, true, &SeenFilter::Off)
            .map(|v| v.history)
            .unwrap_or_default()
    }

    /// The user's hidden state and the time of their last event, if the engine has a state.
    pub fn state(&self, user: &str) -> Option<(Vec<f32>, Option<f64>)> {
        self.view(user, false, &SeenFilter::Off)
            .map(|v| (v.hidden, v.last_timestamp))
    }

    /// Every item's softmax score for `user` at `at` (`None` for users without a state).
    pub fn scores(&self, user: &str, at: Option<f64>) -> Option<Vec<f32>> {
        let m = &self.model;
        self.view(user, false, &SeenFilter::Off).map(|v| {
            let query = self.query_vector(&v, at);
            super::topk::full_scores(m.isa, &m.table, &query)
        })
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            events_accepted: c.accepted.load(Relaxed),
            events_duplicate: c.duplicate.load(Relaxed),
            events_unknown_item: c.unknown_item.load(Relaxed),
            events_without_item: c.without_item.load(Relaxed),
            events_replayed: self.replay.events,
            events_replayed_duplicate: self.replay.duplicates,
            event_log_dropped_bytes: self.replay.dropped_bytes,
            event_log_events: c.logged.load(Relaxed),
            event_log_other_model: self.replay.other_model,
            users_with_events: self.states.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model_dir::tests::{temp_dir, write_model};
    use crate::engine::Event;

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
