//! Real-time events across the boundary: event dicts in, event logs read and repaired.

use std::path::PathBuf;

use hrnn_core::engine::{self, Event};
use hrnn_core::Error;
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};

use crate::errors::{to_py_err, DetachExt};

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

/// `sent_at`: Unix seconds, or a timezone-aware `datetime` (as the AWS SDKs accept).
fn timestamp(value: &Bound<'_, PyAny>, index: usize) -> PyResult<f64> {
    let datetime = value.py().import("datetime")?.getattr("datetime")?;
    if value.is_instance_of::<PyFloat>()
        || value.is_instance_of::<PyInt>()
        || !value.is_instance(&datetime)?
    {
        return number(value, index, "sent_at");
    }
    if value.call_method0("utcoffset")?.is_none() {
        return Err(event_error(
            index,
            "sent_at",
            "expected Unix seconds or a timezone-aware datetime, found a naive datetime".into(),
        ));
    }
    value.call_method0("timestamp")?.extract::<f64>()
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
pub fn event_from_dict(py: Python<'_>, value: &Bound<'_, PyAny>, index: usize) -> PyResult<Event> {
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
                event.sent_at = timestamp(&value, index)?;
                has_time = true;
            }
            "item_id" => event.item_id = Some(string(&value, index, "item_id")?),
            "event_value" => event.event_value = Some(number(&value, index, "event_value")?),
            "event_id" => event.event_id = Some(string(&value, index, "event_id")?),
            "impression" => {
                if value.is_instance_of::<PyString>() {
                    return Err(event_error(
                        index,
                        "impression",
                        "expected a list of item ids, found a single str".into(),
                    ));
                }
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
                    let strict = PyDict::new(py);
                    strict.set_item("allow_nan", false)?;
                    py.import("json")?
                        .call_method("dumps", (&value,), Some(&strict))
                        .map_err(|e| {
                            event_error(
                                index,
                                "properties",
                                format!("expected a str or a dict serializable as strict JSON (no NaN or infinity): {e}"),
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

/// Reads an event log as training rows: (user ids, item ids, timestamps int64, event types, event
/// values float64 with NaN where absent, counts {torn_bytes, without_item, repeats, stitched}).
/// Repeats count once and anonymous sessions that carried a user id are stitched to it (see
/// `engine::event_log::as_interactions`); timestamps are `sent_at` rounded down.
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
    [(&'static str, u64); 4],
)> {
    let (rows, torn) = py.detached(|| {
        let contents = engine::event_log::read_event_log(&path)?;
        Ok((engine::event_log::log_rows(&contents), contents.torn_bytes))
    })?;
    let counts = [
        ("torn_bytes", torn),
        ("without_item", rows.without_item),
        ("repeats", rows.repeats),
        ("stitched", rows.stitched),
    ];
    Ok((
        rows.users,
        rows.items,
        rows.timestamps.into_pyarray(py),
        rows.event_types,
        rows.event_values.into_pyarray(py),
        counts,
    ))
}

/// Rewrites a corrupt (or older-format) event log with every intact record, keeping the original:
/// (records kept, events kept, damaged byte ranges, path of the original's copy, converted).
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn repair_event_log(
    py: Python<'_>,
    path: PathBuf,
) -> PyResult<(u64, u64, Vec<(u64, u64)>, String, bool)> {
    let r = py.detached(|| engine::event_log::repair_event_log(&path))?;
    let backup = r.backup.to_string_lossy().into_owned();
    Ok((r.records, r.events, r.skipped, backup, r.converted))
}
