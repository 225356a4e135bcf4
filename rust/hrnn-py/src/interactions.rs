//! `hrnn._hrnn.Interactions`: a frozen handle on an `Arc<hrnn_core::Interactions>`.

use std::path::PathBuf;
use std::sync::Arc;

use hrnn_core::history_filter::{filter_by_history_length, history_length_bounds};
use hrnn_core::{sessionize, Columns};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::DetachExt;

/// Interactions in the Personalize schema, with dense user/item indices (immutable).
#[pyclass(frozen, module = "hrnn._hrnn")]
pub struct Interactions {
    pub inner: Arc<hrnn_core::Interactions>,
}

impl Interactions {
    fn wrap(inner: hrnn_core::Interactions) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }
}

#[pymethods]
impl Interactions {
    /// Reads a CSV file (streaming, in Rust); TIMESTAMP in `timestamp_unit` (s, ms, us, ns).
    #[staticmethod]
    #[pyo3(signature = (path, timestamp_unit="s"))]
    fn from_csv(py: Python<'_>, path: PathBuf, timestamp_unit: &str) -> PyResult<Self> {
        py.detached(|| {
            let unit = timestamp_unit.parse()?;
            hrnn_core::csv_reader::read_csv_with_unit(&path, unit)
        })
        .map(Self::wrap)
    }

    /// Builds interactions from columns.
    #[staticmethod]
    #[pyo3(signature = (user_id, item_id, timestamp, event_type=None, event_value=None))]
    fn from_arrays(
        py: Python<'_>,
        user_id: Vec<String>,
        item_id: Vec<String>,
        timestamp: PyReadonlyArray1<'_, i64>,
        event_type: Option<Vec<String>>,
        event_value: Option<PyReadonlyArray1<'_, f64>>,
    ) -> PyResult<Self> {
        let timestamp = timestamp.as_slice()?;
        let event_value = match &event_value {
            Some(v) => Some(v.as_slice()?),
            None => None,
        };
        py.detached(|| {
            hrnn_core::Interactions::from_columns(Columns {
                user_id: &user_id,
                item_id: &item_id,
                timestamp,
                event_type: event_type.as_deref(),
                event_value,
            })
        })
        .map(Self::wrap)
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    #[getter]
    fn num_users(&self) -> usize {
        self.inner.num_users()
    }

    #[getter]
    fn num_items(&self) -> usize {
        self.inner.num_items()
    }

    #[getter]
    fn user_ids(&self) -> Vec<String> {
        self.inner.user_ids.to_vec()
    }

    #[getter]
    fn item_ids(&self) -> Vec<String> {
        self.inner.item_ids.to_vec()
    }

    #[getter]
    fn event_types(&self) -> Vec<String> {
        self.inner.event_types.to_vec()
    }

    #[getter]
    fn has_event_type(&self) -> bool {
        self.inner.has_event_type
    }

    #[getter]
    fn has_event_value(&self) -> bool {
        self.inner.has_event_value
    }

    #[getter]
    fn ignored_columns(&self) -> Vec<String> {
        self.inner.ignored_columns.clone()
    }

    #[getter]
    fn rows_read(&self) -> usize {
        self.inner.rows_read
    }

    #[getter]
    fn source(&self) -> String {
        self.inner.source.clone()
    }

    /// Every drop rule applied so far: (rule, detail, rows, users, items) tuples.
    #[getter]
    fn drops(&self) -> Vec<(String, String, usize, usize, usize)> {
        self.inner
            .drops
            .iter()
            .map(|d| {
                (
                    d.rule.clone(),
                    d.detail.clone(),
                    d.rows_dropped,
                    d.users_dropped,
                    d.items_dropped,
                )
            })
            .collect()
    }

    /// The row columns as new numpy arrays: user, item, timestamp, event_type, event_value.
    #[allow(clippy::type_complexity)]
    fn columns<'py>(
        &self,
        py: Python<'py>,
    ) -> (
        Bound<'py, PyArray1<u32>>,
        Bound<'py, PyArray1<u32>>,
        Bound<'py, PyArray1<i64>>,
        Bound<'py, PyArray1<u32>>,
        Bound<'py, PyArray1<f32>>,
    ) {
        let d = &self.inner;
        (
            PyArray1::from_slice(py, &d.user),
            PyArray1::from_slice(py, &d.item),
            PyArray1::from_slice(py, &d.timestamp),
            PyArray1::from_slice(py, &d.event_type),
            PyArray1::from_slice(py, &d.event_value),
        )
    }

