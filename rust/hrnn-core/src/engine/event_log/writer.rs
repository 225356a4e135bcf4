//! The append-only event log: every accepted real-time event, durable before `put_events` returns.
//!
//! File layout: the 8-byte magic `HRNNEVT1`, then records `[len: u32 LE][crc32(payload): u32 LE]
//! [payload: len bytes of JSON]`, one [`Event`] per record. Replaying the records in file order
//! reproduces every user's state (a user's events are appended under that user's state lock, in
//! the order they were applied).
//!
//! Durability uses group commit: callers append records to an in-memory buffer, then wait until
//! some caller (the "leader") has written the buffer and fsynced the file past their records. One
//! fsync thus covers every caller that arrived while the previous one ran.
//!
//! A crash can leave the last record torn (short, or with a checksum that fails at the very end of
//! the file). Opening the log detects that, drops the torn bytes (truncating the file) and reports
//! them; every record before it is kept. A bad record followed by more data is corruption, not a
//! torn write, and is an error.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::events::Event;
use crate::error::{Error, Result};

/// The first bytes of every event log.
pub const MAGIC: &[u8; 8] = b"HRNNEVT1";
/// Longest record payload accepted when reading (a corrupt length cannot trigger a huge allocation).
const MAX_RECORD: usize = 1 << 24;

/// What reading a log found.
#[derive(Debug, Default)]
pub struct LogContents {
    /// Every intact record, in order.
    pub events: Vec<Event>,
    /// Bytes of a torn last record (0 when the log ended cleanly).
    pub torn_bytes: u64,
    /// Length of the intact prefix of the file.
    pub valid_len: u64,
}

fn corrupt(path: &Path, message: String) -> Error {
    Error::io(path, std::io::Error::new(ErrorKind::InvalidData, message))
}

/// Reads every record of the log at `path` (a torn last record is reported, not an error).
pub fn read_event_log(path: &Path) -> Result<LogContents> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes, path)
}

fn parse(bytes: &[u8], path: &Path) -> Result<LogContents> {
    if bytes.len() < MAGIC.len() {
        // A crash while creating the file leaves a prefix of the magic: an empty log.
        if MAGIC.starts_with(bytes) {
            return Ok(LogContents {
                events: Vec::new(),
                torn_bytes: bytes.len() as u64,
                valid_len: 0,
            });
        }
        return Err(corrupt(path, "not an hrnn event log (bad magic)".into()));
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt(path, "not an hrnn event log (bad magic)".into()));
    }
    let mut out = LogContents::default();
    let mut at = MAGIC.len();
    while at < bytes.len() {
        let rest = &bytes[at..];
        let torn = |out: &mut LogContents| {
            out.torn_bytes = rest.len() as u64;
            out.valid_len = at as u64;
        };
        if rest.len() < 8 {
            torn(&mut out);
            return Ok(out);
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if len > MAX_RECORD {
            return Err(corrupt(
                path,
                format!("record at byte {at}: implausible length {len}"),
            ));
        }
        if rest.len() < 8 + len {
            torn(&mut out);
            return Ok(out);
        }
        let payload = &rest[8..8 + len];
        if crc32fast::hash(payload) != crc {
            if rest.len() == 8 + len {
                torn(&mut out);
                return Ok(out);
            }
            return Err(corrupt(
                path,
                format!("record at byte {at}: checksum mismatch (the log is corrupt)"),
            ));
        }
        let event: Event = serde_json::from_slice(payload).map_err(|e| {
            corrupt(
                path,
                format!("record at byte {at}: not a valid event ({e})"),
            )
        })?;
        out.events.push(event);
        at += 8 + len;
    }
    out.valid_len = at as u64;
    Ok(out)
}

/// Encodes one record.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    let payload = serde_json::to_vec(event).expect("an Event always serializes");
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

struct Pending {
    buffer: Vec<u8>,
    /// Records appended so far (durable or not).
    appended: u64,
}

struct SyncState {
    /// Records known to be on disk.
    durable: u64,
    /// Whether some caller is writing + fsyncing right now.
    leader_active: bool,
    /// Set when a write or fsync failed: the log can no longer promise durability.
    failed: Option<String>,
}

