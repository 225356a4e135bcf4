//! Baseline recommenders that the evaluation compares HRNN against (see `python/hrnn/evaluation`).
//!
//! Only the hot loops live here; splitting data and computing metrics stay in Python.

pub mod sknn;

pub use crate::top_k::top_k;
pub use sknn::{SessionKnn, SknnParams};
