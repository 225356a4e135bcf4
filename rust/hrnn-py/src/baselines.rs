//! The baselines: `hrnn._hrnn.SessionKnnIndex`, the session-kNN index (a frozen handle on an
//! `Arc<hrnn_core::baselines::SessionKnn>`), and `item_popularity`, the distinct-user count per
//! item. Inputs must not be mutated during a call.

use std::sync::Arc;

use hrnn_core::baselines::{distinct_user_counts, SessionKnn, SknnParams};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::errors::DetachExt;

/// Training sessions indexed for session-kNN recommendations (immutable, thread-safe).
#[pyclass(frozen, module = "hrnn._hrnn")]
pub struct SessionKnnIndex {
    inner: Arc<SessionKnn>,
}

type TopK<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f64>>);

#[pymethods]
impl SessionKnnIndex {
    /// Indexes CSR sessions: `session_offsets` delimit each session's `items` and `timestamps`.
    #[new]
    fn new(
        py: Python<'_>,
        session_offsets: PyReadonlyArray1<'_, i64>,
        items: PyReadonlyArray1<'_, u32>,
        timestamps: PyReadonlyArray1<'_, i64>,
        num_items: usize,
    ) -> PyResult<Self> {
        let (offsets, items, timestamps) = (
            session_offsets.as_slice()?,
            items.as_slice()?,
            timestamps.as_slice()?,
        );
        let inner = py.detached(|| SessionKnn::new(offsets, items, timestamps, num_items))?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    #[getter]
    fn num_items(&self) -> usize {
        self.inner.num_items()
    }

    #[getter]
    fn num_sessions(&self) -> usize {
        self.inner.num_sessions()
    }

    /// Top `num_results` items and scores per query history (CSR), as `[queries, num_results]`.
    #[pyo3(signature = (
        history_offsets, history_items, query_time, num_results, *, exclude_seen, neighbours,
        sample_size, context_length, position_decay, recency_half_life, neighbour_position_decay,
        idf, popularity_backfill
    ))]
    #[allow(clippy::too_many_arguments)]
    fn recommend<'py>(
        &self,
        py: Python<'py>,
        history_offsets: PyReadonlyArray1<'py, i64>,
        history_items: PyReadonlyArray1<'py, i64>,
        query_time: PyReadonlyArray1<'py, i64>,
        num_results: usize,
        exclude_seen: bool,
        neighbours: usize,
        sample_size: usize,
        context_length: usize,
        position_decay: f64,
        recency_half_life: f64,
        neighbour_position_decay: f64,
        idf: bool,
        popularity_backfill: f64,
    ) -> PyResult<TopK<'py>> {
        let params = SknnParams {
            neighbours,
            sample_size,
            context_length,
            position_decay,
            recency_half_life,
            neighbour_position_decay,
            idf,
            popularity_backfill,
        };
        let (offsets, items, times) = (
            history_offsets.as_slice()?,
            history_items.as_slice()?,
            query_time.as_slice()?,
        );
        let index = Arc::clone(&self.inner);
        let (indices, scores) = py.detached(|| {
            index.recommend(&params, offsets, items, times, num_results, exclude_seen)
        })?;
        let rows = times.len();
        let shape = (rows, num_results);
        let indices =
            Array2::from_shape_vec(shape, indices).expect("recommend returns rows × num_results");
        let scores =
            Array2::from_shape_vec(shape, scores).expect("recommend returns rows × num_results");
        Ok((indices.into_pyarray(py), scores.into_pyarray(py)))
    }
}

/// Distinct users per item (int64 ``[num_items]``) of the rows ``(user[r], item[r])``: the
/// popularity count of the model format and of the popularity baseline.
#[pyfunction]
pub fn item_popularity<'py>(
    py: Python<'py>,
    user: PyReadonlyArray1<'py, i64>,
    item: PyReadonlyArray1<'py, i64>,
    num_items: usize,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let (user, item) = (user.as_slice()?, item.as_slice()?);
    let counts = py.detached(|| distinct_user_counts(user, item, num_items))?;
    Ok(counts.into_pyarray(py))
}
