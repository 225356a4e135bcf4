//! hrnn-core: the pure-Rust core of hrnn, a session-aware recommender in the style of Amazon
//! Personalize's aws-hrnn recipe. No Python here: the `hrnn-py` crate binds this to Python.

pub mod baselines;
pub mod csv;
pub mod engine;
pub mod error;
pub mod history_filter;
pub mod huge_pages;
pub mod id_map;
pub mod id_table;
pub mod interactions;
pub mod sessions;
pub mod threads;
pub mod top_k;
pub mod training;

/// The CSV reader's former path (`csv_reader::read_csv`), kept so that callers need not change.
pub use self::csv as csv_reader;
pub use self::csv::{read_csv, read_csv_with_unit, timestamps, TimestampUnit};
pub use error::{Error, Result};
pub use interactions::{Columns, DropRule, Interactions};
pub use sessions::{sessionize, Sessions};
