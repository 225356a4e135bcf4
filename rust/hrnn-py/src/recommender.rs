//! `hrnn._hrnn.Recommender`: a frozen handle on an `Arc<hrnn_core::engine::Recommender>`.
//!
//! Conversion only: ids and events are turned into owned Rust values while attached, then every
//! call runs detached (GIL released). Item ids go back to Python as `str` objects created once at
//! load, so a result costs reference-count increments rather than string copies.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hrnn_core::engine::model::{Model, Precision};
use hrnn_core::engine::{self, topk, EventLimits, Options, Query};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::errors::DetachExt;
use crate::events::event_from_dict;

/// `(item id, score)` pairs, best first.
type Scored<'py> = Vec<(Bound<'py, PyString>, f32)>;

/// Item ids as Python strings, for one model (so results map indices with the model that made
/// them, even across a swap).
struct ItemStrings {
    model: Arc<Model>,
    strings: Arc<Vec<Py<PyString>>>,
}

impl ItemStrings {
    fn of(py: Python<'_>, model: Arc<Model>) -> Self {
        let strings = model
            .item_ids
            .iter()
            .map(|s| PyString::new(py, s).unbind())
            .collect();
        Self {
            model,
            strings: Arc::new(strings),
        }
    }
}

/// A loaded model serving recommendations, with per-user state kept current by events.
#[pyclass(frozen, module = "hrnn._hrnn")]
pub struct Recommender {
    inner: Arc<engine::Recommender>,
    /// The current model's item ids (rebuilt once after a swap, by the first query that needs them).
    item_strings: Mutex<ItemStrings>,
}

/// The item ids of the model that answered a batch (kept alive by this handle).
#[pyclass(frozen, module = "hrnn._hrnn")]
pub struct ItemIds {
    model: Arc<Model>,
}

#[pymethods]
impl ItemIds {
    fn __len__(&self) -> usize {
        self.model.num_items()
    }

    /// Every item id, by item index.
    fn tolist(&self) -> Vec<String> {
        self.model.item_ids.clone()
    }
}

/// The core query of a call's arguments; the core checks them (`num_results`, `at`).
fn query(
    num_results: usize,
    exclude_seen: bool,
    seen_event_types: Option<Vec<String>>,
    exclude_items: Option<Vec<String>>,
    include_items: Option<Vec<String>>,
    at: Option<f64>,
) -> Query {
    Query {
        num_results,
        exclude_seen,
        seen_event_types,
        exclude_items: exclude_items.unwrap_or_default(),
        include_items,
        at,
    }
}

impl Recommender {
    /// The item-id strings of `model` (cached for the current one).
    fn strings(&self, py: Python<'_>, model: &Arc<Model>) -> Arc<Vec<Py<PyString>>> {
        let mut cached = self.item_strings.lock().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&cached.model, model) {
            *cached = ItemStrings::of(py, Arc::clone(model));
        }
        Arc::clone(&cached.strings)
    }
}

#[pymethods]
impl Recommender {
    /// Loads a model directory (and replays `event_log` when given), off the GIL; `precision`
    /// ("fp32" or "bf16") is how the item table is held in memory; the rest bound `put_events`.
    #[staticmethod]
    #[pyo3(signature = (model_dir, event_log=None, precision="fp32", max_events_per_call=10, max_event_bytes=10240, dedup_window=1_000_000))]
    fn load(
        py: Python<'_>,
        model_dir: PathBuf,
        event_log: Option<PathBuf>,
        precision: &str,
        max_events_per_call: usize,
        max_event_bytes: usize,
        dedup_window: usize,
    ) -> PyResult<Self> {
        let precision: Precision = precision
            .parse()
            .map_err(|e: String| PyValueError::new_err(format!("precision: {e}")))?;
        let options = Options {
            precision,
            event_log,
            limits: EventLimits {
                max_events_per_call,
                max_event_bytes,
                dedup_window,
            },
        };
        let inner = py.detached(|| engine::Recommender::load_with(&model_dir, options))?;
        let item_strings = Mutex::new(ItemStrings::of(py, inner.model()));
        Ok(Self {
            inner: Arc::new(inner),
            item_strings,
        })
    }

