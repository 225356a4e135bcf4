//! The one error type of hrnn-core. Every variant says what was expected and what was found, and
//! where (file, line, column, value), so the binding layer can map it to a typed Python exception
//! without losing detail.

use std::path::PathBuf;

/// Errors raised by hrnn-core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed interactions file or column.
    #[error("{file}: line {line}, column {column}: {message} (found {value:?})")]
    Schema {
        /// The file (or `<arrays>` for in-memory input).
        file: String,
        /// 1-based line number in the file (row number + 1 for in-memory input).
        line: u64,
        /// The column name as written in the header.
        column: String,
        /// The offending value (truncated to 80 characters).
        value: String,
        /// What was expected.
        message: String,
    },
    /// Too little data after selection and filtering to train a model.
    #[error("insufficient data: {0}")]
    InsufficientData(String),
    /// A plain argument mistake (maps to `ValueError`).
    #[error("{name}: {message}")]
    InvalidArgument {
        /// The parameter's name.
        name: String,
        /// What was expected and what was found.
        message: String,
    },
    /// A model directory that does not match docs/format.md.
    #[error("{file}: {field}: {message}")]
    ModelFormat {
        /// The file inside the model directory.
        file: String,
        /// The tensor or JSON field.
        field: String,
        /// What was expected and what was found.
        message: String,
    },
    /// A real-time event that fails validation.
    #[error("events[{index}].{field}: {message}")]
    Event {
        /// Index of the event in the call.
        index: usize,
        /// The field (snake_case, as in the Python API).
        field: String,
        /// What was expected and what was found.
        message: String,
    },
    /// An event log that cannot be used as it is: corrupt before its end, not a regular file, or in
    /// a format this version reads but does not append to.
    #[error("{}: {message}", path.display())]
    EventLog {
        /// The log.
        path: PathBuf,
        /// What is wrong, where (byte offset), and the way out.
        message: String,
    },
    /// Another process (or another recommender in this one) holds the event log for writing.
    #[error(
        "{}: the event log is open for writing elsewhere (another process or Recommender holds its \
         lock); one writer per log — readers such as Interactions.from_event_log need no lock",
        path.display()
    )]
    EventLogLocked {
        /// The log.
        path: PathBuf,
    },
    /// An I/O failure on a named path.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The underlying error (its kind decides the Python exception).
        #[source]
        source: std::io::Error,
    },
}

/// Result alias used across hrnn-core.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An invalid argument named `name`.
    pub fn invalid_argument(name: &str, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name: name.to_owned(),
            message: message.into(),
        }
    }

    /// A model-format error.
    pub fn model_format(file: &str, field: &str, message: impl Into<String>) -> Self {
        Error::ModelFormat {
            file: file.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Shortens a value for an error message (char-boundary safe).
pub(crate) fn excerpt(value: &[u8]) -> String {
    const LIMIT: usize = 80;
    let text = String::from_utf8_lossy(value);
    if text.chars().count() <= LIMIT {
        text.into_owned()
    } else {
        let mut short: String = text.chars().take(LIMIT).collect();
        short.push('…');
        short
    }
}
