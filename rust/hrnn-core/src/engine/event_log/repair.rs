//! `hrnn repair-log`: rewrites a corrupt (or format-1) event log with every intact record it holds.
//!
//! The reader refuses a log that is corrupt before its end, because guessing would lose or invent
//! acknowledged events. Repair is the explicit way out: it keeps the original under a new name,
//! scans the file for every record whose header and payload checksums both hold (resynchronising
//! byte by byte after damage), and writes those records, in order, to a fresh log that replaces
//! the original by one rename.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::format::{encode, legacy_record_at, record_at, Found, Record, MAGIC, MAGIC_V1};
use super::writer::{open_locked, sync_parent};
use crate::error::{Error, Result};

/// What a repair did.
#[derive(Debug, Clone, PartialEq)]
pub struct RepairReport {
    /// Intact records written to the repaired log (event records and model markers).
    pub records: u64,
    /// Events in those records.
    pub events: u64,
    /// Damaged byte ranges `[start, end)` of the original that were left out.
    pub skipped: Vec<(u64, u64)>,
    /// Where the original was kept.
    pub backup: PathBuf,
    /// The original was in format 1 (it is rewritten in the current format).
    pub converted: bool,
}

/// Salvages the log at `path` (see the module docs). Takes the writer's lock, so it refuses a log
/// that a running recommender holds.
pub fn repair_event_log(path: &Path) -> Result<RepairReport> {
    let io = |p: &Path, e| Error::io(p, e);
    let (_locked, bytes) = open_locked(path)?;
    let (reader, mut at): (fn(&[u8]) -> Found, usize) = match bytes.get(..MAGIC.len()) {
        Some(m) if m == MAGIC_V1 => (legacy_record_at, MAGIC.len()),
        Some(m) if m == MAGIC => (record_at, MAGIC.len()),
        _ => (record_at, 0),
    };
    let converted = bytes.starts_with(MAGIC_V1);
    let mut out = MAGIC.to_vec();
    let mut report = RepairReport {
        records: 0,
        events: 0,
        skipped: Vec::new(),
        backup: PathBuf::new(),
        converted,
    };
    while at < bytes.len() {
        if let Found::Record(record, len) = reader(&bytes[at..]) {
            if let Record::Events(events) = &record {
                report.events += events.len() as u64;
            }
            encode(&record, &mut out).map_err(|m| super::format::corrupt(path, m))?;
            report.records += 1;
            at += len;
            continue;
        }
        match report.skipped.last_mut() {
            Some((_, end)) if *end == at as u64 => *end += 1,
            _ => report.skipped.push((at as u64, at as u64 + 1)),
        }
        at += 1;
    }

    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let with_suffix = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    report.backup = with_suffix(&format!(".corrupt-{stamp}"));
    let write_synced = |target: &Path, data: &[u8]| -> Result<()> {
        let mut f = File::create(target).map_err(|e| io(target, e))?;
        f.write_all(data).map_err(|e| io(target, e))?;
        f.sync_all().map_err(|e| io(target, e))
    };
    write_synced(&report.backup, &bytes)?;
    let temp = with_suffix(".repair-tmp");
    write_synced(&temp, &out)?;
    std::fs::rename(&temp, path).map_err(|e| io(path, e))?;
    sync_parent(path);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::super::format::read_event_log;
    use super::super::format::tests::sample;
    use super::*;

    #[test]
    fn repair_keeps_a_copy_and_every_intact_record() {
        let dir = crate::engine::model_dir::tests::temp_dir("log-repair");
        let path = dir.join("events.log");
        let (bytes, events) = sample();
        // Damage the second call (events 1 and 2): a flipped bit in its length.
        let is_second = |i: &usize| matches!(record_at(&bytes[*i..]), Found::Record(Record::Events(e), _) if e.len() == 2);
        let at = (MAGIC.len()..bytes.len())
            .find(is_second)
            .expect("the call");
        let mut bad = bytes.clone();
        bad[at] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        assert!(read_event_log(&path).is_err());
        let report = repair_event_log(&path).unwrap();
        assert_eq!((report.records, report.events), (3, 4));
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(std::fs::read(&report.backup).unwrap(), bad);
        let repaired = read_event_log(&path).unwrap();
        assert_eq!(
            repaired.events,
            [&events[..1], &events[3..]].concat(),
            "the damaged call is the only loss"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
