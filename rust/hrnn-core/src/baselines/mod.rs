//! Baseline recommenders that the evaluation compares HRNN against (see `python/hrnn/evaluation`).
//!
//! Only the hot loops live here; splitting data and computing metrics stay in Python.
//! - `popularity`: distinct users per item (also the model's `items.popularity`);
//! - `sknn`: the session-kNN index and its recommendations.
//!
//! Top-K selection is shared with the engine (`crate::top_k`).

pub mod popularity;
pub mod sknn;

pub use crate::top_k::top_k;
pub use popularity::distinct_user_counts;
pub use sknn::{SessionKnn, SknnParams};