/// An open event log, shared by every thread of a recommender.
pub struct EventLog {
    path: PathBuf,
    pending: Mutex<Pending>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    file: Mutex<File>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl EventLog {
    /// Opens (creating if needed) the log at `path`, returning it and what it already holds. A torn
    /// last record is cut off the file.
    pub fn open(path: &Path) -> Result<(Self, LogContents)> {
        let io = |e| Error::io(path, e);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        let contents = read_event_log(path)?;
        if contents.valid_len < MAGIC.len() as u64 {
            file.set_len(0).map_err(io)?;
            file.write_all(MAGIC).map_err(io)?;
            file.sync_all().map_err(io)?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                // Make the new file's directory entry durable too (not possible on every platform).
                if let Ok(dir) = File::open(parent) {
                    let _ = dir.sync_all();
                }
            }
        } else if contents.torn_bytes > 0 {
            file.set_len(contents.valid_len).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let records = contents.events.len() as u64;
        let log = Self {
            path: path.to_owned(),
            pending: Mutex::new(Pending {
                buffer: Vec::new(),
                appended: records,
            }),
            sync: Mutex::new(SyncState {
                durable: records,
                leader_active: false,
                failed: None,
            }),
            synced: Condvar::new(),
            file: Mutex::new(file),
        };
        Ok((log, contents))
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `event` to the buffer; returns its ticket for [`EventLog::commit`]. Call it while
    /// holding the lock that ordered the event's application, so the log keeps that order.
    pub fn append(&self, event: &Event) -> u64 {
        let mut pending = lock(&self.pending);
        encode(event, &mut pending.buffer);
        pending.appended += 1;
        pending.appended
    }

    /// Records appended so far.
    pub fn records(&self) -> u64 {
        lock(&self.pending).appended
    }

    /// Returns once every record up to `ticket` is written and fsynced (group commit).
    pub fn commit(&self, ticket: u64) -> Result<()> {
        let mut sync = lock(&self.sync);
        loop {
            if let Some(message) = &sync.failed {
                return Err(Error::io(
                    &self.path,
                    std::io::Error::other(message.clone()),
                ));
            }
            if sync.durable >= ticket {
                return Ok(());
            }
            if sync.leader_active {
                sync = self.synced.wait(sync).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Become the leader: write everything appended so far, then one fsync for all of it.
            sync.leader_active = true;
            drop(sync);
            let (buffer, upto) = {
                let mut pending = lock(&self.pending);
                (std::mem::take(&mut pending.buffer), pending.appended)
            };
            let result = {
                let mut file = lock(&self.file);
                file.write_all(&buffer).and_then(|()| file.sync_data())
            };
            sync = lock(&self.sync);
            sync.leader_active = false;
            match result {
                Ok(()) => sync.durable = sync.durable.max(upto),
                Err(e) => sync.failed = Some(format!("event log write failed: {e}")),
            }
            self.synced.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn event(i: usize) -> Event {
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

    #[test]
    fn group_commit_from_many_threads_keeps_every_record() {
        let dir = crate::engine::model_dir::tests::temp_dir("log-threads");
        let path = dir.join("events.log");
        let (log, contents) = EventLog::open(&path).unwrap();
        assert!(contents.events.is_empty());
        let log = Arc::new(log);
        std::thread::scope(|s| {
            for t in 0..6 {
                let log = Arc::clone(&log);
                s.spawn(move || {
                    for i in 0..20 {
                        let ticket = log.append(&event(t * 100 + i));
                        log.commit(ticket).unwrap();
                    }
                });
            }
        });
        let back = read_event_log(&path).unwrap();
        assert_eq!(back.events.len(), 120);
        assert_eq!(back.torn_bytes, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn torn_tail_is_dropped_and_corruption_is_an_error() {
        let dir = crate::engine::model_dir::tests::temp_dir("log-torn");
        let path = dir.join("events.log");
        {
            let (log, _) = EventLog::open(&path).unwrap();
            for i in 0..3 {
                let t = log.append(&event(i));
                log.commit(t).unwrap();
            }
        }
        let full = std::fs::read(&path).unwrap();
        for cut in 1..40 {
            std::fs::write(&path, &full[..full.len() - cut]).unwrap();
            let (log, contents) = EventLog::open(&path).unwrap();
            assert_eq!(contents.events, vec![event(0), event(1)], "cut {cut}");
            assert!(contents.torn_bytes > 0);
            assert_eq!(log.records(), 2);
            // The file was truncated to the intact prefix.
            assert_eq!(std::fs::metadata(&path).unwrap().len(), contents.valid_len);
        }
        // A flipped byte inside the middle record, with data after it: corruption.
        let mut bad = full.clone();
        bad[MAGIC.len() + 8 + 3 + (full.len() - MAGIC.len()) / 3] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let err = read_event_log(&path).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        std::fs::write(&path, b"garbage!garbage").unwrap();
        assert!(read_event_log(&path)
            .unwrap_err()
            .to_string()
            .contains("bad magic"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
