//! The threads hrnn's parallel work runs on: `hrnn.set_num_threads` / `hrnn.get_num_threads`.
//!
//! By default every parallel step (CSV blocks, filters, sessionizing, batch and large single-query
//! scoring) uses rayon's global pool: one thread per core, or `RAYON_NUM_THREADS`. After
//! `set_num_threads(n)` the calls run on a dedicated pool of `n` threads instead.

use std::sync::{Arc, PoisonError, RwLock};

use pyo3::prelude::*;

use crate::errors::to_py_err;

static POOL: RwLock<Option<Arc<rayon::ThreadPool>>> = RwLock::new(None);

/// Runs `work` on the configured pool (or rayon's global one).
pub(crate) fn on_pool<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    let pool = POOL.read().unwrap_or_else(PoisonError::into_inner).clone();
    match pool {
        Some(pool) => pool.install(work),
        None => work(),
    }
}

/// The threads of the pool calls run on (the configured one, or rayon's global pool), read
/// without handing anything to it.
pub(crate) fn pool_threads() -> usize {
    POOL.read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map_or_else(rayon::current_num_threads, |pool| {
            pool.current_num_threads()
        })
}

/// Sets how many threads hrnn's parallel work may use (at least 1: checked by the core).
#[pyfunction]
pub fn set_num_threads(py: Python<'_>, n: usize) -> PyResult<()> {
    let pool = py
        .detach(|| hrnn_core::threads::thread_pool(n))
        .map_err(to_py_err)?;
    *POOL.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(pool));
    Ok(())
}

/// How many threads hrnn's parallel work uses.
#[pyfunction]
pub fn get_num_threads() -> usize {
    on_pool(rayon::current_num_threads)
}