    /// Rows per user, by user index.
    fn history_lengths<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<u32>>> {
        let inner = Arc::clone(&self.inner);
        Ok(py
            .detached(move || Ok(inner.history_lengths()))?
            .into_pyarray(py))
    }

    /// The (min, max) history-length bounds for the given percentiles.
    fn history_length_bounds(
        &self,
        py: Python<'_>,
        min_percentile: f64,
        max_percentile: f64,
    ) -> PyResult<(f64, f64)> {
        let inner = Arc::clone(&self.inner);
        py.detached(move || {
            history_length_bounds(&inner.history_lengths(), min_percentile, max_percentile)
        })
    }

    /// Personalize's training-data selection by event type and event-value threshold.
    #[pyo3(signature = (event_type=None, event_value_threshold=None))]
    fn select(
        &self,
        py: Python<'_>,
        event_type: Option<String>,
        event_value_threshold: Option<f64>,
    ) -> PyResult<Self> {
        let inner = Arc::clone(&self.inner);
        py.detached(move || inner.select(event_type.as_deref(), event_value_threshold))
            .map(Self::wrap)
    }

    /// Drops users outside the history-length percentile bounds.
    fn filter_by_history_length(
        &self,
        py: Python<'_>,
        min_percentile: f64,
        max_percentile: f64,
    ) -> PyResult<Self> {
        let inner = Arc::clone(&self.inner);
        py.detached(move || filter_by_history_length(&inner, min_percentile, max_percentile))
            .map(Self::wrap)
    }

    /// Keeps the rows where `mask` is true, recording the drop under `rule`.
    fn subset(
        &self,
        py: Python<'_>,
        mask: PyReadonlyArray1<'_, bool>,
        rule: String,
    ) -> PyResult<Self> {
        let mask = mask.as_slice()?;
        if mask.len() != self.inner.len() {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "mask: expected {} values (one per row), found {}",
                self.inner.len(),
                mask.len()
            )));
        }
        let inner = Arc::clone(&self.inner);
        py.detached(move || {
            Ok(inner.retain_rows(&rule, "rows chosen by a mask".into(), |r| mask[r]))
        })
        .map(Self::wrap)
    }

    /// Raises InsufficientDataError below Personalize's minimum.
    fn check_minimum(&self, py: Python<'_>) -> PyResult<()> {
        let inner = Arc::clone(&self.inner);
        py.detached(move || inner.check_minimum())
    }

    /// Sessionizes; returns (dict of numpy arrays, num_sessions).
    fn sessionize<'py>(
        &self,
        py: Python<'py>,
        session_timeout: i64,
    ) -> PyResult<(Bound<'py, PyDict>, usize)> {
        let inner = Arc::clone(&self.inner);
        let s = py.detached(move || sessionize(&inner, session_timeout))?;
        let out = PyDict::new(py);
        // An array, not a HashMap: the dict's key order is this order in every process.
        let columns: [(&str, Bound<'py, PyAny>); 9] = [
            ("user_offsets", s.user_offsets.into_pyarray(py).into_any()),
            ("row", s.row.into_pyarray(py).into_any()),
            ("item_index", s.item.into_pyarray(py).into_any()),
            ("timestamp", s.timestamp.into_pyarray(py).into_any()),
            ("time_gap", s.time_gap.into_pyarray(py).into_any()),
            ("session_start", s.session_start.into_pyarray(py).into_any()),
            ("session_id", s.session_id.into_pyarray(py).into_any()),
            ("event_type", s.event_type.into_pyarray(py).into_any()),
            ("event_value", s.event_value.into_pyarray(py).into_any()),
        ];
        for (name, array) in columns {
            out.set_item(name, array)?;
        }
        Ok((out, s.num_sessions))
    }
}
