//! The bytes of an event log (docs/format.md, "Event log"), and how a reader tells a torn tail from
//! corruption.
//!
//! A log is the 8-byte magic [`MAGIC`] followed by records. Each record is a 12-byte header —
//! `[len: u32 LE][crc32(payload): u32 LE][crc32(the first 8 header bytes): u32 LE]` — and `len`
//! bytes of JSON payload, one [`Record`]: a model marker or the accepted events of one call. The
//! header's own checksum means a flipped bit in a length is caught where it is, instead of making
//! a record in the middle look like a torn last one.
//!
//! Only a crash can shorten a log, and only at its end. So a record that fails to parse is a torn
//! tail exactly when it is incomplete (the file ends inside it), or when everything from inside it
//! to the end of the file is zero bytes (the file grew but its blocks were never written). Any
//! other failure is corruption: an error naming the byte offset, repaired only on request
//! ([`super::repair`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::super::events::Event;
use crate::error::{Error, Result};

/// The first bytes of every event log written by this version.
pub const MAGIC: &[u8; 8] = b"HRNNEVT2";
/// The magic of format 1 (one event per record, no header checksum): read, never appended to.
pub const MAGIC_V1: &[u8; 8] = b"HRNNEVT1";
/// Bytes of a record header.
pub const HEADER: usize = 12;
/// Longest record payload a reader accepts (and a writer may write): 64 MiB.
pub const MAX_RECORD: usize = 64 << 20;

/// One record's payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    /// From here on, events were applied to the model with this fingerprint.
    Model {
        /// See [`crate::engine::fingerprint`].
        fingerprint: String,
    },
    /// The accepted events of one `put_events` call: all of them are in the log, or none is.
    Events(Vec<Event>),
}

/// What reading a log found.
#[derive(Debug, Default)]
pub struct LogContents {
    /// Every event of every intact record, in order.
    pub events: Vec<Event>,
    /// Intact event records (calls).
    pub calls: u64,
    /// The fingerprint of the last model marker, if any.
    pub model: Option<String>,
    /// Each model marker as `(index in events of the first event after it, fingerprint)`.
    pub markers: Vec<(usize, String)>,
    /// Bytes of a torn tail (0 when the log ended cleanly).
    pub torn_bytes: u64,
    /// Length of the intact prefix of the file (0 when not even the magic is complete).
    pub valid_len: u64,
    /// The file is in format 1 (read-only; `hrnn repair-log` rewrites it in this format).
    pub legacy: bool,
}

impl LogContents {
    /// Every event with the fingerprint of the model it was recorded for (the marker before it).
    pub fn events_with_models(&self) -> impl Iterator<Item = (&Event, Option<&str>)> {
        let mut next = 0;
        let mut current: Option<&str> = None;
        self.events.iter().enumerate().map(move |(i, event)| {
            while next < self.markers.len() && self.markers[next].0 <= i {
                current = Some(self.markers[next].1.as_str());
                next += 1;
            }
            (event, current)
        })
    }
}

/// A corrupt log: names the file and what is wrong where.
pub(crate) fn corrupt(path: &Path, message: String) -> Error {
    Error::EventLog {
        path: path.to_owned(),
        message,
    }
}

