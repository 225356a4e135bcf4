//! An event log open for appending, shared by every thread of a recommender.
//!
//! - **One writer.** Opening takes an exclusive advisory lock (`flock`) on the file, held until the
//!   log is dropped; a second writer — another process, or another recommender in this one — gets
//!   [`Error::EventLogLocked`] instead of truncating what it would take for a torn tail.
//! - **Group commit.** [`EventLog::write`] appends a record to an in-memory buffer and waits until
//!   some caller (the leader) has written the buffer and fsynced it. One fsync covers every caller
//!   that arrived while the previous one ran; each learns the outcome of the write that held its
//!   record.
//! - **A failed write changes nothing.** When a write or fsync fails (a full disk, a file-size
//!   limit), the leader cuts the file back to its last durable length, and every record of that
//!   write reports the error. Later writes try again, so the log recovers when space returns. Only
//!   if the file cannot be cut back is the log closed for good (every later write fails).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use super::format::{corrupt, encode, parse, LogContents, Record, MAGIC};
use crate::error::{Error, Result};

type Outcome = OnceLock<std::result::Result<(), String>>;

struct Pending {
    /// Encoded records not yet handed to a leader.
    buffer: Vec<u8>,
    /// One outcome per record in `buffer`.
    waiters: Vec<Arc<Outcome>>,
}

struct SyncState {
    /// Whether some caller is writing + fsyncing right now.
    leader_active: bool,
}

struct LogFile {
    file: File,
    /// Bytes known to be on disk (the file is cut back to this after a failed write).
    durable_len: u64,
    /// Set when a failed write could not be undone: the log can no longer promise anything.
    broken: Option<String>,
}

/// An open, locked event log.
pub struct EventLog {
    path: PathBuf,
    pending: Mutex<Pending>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    file: Mutex<LogFile>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes a new file's directory entry durable (not possible on every platform; best effort).
pub(crate) fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(dir) = File::open(parent) {
            let _ = dir.sync_all();
        }
    }
}

/// Opens `path` for appending (creating it), takes the writer's lock and reads what it holds.
pub(crate) fn open_locked(path: &Path) -> Result<(File, Vec<u8>)> {
    let io = |e| Error::io(path, e);
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() {
            return Err(corrupt(path, "not a regular file".into()));
        }
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(Error::EventLogLocked {
                path: path.to_owned(),
            })
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io)?;
    Ok((file, bytes))
}

