//! `model.json`: the JSON fields the engine uses, each checked for type and range.

use rustc_hash::FxHashMap;
use serde_json::{Map, Value};

use super::{FORMAT_NAME, FORMAT_VERSION};
use crate::error::{Error, Result};

/// Largest hidden dimension accepted (keeps every size computation far from overflow).
const MAX_HIDDEN: i64 = 1 << 16;

/// The fields of `model.json` the engine uses.
pub(super) struct Metadata {
    pub version: i64,
    pub hidden: usize,
    pub session_timeout: i64,
    pub history_limit: usize,
    pub item_ids: Vec<String>,
    pub event_types: Vec<String>,
    pub user_ids: Vec<String>,
}

impl Metadata {
    /// Parses and validates `bytes`, the contents of `file`.
    pub(super) fn parse(bytes: &[u8], file: &str) -> Result<Self> {
        let err = |field: &str, message: String| Error::model_format(file, field, message);
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| err("<json>", format!("not valid JSON: {e}")))?;
        let Value::Object(root) = value else {
            return Err(err(
                "<json>",
                format!("expected a JSON object, found {}", kind(&value)),
            ));
        };
        let format = string_field(&root, "format", file)?;
        if format != FORMAT_NAME {
            return Err(err(
                "format",
                format!("expected {FORMAT_NAME:?}, found {format:?}"),
            ));
        }
        let version = int_field(&root, "format_version", file)?;
        if version > FORMAT_VERSION {
            return Err(err(
                "format_version",
                format!("version {version} is newer than this hrnn reads (≤ {FORMAT_VERSION}); upgrade hrnn"),
            ));
        }
        if version < 1 {
            return Err(err(
                "format_version",
                format!("expected ≥ 1, found {version}"),
            ));
        }
        let hyper = object_field(&root, "hyperparameters", file)?;
        // every recipe hyperparameter is recorded (docs/format.md), though serving reads only H
        for name in [
            "bptt",
            "recency_mask",
            "min_user_history_length_percentile",
            "max_user_history_length_percentile",
        ] {
            field(hyper, name, file).map_err(|e| rename(e, &format!("hyperparameters.{name}")))?;
        }
        let hidden = int_field(hyper, "hidden_dimension", file)
            .map_err(|e| rename(e, "hyperparameters.hidden_dimension"))?;
        if !(1..=MAX_HIDDEN).contains(&hidden) {
            return Err(err(
                "hyperparameters.hidden_dimension",
                format!("expected an integer in [1, {MAX_HIDDEN}], found {hidden}"),
            ));
        }
        object_field(&root, "training", file)?;
        object_field(&root, "data_summary", file)?;
        string_field(&root, "hrnn_version", file)?;
        let session_timeout = int_field(&root, "session_timeout", file)?;
        if session_timeout < 0 {
            return Err(err(
                "session_timeout",
                format!("expected ≥ 0 seconds, found {session_timeout}"),
            ));
        }
        let history_limit = int_field(&root, "history_limit", file)?;
        let history_limit = usize::try_from(history_limit).map_err(|_| {
            err(
                "history_limit",
                format!("expected ≥ 0, found {history_limit}"),
            )
        })?;
        let item_ids = id_list(&root, "item_ids", file)?;
        if item_ids.is_empty() {
            return Err(err(
                "item_ids",
                "expected at least one item, found an empty list".into(),
            ));
        }
        if item_ids.len() > u32::MAX as usize / 2 {
            return Err(err(
                "item_ids",
                format!("too many items ({})", item_ids.len()),
            ));
        }
        let event_types = id_list(&root, "event_types", file)?;
        if event_types.is_empty() {
            return Err(err(
                "event_types",
                "expected at least one entry (`[\"\"]` without EVENT_TYPE)".into(),
            ));
        }
        let user_ids = id_list(&root, "user_ids", file)?;
        Ok(Self {
            version,
            hidden: hidden as usize,
            session_timeout,
            history_limit,
            item_ids,
            event_types,
            user_ids,
        })
    }
}

fn rename(error: Error, field: &str) -> Error {
    match error {
        Error::ModelFormat { file, message, .. } => Error::ModelFormat {
            file,
            field: field.to_owned(),
            message,
        },
        other => other,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn field<'a>(obj: &'a Map<String, Value>, name: &str, file: &str) -> Result<&'a Value> {
    obj.get(name)
        .ok_or_else(|| Error::model_format(file, name, "missing required field"))
}

fn string_field<'a>(obj: &'a Map<String, Value>, name: &str, file: &str) -> Result<&'a str> {
    match field(obj, name, file)? {
        Value::String(s) => Ok(s),
        other => Err(Error::model_format(
            file,
            name,
            format!("expected a string, found {}", kind(other)),
        )),
    }
}

fn int_field(obj: &Map<String, Value>, name: &str, file: &str) -> Result<i64> {
    match field(obj, name, file)? {
        Value::Number(n) => n.as_i64().ok_or_else(|| {
            Error::model_format(file, name, format!("expected an integer, found {n}"))
        }),
        other => Err(Error::model_format(
            file,
            name,
            format!("expected an integer, found {}", kind(other)),
        )),
    }
}

fn object_field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    file: &str,
) -> Result<&'a Map<String, Value>> {
    match field(obj, name, file)? {
        Value::Object(o) => Ok(o),
        other => Err(Error::model_format(
            file,
            name,
            format!("expected an object, found {}", kind(other)),
        )),
    }
}

/// A list of distinct strings.
fn id_list(obj: &Map<String, Value>, name: &str, file: &str) -> Result<Vec<String>> {
    let Value::Array(values) = field(obj, name, file)? else {
        return Err(Error::model_format(
            file,
            name,
            "expected a list of strings",
        ));
    };
    let mut ids = Vec::with_capacity(values.len());
    let mut seen = FxHashMap::default();
    seen.reserve(values.len());
    for (i, v) in values.iter().enumerate() {
        let Value::String(s) = v else {
            return Err(Error::model_format(
                file,
                name,
                format!("entry {i}: expected a string, found {}", kind(v)),
            ));
        };
        if let Some(first) = seen.insert(s.as_str(), i) {
            return Err(Error::model_format(
                file,
                name,
                format!("ids must be distinct: {s:?} at entries {first} and {i}"),
            ));
        }
        ids.push(s.clone());
    }
    Ok(ids)
}
