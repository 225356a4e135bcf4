//! The append-only event log: every accepted real-time event, durable before `put_events` returns.
//!
//! - `format`: the bytes (magic, checksummed record headers, one record per call) and the reader,
//!   which tells a torn tail from corruption;
//! - `writer`: the open log — an exclusive lock, group commit, and a failed write that leaves the
//!   file as it was;
//! - `repair`: salvaging every intact record of a corrupt log into a fresh one;
//! - `as_interactions`: a log as training rows (repeats out, anonymous sessions stitched).

pub mod as_interactions;
pub mod format;
pub mod repair;
pub mod writer;

pub use as_interactions::{log_rows, LogRows};
pub use format::{read_event_log, LogContents, Record, MAX_RECORD};
pub use repair::{repair_event_log, RepairReport};
pub use writer::EventLog;
