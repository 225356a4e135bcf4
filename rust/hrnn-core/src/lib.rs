//! hrnn-core: the pure-Rust core of hrnn, a session-aware recommender in the style of Amazon
//! Personalize's aws-hrnn recipe. No Python here: the `hrnn-py` crate binds this to Python.
//!
//! Modules:
//! - `csv`: the streaming, parallel reader of interactions CSV files (Personalize schema);
//! - `interactions`: the interactions table, column-wise with dense user/item/event-type indices;
//! - `id_map`: string id ↔ dense index maps, in order of first appearance;
//! - `id_table`: the hash table behind `id_map`, tuned for millions of short ids;
//! - `history_filter`: the percentile filter of users by history length;
//! - `sessions`: sessionizing — the one place where event-ordering rules live;
//! - `training`: CPU kernels of a training step, called by the torch trainer;
//! - `engine`: the inference engine — model loading, real-time state updates, scoring;
//! - `baselines`: the hot loops of the baselines the evaluation compares against;
//! - `top_k`: top-K selection, shared by the engine and the baselines;
//! - `threads`: the thread pool behind `hrnn.set_num_threads`;
//! - `huge_pages`: a global allocator asking Linux for transparent huge pages;
//! - `error`: the one error type, saying what was expected, what was found, and where.

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
