//! `hrnn._hrnn.Recommender`: a frozen handle on an `Arc<hrnn_core::engine::Recommender>`.
//!
//! Conversion only: ids and events are turned into owned Rust values while attached, then every
//! call runs detached (GIL released). Item ids go back to Python as `str` objects created once at
//! load, so a result costs reference-count increments rather than string copies.

use std::path::PathBuf;
use std::sync::Arc;

use hrnn_core::engine::model::Precision;
use hrnn_core::engine::{self, Event, Query};
use hrnn_core::Error;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString};

use crate::errors::{to_py_err, DetachExt};

/// A loaded model serving recommendations, with per-user state kept current by events.
#[pyclass(frozen, module = "hrnn._hrnn")]
pub struct Recommender {
    inner: Arc<engine::Recommender>,
    item_strings: Vec<Py<PyString>>,
}

fn event_error(index: usize, field: &str, message: String) -> PyErr {
    to_py_err(Error::Event {
        index,
        field: field.to_owned(),
        message,
    })
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string())
}

fn string(value: &Bound<'_, PyAny>, index: usize, field: &str) -> PyResult<String> {
    value
        .cast::<PyString>()
        .map_err(|_| {
            event_error(
                index,
                field,
                format!("expected a str, found {}", type_name(value)),
            )
        })?
        .to_str()
        .map(str::to_owned)
        .map_err(|_| event_error(index, field, "not valid UTF-8".into()))
}

fn number(value: &Bound<'_, PyAny>, index: usize, field: &str) -> PyResult<f64> {
    if value.is_instance_of::<PyBool>() {
        return Err(event_error(
            index,
            field,
            "expected a number, found bool".into(),
        ));
    }
    value.extract::<f64>().map_err(|_| {
        event_error(
            index,
            field,
            format!("expected a number, found {}", type_name(value)),
        )
    })
}

/// Converts one event dict (Personalize's fields in snake_case) into a core event.
fn event_from_dict(py: Python<'_>, value: &Bound<'_, PyAny>, index: usize) -> PyResult<Event> {
    let dict = value.cast::<PyDict>().map_err(|_| {
        event_error(
            index,
            "<event>",
            format!("expected a dict, found {}", type_name(value)),
        )
    })?;
    let mut event = Event {
        user_id: None,
        session_id: String::new(),
        event_type: String::new(),
        sent_at: f64::NAN,
        item_id: None,
        event_value: None,
        event_id: None,
        impression: Vec::new(),
        properties: None,
    };
    let (mut has_type, mut has_time) = (false, false);
    for (key, value) in dict.iter() {
        let key = string(&key, index, "<key>")?;
        if value.is_none() && key != "event_type" && key != "sent_at" {
            continue;
        }
        match key.as_str() {
            "event_type" => {
                event.event_type = string(&value, index, "event_type")?;
                has_type = true;
            }
            "sent_at" => {
                event.sent_at = number(&value, index, "sent_at")?;
                has_time = true;
            }
            "item_id" => event.item_id = Some(string(&value, index, "item_id")?),
            "event_value" => event.event_value = Some(number(&value, index, "event_value")?),
            "event_id" => event.event_id = Some(string(&value, index, "event_id")?),
            "impression" => {
                let items = value.try_iter().map_err(|_| {
                    event_error(
                        index,
                        "impression",
                        format!("expected a list of str, found {}", type_name(&value)),
                    )
                })?;
                for (i, item) in items.enumerate() {
                    event
                        .impression
                        .push(string(&item?, index, &format!("impression[{i}]"))?);
                }
            }
            "properties" => {
                event.properties = Some(if value.is_instance_of::<PyString>() {
                    string(&value, index, "properties")?
                } else {
                    py.import("json")?
                        .call_method1("dumps", (&value,))
                        .map_err(|e| {
                            event_error(
                                index,
                                "properties",
                                format!("expected a str or a JSON-serializable dict: {e}"),
                            )
                        })?
                        .extract::<String>()?
                });
            }
            other => {
                return Err(event_error(
                    index,
                    other,
                    "unknown field (expected event_type, sent_at, item_id, event_value, event_id, impression, properties)".into(),
                ));
            }
        }
    }
    if !has_type {
        return Err(event_error(
            index,
            "event_type",
            "required field missing".into(),
        ));
    }
    if !has_time {
        return Err(event_error(
            index,
            "sent_at",
            "required field missing (Unix seconds)".into(),
        ));
    }
    Ok(event)
}

fn query(
    num_results: i64,
    exclude_seen: bool,
    seen_event_types: Option<Vec<String>>,
    exclude_items: Option<Vec<String>>,
    include_items: Option<Vec<String>>,
    at: Option<f64>,
) -> PyResult<Query> {
    let num_results = usize::try_from(num_results)
        .ok()
        .filter(|k| (1..=engine::recommender::MAX_RESULTS).contains(k))
        .ok_or_else(|| {
            PyValueError::new_err(format!("num_results: expected 1–500, found {num_results}"))
        })?;
    Ok(Query {
        num_results,
        exclude_seen,
        seen_event_types,
        exclude_items: exclude_items.unwrap_or_default(),
        include_items,
        at,
    })
}

impl Recommender {
    fn ids<'py>(
        &self,
        py: Python<'py>,
        items: impl IntoIterator<Item = u32>,
    ) -> Vec<Bound<'py, PyString>> {
        items
            .into_iter()
            .map(|j| self.item_strings[j as usize].bind(py).clone())
            .collect()
    }
}