    /// The best items for one user: a list of (item id, score), best first. `exclude_seen` drops
    /// the items the user interacted with (only through `seen_event_types` when given).
    #[pyo3(signature = (user_id, num_results=25, exclude_seen=false, exclude_items=None, include_items=None, at=None, seen_event_types=None))]
    #[allow(clippy::too_many_arguments)]
    fn recommend<'py>(
        &self,
        py: Python<'py>,
        user_id: String,
        num_results: usize,
        exclude_seen: bool,
        exclude_items: Option<Vec<String>>,
        include_items: Option<Vec<String>>,
        at: Option<f64>,
        seen_event_types: Option<Vec<String>>,
    ) -> PyResult<(Scored<'py>, bool)> {
        let q = query(
            num_results,
            exclude_seen,
            seen_event_types,
            exclude_items,
            include_items,
            at,
        );
        let snapshot = self.inner.snapshot();
        let work = || snapshot.recommend_explained(&user_id, &q);
        let panels = snapshot.model().table.num_panels();
        let (scored, personalized) =
            if topk::single_query_fans_out(panels, crate::threads::pool_threads()) {
                py.detached(work)?
            } else {
                // nothing worth fanning out (or one thread to fan out to): the chunks in turn on
                // this thread, no hand-off (a wake-up per call)
                py.detached_here(|| hrnn_core::threads::sequential(work))?
            };
        let strings = self.strings(py, snapshot.model());
        let items = scored
            .into_iter()
            .map(|(j, s)| (strings[j as usize].bind(py).clone(), s))
            .collect();
        Ok((items, personalized))
    }

    /// Many users at once: (item indices int64 [n, k], scores float32 [n, k], the item ids those
    /// indices refer to); -1 / 0 pad rows with fewer than k items.
    #[allow(clippy::type_complexity)]
    #[pyo3(signature = (user_ids, num_results=25, exclude_seen=false, exclude_items=None, at=None, seen_event_types=None))]
    #[allow(clippy::too_many_arguments)]
    fn recommend_batch<'py>(
        &self,
        py: Python<'py>,
        user_ids: Vec<String>,
        num_results: usize,
        exclude_seen: bool,
        exclude_items: Option<Vec<String>>,
        at: Option<f64>,
        seen_event_types: Option<Vec<String>>,
    ) -> PyResult<(
        Bound<'py, PyArray2<i64>>,
        Bound<'py, PyArray2<f32>>,
        ItemIds,
    )> {
        let q = query(
            num_results,
            exclude_seen,
            seen_event_types,
            exclude_items,
            None,
            at,
        );
        let snapshot = self.inner.snapshot();
        let k = q.num_results.min(snapshot.model().num_items());
        let (indices, scores) = py.detached(|| {
            let rows = snapshot.recommend_batch(&user_ids, &q)?;
            let mut indices = Array2::from_elem((rows.len(), k), -1i64);
            let mut scores = Array2::zeros((rows.len(), k));
            for (u, row) in rows.iter().enumerate() {
                for (c, &(j, s)) in row.iter().enumerate() {
                    indices[[u, c]] = i64::from(j);
                    scores[[u, c]] = s;
                }
            }
            Ok((indices, scores))
        })?;
        let ids = ItemIds {
            model: Arc::clone(snapshot.model()),
        };
        Ok((indices.into_pyarray(py), scores.into_pyarray(py), ids))
    }

    /// Records events for a user (or an anonymous session); returns how many were accepted.
    #[pyo3(signature = (session_id, events, user_id=None))]
    fn put_events(
        &self,
        py: Python<'_>,
        session_id: String,
        events: &Bound<'_, PyAny>,
        user_id: Option<String>,
    ) -> PyResult<usize> {
        let mut owned = Vec::new();
        for (index, item) in events.try_iter()?.enumerate() {
            owned.push(event_from_dict(py, &item?, index)?);
        }
        let inner = &self.inner;
        // one cell step per event and an fsync: nothing to fan out
        py.detached_here(|| inner.put_events(user_id.as_deref(), &session_id, owned))
    }

    /// Closes the event log (releasing its lock) after the calls in flight; queries keep working.
    fn close(&self, py: Python<'_>) {
        let inner = &self.inner;
        py.detach(|| inner.close());
    }

    /// Replaces the model while requests are served (see `engine::Recommender::swap`): (events
    /// replayed onto the new model, events left out as already in its training data).
    fn swap(&self, py: Python<'_>, model_dir: PathBuf) -> PyResult<(u64, u64)> {
        let inner = &self.inner;
        let report = py.detached(|| inner.swap(&model_dir))?;
        Ok((report.events_replayed, report.events_before_cutoff))
    }

    /// Reads the current model's item table once with the scoring kernel's loads (off the GIL)
    /// and returns a meaningless sum: its time is the memory floor of a single query's scan, for
    /// benchmarks. Not part of the public API.
    fn _read_floor(&self, py: Python<'_>) -> f32 {
        let model = Arc::clone(self.inner.snapshot().model());
        py.detach(|| hrnn_core::engine::topk::read_floor(model.isa, &model.table))
    }

    /// The item ids held for the user, most recent last.
    fn history<'py>(&self, py: Python<'py>, user_id: String) -> Vec<Bound<'py, PyString>> {
        let snapshot = self.inner.snapshot();
        let items = snapshot.history(&user_id);
        let strings = self.strings(py, snapshot.model());
        items
            .into_iter()
            .map(|j| strings[j as usize].bind(py).clone())
            .collect()
    }

    /// The user's hidden state (float32 [H]) and last event time, or None without a state.
    fn state<'py>(
        &self,
        py: Python<'py>,
        user_id: String,
    ) -> Option<(Bound<'py, PyArray1<f32>>, Option<f64>)> {
        self.inner
            .state(&user_id)
            .map(|(h, last)| (h.into_pyarray(py), last))
    }

    /// Every item's score (float32 [N]) for the user, or None without a state.
    #[pyo3(signature = (user_id, at=None))]
    fn scores<'py>(
        &self,
        py: Python<'py>,
        user_id: String,
        at: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyArray1<f32>>>> {
        let inner = &self.inner;
        let scores = py.detached(|| Ok(inner.scores(&user_id, at)))?;
        Ok(scores.map(|s| s.into_pyarray(py)))
    }

    /// Counters: events accepted, duplicates, unknown items, replayed, logged, users; and whether
    /// the event log was recorded for another model.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let out = PyDict::new(py);
        for (name, value) in [
            ("events_accepted", s.events_accepted),
            ("events_duplicate", s.events_duplicate),
            ("events_unknown_item", s.events_unknown_item),
            ("events_without_item", s.events_without_item),
            ("events_replayed", s.events_replayed),
            ("events_replayed_duplicate", s.events_replayed_duplicate),
            ("events_before_cutoff", s.events_before_cutoff),
            ("event_log_dropped_bytes", s.event_log_dropped_bytes),
            ("event_log_events", s.event_log_events),
            ("users_with_events", s.users_with_events),
        ] {
            out.set_item(name, value)?;
        }
        out.set_item("event_log_other_model", s.event_log_other_model)?;
        Ok(out)
    }

    /// Item id of each item index.
    #[getter]
    fn item_ids<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyString>> {
        let strings = self.strings(py, &self.inner.model());
        strings.iter().map(|s| s.bind(py).clone()).collect()
    }

    /// Event type of each event-type index.
    #[getter]
    fn event_types(&self) -> Vec<String> {
        self.inner.model().event_types.clone()
    }

    /// Number of items.
    #[getter]
    fn num_items(&self) -> usize {
        self.inner.model().num_items()
    }

    /// Hidden dimension H.
    #[getter]
    fn hidden_dimension(&self) -> usize {
        self.inner.model().hidden
    }

    /// Session timeout in seconds.
    #[getter]
    fn session_timeout(&self) -> i64 {
        self.inner.model().session_timeout
    }

    /// How the item table is held: "fp32" or "bf16".
    #[getter]
    fn precision(&self) -> String {
        self.inner.model().table.precision().to_string()
    }

    /// The instruction set the kernels use ("avx2+fma" or "portable").
    #[getter]
    fn isa(&self) -> String {
        self.inner.model().isa.to_string()
    }
}

/// Checks the model directory at `path` against docs/format.md exactly as `Recommender.load`
/// does (the one validator; Python's readers call it), off the GIL.
#[pyfunction]
pub fn validate_model_dir(py: Python<'_>, path: PathBuf) -> PyResult<()> {
    py.detached(|| hrnn_core::engine::model_dir::load_model(&path).map(drop))
}
