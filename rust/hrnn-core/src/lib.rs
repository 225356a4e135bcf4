//! hrnn-core: the pure-Rust core of hrnn, a session-aware recommender in the style of Amazon
//! Personalize's aws-hrnn recipe. No Python here: the `hrnn-py` crate binds this to Python.

pub mod baselines;
mod column_parts;
mod csv_block;
pub mod csv_reader;
pub mod engine;
pub mod error;
pub mod history_filter;
pub mod huge_pages;
pub mod id_map;
pub mod id_table;
pub mod interactions;
mod record_limit;
mod separators;
pub mod sessions;
pub mod timestamps;
pub mod training;

pub use error::{Error, Result};
pub use interactions::{Columns, DropRule, Interactions};
pub use sessions::{sessionize, Sessions};
pub use timestamps::TimestampUnit;