impl EventLog {
    /// Opens (creating if needed) the log at `path` for appending and returns what it holds. A torn
    /// tail is cut off the file. With `model`, a marker recording that model's fingerprint is
    /// appended unless it is already the log's last one.
    pub fn open(path: &Path, model: Option<&str>) -> Result<(Self, LogContents)> {
        let io = |e| Error::io(path, e);
        let (mut file, bytes) = open_locked(path)?;
        let contents = parse(&bytes, path)?;
        if contents.legacy {
            return Err(corrupt(
                path,
                "written by an older hrnn (event log format 1), which this version reads but does \
                 not append to; `hrnn repair-log` rewrites it in the current format (keeping a copy)"
                    .into(),
            ));
        }
        if contents.valid_len < MAGIC.len() as u64 {
            file.set_len(0).map_err(io)?;
            file.write_all(MAGIC).map_err(io)?;
            file.sync_all().map_err(io)?;
            sync_parent(path);
        } else if contents.torn_bytes > 0 {
            file.set_len(contents.valid_len).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let durable_len = contents.valid_len.max(MAGIC.len() as u64);
        let log = Self {
            path: path.to_owned(),
            pending: Mutex::new(Pending {
                buffer: Vec::new(),
                waiters: Vec::new(),
            }),
            sync: Mutex::new(SyncState {
                leader_active: false,
            }),
            synced: Condvar::new(),
            file: Mutex::new(LogFile {
                file,
                durable_len,
                broken: None,
            }),
        };
        if let Some(fingerprint) = model {
            if contents.model.as_deref() != Some(fingerprint) {
                log.write(&Record::Model {
                    fingerprint: fingerprint.to_owned(),
                })?;
            }
        }
        Ok((log, contents))
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` and returns once it is written and fsynced — or with the error of the
    /// write that held it, in which case the file holds none of it.
    pub fn write(&self, record: &Record) -> Result<()> {
        let outcome = Arc::new(Outcome::new());
        {
            let mut pending = lock(&self.pending);
            encode(record, &mut pending.buffer).map_err(|m| corrupt(&self.path, m))?;
            pending.waiters.push(Arc::clone(&outcome));
        }
        let mut sync = lock(&self.sync);
        loop {
            if let Some(result) = outcome.get() {
                return result
                    .clone()
                    .map_err(|message| Error::io(&self.path, std::io::Error::other(message)));
            }
            if sync.leader_active {
                sync = self.synced.wait(sync).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Become the leader: write everything appended so far, then one fsync for all of it.
            sync.leader_active = true;
            drop(sync);
            let (buffer, waiters) = {
                let mut pending = lock(&self.pending);
                (
                    std::mem::take(&mut pending.buffer),
                    std::mem::take(&mut pending.waiters),
                )
            };
            let result = self.write_durably(&buffer);
            sync = lock(&self.sync);
            for waiter in waiters {
                let _ = waiter.set(result.clone());
            }
            sync.leader_active = false;
            self.synced.notify_all();
        }
    }

    /// Writes and fsyncs `buffer`; on failure cuts the file back to its durable length.
    fn write_durably(&self, buffer: &[u8]) -> std::result::Result<(), String> {
        let mut f = lock(&self.file);
        if let Some(message) = &f.broken {
            return Err(message.clone());
        }
        if buffer.is_empty() {
            return Ok(());
        }
        match f.file.write_all(buffer).and_then(|()| f.file.sync_data()) {
            Ok(()) => {
                f.durable_len += buffer.len() as u64;
                Ok(())
            }
            Err(e) => {
                let message = format!("event log write failed, nothing of it was kept: {e}");
                let durable_len = f.durable_len;
                if let Err(undo) = f
                    .file
                    .set_len(durable_len)
                    .and_then(|()| f.file.sync_data())
                {
                    f.broken = Some(format!(
                        "event log closed: a write failed ({e}) and could not be undone ({undo}); \
                         reopen it (the records before the failure are intact)"
                    ));
                    return Err(f.broken.clone().expect("set above"));
                }
                Err(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::format::read_event_log;
    use super::super::format::tests::event;
    use super::*;

    fn call(i: usize) -> Record {
        Record::Events(vec![event(2 * i), event(2 * i + 1)])
    }

    #[test]
    fn group_commit_from_many_threads_keeps_every_record() {
        let dir = crate::engine::model_dir::tests::temp_dir("log-threads");
        let path = dir.join("events.log");
        let (log, contents) = EventLog::open(&path, None).unwrap();
        assert!(contents.events.is_empty());
        std::thread::scope(|s| {
            for t in 0..6 {
                let log = &log;
                s.spawn(move || {
                    for i in 0..20 {
                        log.write(&call(t * 100 + i)).unwrap();
                    }
                });
            }
        });
        let back = read_event_log(&path).unwrap();
        assert_eq!(
            (back.events.len(), back.calls, back.torn_bytes),
            (240, 120, 0)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn one_writer_a_torn_tail_cut_only_by_it_and_model_markers() {
        let dir = crate::engine::model_dir::tests::temp_dir("log-writer");
        let path = dir.join("events.log");
        let (log, _) = EventLog::open(&path, Some("model-a")).unwrap();
        for i in 0..3 {
            log.write(&call(i)).unwrap();
        }
        assert!(matches!(
            EventLog::open(&path, None),
            Err(Error::EventLogLocked { .. })
        ));
        drop(log);
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 5]).unwrap();
        // A reader reports the torn tail and leaves the file alone.
        let seen = read_event_log(&path).unwrap();
        assert_eq!(
            (seen.events.len(), seen.model.as_deref()),
            (4, Some("model-a"))
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            full.len() as u64 - 5
        );
        // The writer cuts it; the same model adds no marker, another one does.
        let (log, contents) = EventLog::open(&path, Some("model-a")).unwrap();
        assert_eq!(
            contents.torn_bytes,
            full.len() as u64 - 5 - contents.valid_len
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), contents.valid_len);
        drop(log);
        let (_log, contents) = EventLog::open(&path, Some("model-b")).unwrap();
        assert_eq!(contents.model.as_deref(), Some("model-a"));
        assert_eq!(
            read_event_log(&path).unwrap().model.as_deref(),
            Some("model-b")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
