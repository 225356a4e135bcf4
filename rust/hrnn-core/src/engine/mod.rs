//! The inference engine: loads a model directory (docs/format.md), keeps each user's recurrent
//! state up to date from real-time events, and scores the whole catalogue (docs/model.md).
//!
//! One concept per file:
//! - `model_dir`: reads and validates `model.json` + `model.safetensors` into a [`Model`];
//! - `model`: the immutable weights, in the layouts the kernels want;
//! - `kernels`: runtime CPU-feature dispatch and the portable, SIMD-friendly inner loops;
//! - `kernels_x86`: the AVX2 + FMA scoring loop (`std::arch` intrinsics);
//! - `cell`: one step of the gated recurrent cell and the readout gate;
//! - `topk`: fused scoring — logits, running log-sum-exp and top-K in one pass over the items;
//! - `batch`: scoring many users at once, register tiles of users over L2 blocks of the table;
//! - `blocks`: the independent blocks of an ensemble's recurrent cell;
//! - `events`: real-time events, their validation and the limits of one call;
//! - `dedup`: which events were already accepted (a bounded window of identities);
//! - `state`: the per-user state store (sharded locks);
//! - `seen`: what each user interacted with (the `exclude_seen` filter, by event type);
//! - `event_log`: the append-only, checksummed, locked, group-committed event log;
//! - `fingerprint`: which model an event log's events were applied to;
//! - `fma_probe`: the measured fp32 multiply-add peak (benchmarks report kernels against it);
//! - `generation`: one model and the user states built on it;
//! - `queries`: GetRecommendations and friends, on a snapshot of one generation;
//! - `recommender`: the public facade (load, snapshot, stats, close);
//! - `updates`: real-time updates (`put_events`), the replay of the event log, and `swap`;
//! - `test_fixtures` (tests only): scratch directories and small model directories.

pub mod batch;
pub mod blocks;
pub mod cell;
pub mod dedup;
pub mod event_log;
pub mod events;
pub mod fingerprint;
pub mod fma_probe;
mod generation;
pub mod kernels;
#[cfg(target_arch = "x86_64")]
mod kernels_x86;
pub mod model;
pub mod model_dir;
pub mod queries;
pub mod recommender;
pub mod seen;
pub mod state;
#[cfg(test)]
pub(crate) mod test_fixtures;
pub mod topk;
pub mod updates;

pub use events::Event;
pub use events::EventLimits;
pub use model::Model;
pub use recommender::{Options, Query, Recommender, Snapshot, Stats};
pub use seen::SeenFilter;
pub use updates::SwapReport;
