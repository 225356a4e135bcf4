//! Record boundaries: where records end, outside quotes (a `\n` inside a quoted field is data).
//!
//! The reader cuts the file at these boundaries — into the header, batches and blocks — so that
//! every block starts outside quotes and holds whole records.

use memchr::memchr;

/// The end of the first record (just past its `\n`, outside quotes), if `buf` holds one.
pub(super) fn first_record_end(buf: &[u8]) -> Option<usize> {
    let mut inside = false;
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'"' => inside = !inside,
            b'\n' if !inside => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// The position of the first `\r` outside quotes in `header` (the first record, with its line
/// break) that is not followed by `\n`: a file with CR-only line endings.
pub(super) fn lone_carriage_return(header: &[u8]) -> Option<usize> {
    let mut inside = false;
    for (i, &b) in header.iter().enumerate() {
        match b {
            b'"' => inside = !inside,
            b'\r' if !inside && header.get(i + 1) != Some(&b'\n') => return Some(i),
            _ => {}
        }
    }
    None
}

/// The length of `record` without its line break (`\n` or `\r\n`).
pub(super) fn record_bytes(record: &[u8]) -> usize {
    let record = record.strip_suffix(b"\n").unwrap_or(record);
    record.strip_suffix(b"\r").unwrap_or(record).len()
}

/// The byte offset where 0-based line `line` of `buf` starts.
pub(super) fn nth_line_start(buf: &[u8], line: u64) -> usize {
    if line == 0 {
        return 0;
    }
    memchr::memchr_iter(b'\n', buf)
        .nth(line as usize - 1)
        .map_or(buf.len(), |i| i + 1)
}

/// The end of the last whole record in `buf` that starts outside quotes, given that `buf` starts
/// outside quotes: an index just past a `\n`, or `None` when `buf` holds no whole record.
pub(super) fn last_record_end(buf: &[u8]) -> Option<usize> {
    if memchr(b'"', buf).is_none() {
        return memchr::memrchr(b'\n', buf).map(|i| i + 1);
    }
    let mut inside = false;
    let mut end = None;
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'"' => inside = !inside,
            b'\n' if !inside => end = Some(i + 1),
            _ => {}
        }
    }
    end
}

/// The 0-based line (relative to `buf`) where a quote left open at the end of `buf` was opened.
pub(super) fn open_quote_line(buf: &[u8]) -> Option<u64> {
    let mut inside = false;
    let mut line = 0u64;
    let mut opened_at = 0u64;
    for &b in buf {
        match b {
            b'"' => {
                inside = !inside;
                if inside {
                    opened_at = line;
                }
            }
            b'\n' => line += 1,
            _ => {}
        }
    }
    inside.then_some(opened_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_only_outside_quotes() {
        assert_eq!(last_record_end(b"a,b\nc,d"), Some(4));
        assert_eq!(last_record_end(b"a,\"b\nc\",d\ne"), Some(10));
        assert_eq!(last_record_end(b"a,\"b\nc"), None);
        assert_eq!(open_quote_line(b"a,b\nc,\"d\ne"), Some(1));
        assert_eq!(open_quote_line(b"a,\"b\"\n"), None);
    }
}