/// Appends `record`'s bytes to `out`; fails if the payload exceeds [`MAX_RECORD`].
pub fn encode(record: &Record, out: &mut Vec<u8>) -> std::result::Result<(), String> {
    let payload = serde_json::to_vec(record).expect("a Record always serializes");
    if payload.len() > MAX_RECORD {
        return Err(format!(
            "record of {} bytes exceeds the event log's limit of {MAX_RECORD}",
            payload.len()
        ));
    }
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32fast::hash(&payload).to_le_bytes();
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&len);
    head[4..].copy_from_slice(&crc);
    out.extend_from_slice(&head);
    out.extend_from_slice(&crc32fast::hash(&head).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// A record found at some offset.
pub(crate) enum Found {
    /// A complete, checksummed record of `len` bytes in all.
    Record(Record, usize),
    /// The header is not a record header; the message says why.
    BadHeader(String),
    /// The header is sound but the payload, ending at the given offset, is not; says why.
    BadPayload(String, usize),
    /// The file ends inside what the header says is a record (or inside the header).
    Incomplete,
}

/// Tries to read a format-2 record at the start of `rest`.
pub(crate) fn record_at(rest: &[u8]) -> Found {
    if rest.len() < HEADER {
        return Found::Incomplete;
    }
    let word = |i: usize| u32::from_le_bytes(rest[i..i + 4].try_into().expect("4 bytes"));
    if crc32fast::hash(&rest[..8]) != word(8) {
        return Found::BadHeader("header checksum mismatch".into());
    }
    let len = word(0) as usize;
    if len > MAX_RECORD {
        return Found::BadHeader(format!("record length {len} exceeds {MAX_RECORD}"));
    }
    let Some(payload) = rest.get(HEADER..HEADER + len) else {
        return Found::Incomplete;
    };
    if crc32fast::hash(payload) != word(4) {
        return Found::BadPayload("payload checksum mismatch".into(), HEADER + len);
    }
    match serde_json::from_slice(payload) {
        Ok(record) => Found::Record(record, HEADER + len),
        Err(e) => Found::BadPayload(format!("not a valid record ({e})"), HEADER + len),
    }
}

/// Tries to read a format-1 record (`[len][crc32(payload)][one event as JSON]`).
pub(crate) fn legacy_record_at(rest: &[u8]) -> Found {
    if rest.len() < 8 {
        return Found::Incomplete;
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    if len > MAX_RECORD {
        return Found::BadHeader(format!("record length {len} exceeds {MAX_RECORD}"));
    }
    let Some(payload) = rest.get(8..8 + len) else {
        return Found::Incomplete;
    };
    if crc32fast::hash(payload) != crc {
        return Found::BadPayload("payload checksum mismatch".into(), 8 + len);
    }
    match serde_json::from_slice::<Event>(payload) {
        Ok(event) => Found::Record(Record::Events(vec![event]), 8 + len),
        Err(e) => Found::BadPayload(format!("not a valid event ({e})"), 8 + len),
    }
}

/// Reads every record of the log at `path` without changing it (a torn tail is reported, not an
/// error). Refuses anything but a regular file.
pub fn read_event_log(path: &Path) -> Result<LogContents> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(corrupt(path, "not a regular file".into()));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes, path)
}

