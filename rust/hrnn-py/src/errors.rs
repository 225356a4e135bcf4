//! Maps hrnn-core errors to the Python exception hierarchy of `hrnn.exceptions`, in one place.

use hrnn_core::Error;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyPermissionError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// Loads an exception class from `hrnn.exceptions` once, then serves it from a cache.
fn exception_class<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
) -> PyResult<Bound<'py, PyType>> {
    cell.get_or_try_init(py, || -> PyResult<Py<PyType>> {
        Ok(py
            .import("hrnn.exceptions")?
            .getattr(name)?
            .cast_into::<PyType>()?
            .unbind())
    })
    .map(|class| class.bind(py).clone())
}

static SCHEMA: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static INSUFFICIENT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static MODEL_FORMAT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static EVENT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static EVENT_LOG: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static EVENT_LOG_LOCKED: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn typed(cell: &'static PyOnceLock<Py<PyType>>, name: &str, message: String) -> PyErr {
    Python::attach(|py| match exception_class(py, cell, name) {
        Ok(class) => PyErr::from_type(class, message),
        Err(import_error) => import_error,
    })
}

/// Converts a core error into the matching Python exception.
pub fn to_py_err(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::Schema { .. } => typed(&SCHEMA, "SchemaError", message),
        Error::InsufficientData(_) => typed(&INSUFFICIENT, "InsufficientDataError", message),
        Error::ModelFormat { .. } => typed(&MODEL_FORMAT, "ModelFormatError", message),
        Error::Event { .. } => typed(&EVENT, "EventError", message),
        Error::EventLog { .. } => typed(&EVENT_LOG, "EventLogError", message),
        Error::EventLogLocked { .. } => typed(&EVENT_LOG_LOCKED, "EventLogLockedError", message),
        Error::InvalidArgument { .. } => PyValueError::new_err(message),
        Error::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(message),
            _ => PyOSError::new_err(message),
        },
    }
}

/// Runs `work` with the GIL released, on hrnn's threads (see `threads`), and converts its error:
/// every O(n) call goes through here.
pub trait DetachExt {
    /// Runs `work` detached from the interpreter.
    fn detached<T: Send>(self, work: impl FnOnce() -> hrnn_core::Result<T> + Send) -> PyResult<T>;

    /// Runs sequential `work` detached from the interpreter, on the calling thread: no hand-off to
    /// the configured pool (which costs ~20 µs), for calls that never fan out (one user's events,
    /// one query over a catalogue too small to split).
    fn detached_here<T: Send>(
        self,
        work: impl FnOnce() -> hrnn_core::Result<T> + Send,
    ) -> PyResult<T>;
}

impl DetachExt for Python<'_> {
    fn detached<T: Send>(self, work: impl FnOnce() -> hrnn_core::Result<T> + Send) -> PyResult<T> {
        self.detach(|| crate::threads::on_pool(work))
            .map_err(to_py_err)
    }

    fn detached_here<T: Send>(
        self,
        work: impl FnOnce() -> hrnn_core::Result<T> + Send,
    ) -> PyResult<T> {
        self.detach(work).map_err(to_py_err)
    }
}