#[pymethods]
impl Recommender {
    /// Loads a model directory (and replays `event_log` when given), off the GIL; `precision`
    /// ("fp32" or "bf16") is how the item table is held in memory.
    #[staticmethod]
    #[pyo3(signature = (model_dir, event_log=None, precision="fp32"))]
    fn load(
        py: Python<'_>,
        model_dir: PathBuf,
        event_log: Option<PathBuf>,
        precision: &str,
    ) -> PyResult<Self> {
        let precision: Precision = precision
            .parse()
            .map_err(|e: String| PyValueError::new_err(format!("precision: {e}")))?;
        let inner = py.detached(|| {
            engine::Recommender::load_with_precision(&model_dir, event_log.as_deref(), precision)
        })?;
        let item_strings = inner
            .model()
            .item_ids
            .iter()
            .map(|s| PyString::new(py, s).unbind())
            .collect();
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
        num_results: i64,
        exclude_seen: bool,
        exclude_items: Option<Vec<String>>,
        include_items: Option<Vec<String>>,
        at: Option<f64>,
        seen_event_types: Option<Vec<String>>,
    ) -> PyResult<Vec<(Bound<'py, PyString>, f32)>> {
        let q = query(
            num_results,
            exclude_seen,
            seen_event_types,
            exclude_items,
            include_items,
            at,
        )?;
        let inner = &self.inner;
        let scored = py.detached(|| inner.recommend(&user_id, &q))?;
        Ok(scored
            .into_iter()
            .map(|(j, s)| (self.item_strings[j as usize].bind(py).clone(), s))
            .collect())
    }

    /// Many users at once: (item indices int64 [n, k], scores float32 [n, k]); -1 / 0 pad rows
    /// with fewer than k items.
    #[allow(clippy::type_complexity)]
    #[pyo3(signature = (user_ids, num_results=25, exclude_seen=false, exclude_items=None, at=None, seen_event_types=None))]
    #[allow(clippy::too_many_arguments)]
    fn recommend_batch<'py>(
        &self,
        py: Python<'py>,
        user_ids: Vec<String>,
        num_results: i64,
        exclude_seen: bool,
        exclude_items: Option<Vec<String>>,
        at: Option<f64>,
        seen_event_types: Option<Vec<String>>,
    ) -> PyResult<(Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>)> {
        let q = query(
            num_results,
            exclude_seen,
            seen_event_types,
            exclude_items,
            None,
            at,
        )?;
        let inner = &self.inner;
        let k = q.num_results.min(inner.model().num_items());
        let (indices, scores) = py.detached(|| {
            let rows = inner.recommend_batch(&user_ids, &q)?;
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
        Ok((indices.into_pyarray(py), scores.into_pyarray(py)))
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
        py.detached(|| inner.put_events(user_id.as_deref(), &session_id, owned))
    }

    /// The item ids held for the user, most recent last.
    fn history<'py>(&self, py: Python<'py>, user_id: String) -> Vec<Bound<'py, PyString>> {
        let items = self.inner.history(&user_id);
        self.ids(py, items)
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

    /// Counters: events accepted, duplicates, unknown items, replayed, log records, users.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let out = PyDict::new(py);
        for (name, value) in [
            ("events_accepted", s.events_accepted),
            ("events_duplicate", s.events_duplicate),
            ("events_unknown_item", s.events_unknown_item),
            ("events_without_item", s.events_without_item),
            ("events_replayed", s.events_replayed),
            ("event_log_dropped_bytes", s.event_log_dropped_bytes),
            ("event_log_records", s.event_log_records),
            ("users_with_events", s.users_with_events),
        ] {
            out.set_item(name, value)?;
        }
        Ok(out)
    }

    /// Item id of each item index.
    #[getter]
    fn item_ids<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyString>> {
        self.item_strings
            .iter()
            .map(|s| s.bind(py).clone())
            .collect()
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

    /// The instruction set the kernels use ("avx2+fma" or "portable").
    /// How the item table is held: "fp32" or "bf16".
    #[getter]
    fn precision(&self) -> String {
        self.inner.model().table.precision().to_string()
    }

    #[getter]
    fn isa(&self) -> String {
        self.inner.model().isa.to_string()
    }
}

/// Reads an event log: (user ids, item ids, timestamps int64, event types, event values float64
/// with NaN where absent, torn bytes). Events without an item are skipped; an anonymous event's
/// user id is its session id; timestamps are `sent_at` rounded down to whole seconds.
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn read_event_log<'py>(
    py: Python<'py>,
    path: PathBuf,
) -> PyResult<(
    Vec<String>,
    Vec<String>,
    Bound<'py, PyArray1<i64>>,
    Vec<String>,
    Bound<'py, PyArray1<f64>>,
    u64,
)> {
    let (users, items, times, types, values, torn) = py.detached(|| {
        let contents = engine::event_log::read_event_log(&path)?;
        let mut out = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            contents.torn_bytes,
        );
        for e in contents.events {
            let Some(item) = e.item_id.clone() else {
                continue;
            };
            out.0.push(e.user_key().to_owned());
            out.1.push(item);
            out.2.push(e.sent_at.floor() as i64);
            out.3.push(e.event_type);
            out.4.push(e.event_value.unwrap_or(f64::NAN));
        }
        Ok(out)
    })?;
    Ok((
        users,
        items,
        times.into_pyarray(py),
        types,
        values.into_pyarray(py),
        torn,
    ))
}