/// Parses a whole log held in memory.
pub fn parse(bytes: &[u8], path: &Path) -> Result<LogContents> {
    let mut out = LogContents::default();
    if bytes.len() < MAGIC.len() {
        // A crash while creating the file leaves a prefix of the magic (or nothing): an empty log.
        if MAGIC.starts_with(bytes) || bytes.iter().all(|&b| b == 0) {
            out.torn_bytes = bytes.len() as u64;
            return Ok(out);
        }
        return Err(corrupt(path, "not an hrnn event log (bad magic)".into()));
    }
    let (reader, header_len): (fn(&[u8]) -> Found, usize) = match &bytes[..MAGIC.len()] {
        m if m == MAGIC => (record_at, HEADER),
        m if m == MAGIC_V1 => {
            out.legacy = true;
            (legacy_record_at, 8)
        }
        m if m.iter().all(|&b| b == 0) && bytes.iter().all(|&b| b == 0) => {
            out.torn_bytes = bytes.len() as u64;
            return Ok(out);
        }
        _ => return Err(corrupt(path, "not an hrnn event log (bad magic)".into())),
    };
    // Where the run of zero bytes that ends the file starts.
    let zeros_from = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let mut at = MAGIC.len();
    while at < bytes.len() {
        match reader(&bytes[at..]) {
            Found::Record(record, len) => {
                match record {
                    Record::Model { fingerprint } => {
                        out.markers.push((out.events.len(), fingerprint.clone()));
                        out.model = Some(fingerprint);
                    }
                    Record::Events(events) => {
                        out.calls += 1;
                        out.events.extend(events);
                    }
                }
                at += len;
            }
            Found::Incomplete => break,
            bad @ (Found::BadHeader(_) | Found::BadPayload(..)) => {
                // A zero-filled tail (the file grew past what was written before a crash): the run
                // of zeros that ends the file starts inside this record's header, or inside its
                // payload when the header is sound.
                let (why, torn) = match bad {
                    Found::BadHeader(why) => (why, zeros_from < at + header_len),
                    Found::BadPayload(why, len) => (why, zeros_from < at + len),
                    _ => unreachable!("matched above"),
                };
                if torn {
                    break;
                }
                return Err(corrupt(
                    path,
                    format!(
                        "record at byte {at}: {why}, with {} more bytes after it: the log is \
                         corrupt, not torn (`hrnn repair-log {}` keeps a copy and salvages every \
                         intact record)",
                        bytes.len() - at,
                        path.display()
                    ),
                ));
            }
        }
    }
    out.valid_len = at as u64;
    out.torn_bytes = (bytes.len() - at) as u64;
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn event(i: usize) -> Event {
        Event {
            user_id: Some(format!("u{}", i % 3)),
            session_id: "s".into(),
            event_type: "click".into(),
            sent_at: 1000.0 + i as f64,
            item_id: Some(format!("i{i}")),
            event_value: None,
            event_id: Some(format!("e{i}")),
            impression: vec![],
            properties: None,
        }
    }

    /// A log of a model marker and three calls of 1, 2 and 3 events.
    pub(crate) fn sample() -> (Vec<u8>, Vec<Event>) {
        let mut bytes = MAGIC.to_vec();
        encode(
            &Record::Model {
                fingerprint: "f".into(),
            },
            &mut bytes,
        )
        .unwrap();
        let events: Vec<Event> = (0..6).map(event).collect();
        for range in [0..1, 1..3, 3..6] {
            encode(&Record::Events(events[range].to_vec()), &mut bytes).unwrap();
        }
        (bytes, events)
    }

    #[test]
    fn every_single_bit_flip_is_an_error_or_changes_nothing() {
        let (bytes, events) = sample();
        let path = Path::new("flip.log");
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            if let Ok(contents) = parse(&bad, path) {
                assert_eq!(contents.events, events, "bit {bit}");
            }
        }
    }

    #[test]
    fn a_cut_anywhere_keeps_every_whole_call_before_it() {
        let (bytes, events) = sample();
        for cut in 0..bytes.len() {
            let contents = parse(&bytes[..cut], Path::new("cut.log")).unwrap();
            let n = contents.events.len();
            assert!([0, 1, 3].contains(&n), "cut {cut}: {n} events");
            assert_eq!(contents.events, events[..n]);
            assert_eq!(contents.valid_len + contents.torn_bytes, cut as u64);
        }
        assert_eq!(parse(&bytes, Path::new("whole.log")).unwrap().calls, 3);
    }

    #[test]
    fn a_zero_filled_tail_is_torn_and_zeros_in_the_middle_are_corruption() {
        let (bytes, events) = sample();
        let path = Path::new("zeros.log");
        let mut grown = bytes.clone();
        grown.extend(std::iter::repeat_n(0, 4096));
        let contents = parse(&grown, path).unwrap();
        assert_eq!(
            (contents.events, contents.torn_bytes),
            (events.clone(), 4096)
        );
        // The last record's second half never reached the disk.
        let mut half = bytes.clone();
        let n = half.len();
        half[n - 20..].fill(0);
        half.extend(std::iter::repeat_n(0, 100));
        assert_eq!(parse(&half, path).unwrap().events, events[..3]);
        // Zeros followed by data: corruption.
        let mut hole = bytes.clone();
        hole[MAGIC.len() + 20..MAGIC.len() + 30].fill(0);
        let err = parse(&hole, path).unwrap_err().to_string();
        assert!(
            err.contains("corrupt, not torn") && err.contains("repair-log"),
            "{err}"
        );
    }

    #[test]
    fn format_1_logs_are_read() {
        let mut bytes = MAGIC_V1.to_vec();
        for i in 0..2 {
            let payload = serde_json::to_vec(&event(i)).unwrap();
            bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            bytes.extend_from_slice(&payload);
        }
        let contents = parse(&bytes, Path::new("v1.log")).unwrap();
        assert!(contents.legacy);
        assert_eq!(contents.events, vec![event(0), event(1)]);
        assert!(parse(b"garbage!garbage", Path::new("g.log"))
            .unwrap_err()
            .to_string()
            .contains("bad magic"));
    }
}
