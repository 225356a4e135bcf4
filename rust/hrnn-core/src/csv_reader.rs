//! Streaming reader for interactions CSV files in the Amazon Personalize schema.
//!
//! The header names the columns (matched case-insensitively, surrounding spaces ignored):
//! `USER_ID`, `ITEM_ID`, `TIMESTAMP` are required; `EVENT_TYPE` and `EVENT_VALUE` are optional;
//! any other column is kept out of the data and listed in `ignored_columns`.
//!
//! The file is read in batches of four blocks (the first batches small, then [`BLOCK_BYTES`] each;
//! plus one record, at most 1 MiB: see `record_limit`), never whole. Each
//! batch is cut at record boundaries into blocks that are parsed in parallel (`csv_block`), then
//! merged in file order, so the result — and the first error reported — is the same as a
//! sequential parse.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use csv::ByteRecord;
use rayon::prelude::*;

use crate::column_parts::{commit_parts, split_parts, ColumnPart};
use crate::csv_block::{
    last_record_end, open_quote_line, parse_block, row_capacity, BlockColumns, BlockRows, Known,
    Layout, LocalIds, LOCAL,
};
use crate::error::{excerpt, Error, Result};
use crate::id_map::IdMap;
use crate::interactions::Interactions;
use crate::record_limit::{overlong_field, too_long_message, MAX_RECORD_BYTES};
use crate::timestamps::TimestampUnit;

/// Bytes parsed by one task. Small batches (four blocks) keep a batch's text and columns in the
/// last-level cache until they are merged: 2 MB blocks loaded 10M rows ~20% faster than 16 MB ones.
const BLOCK_BYTES: usize = 2 << 20;
/// Bytes per task in the first batch (then ×4 per batch up to [`BLOCK_BYTES`]).
const FIRST_BLOCK_BYTES: usize = 256 << 10;

struct Header {
    layout: Layout,
    names: Vec<String>,
    ignored: Vec<String>,
}

fn schema(file: &str, line: u64, column: &str, value: &[u8], message: impl Into<String>) -> Error {
    Error::Schema {
        file: file.to_owned(),
        line,
        column: column.to_owned(),
        value: excerpt(value),
        message: message.into(),
    }
}

fn parse_header(file: &str, raw_header: &[u8], timestamp_unit: TimestampUnit) -> Result<Header> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(raw_header);
    let mut header = ByteRecord::new();
    let read = reader
        .read_byte_record(&mut header)
        .map_err(|e| schema(file, 1, "", raw_header, format!("unreadable header: {e}")))?;
    if !read {
        return Err(schema(
            file,
            1,
            "",
            b"",
            "empty file; expected a header row naming USER_ID, ITEM_ID, TIMESTAMP",
        ));
    }
    let mut names = Vec::with_capacity(header.len());
    for (i, raw) in header.iter().enumerate() {
        let raw = if i == 0 {
            raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw)
        } else {
            raw
        };
        let name = std::str::from_utf8(raw).map_err(|_| {
            schema(
                file,
                1,
                &format!("#{}", i + 1),
                raw,
                "expected a UTF-8 column name",
            )
        })?;
        names.push(name.trim().to_owned());
    }
    let find = |wanted: &str| -> Result<Option<usize>> {
        let hits: Vec<usize> = (0..names.len())
            .filter(|&i| names[i].eq_ignore_ascii_case(wanted))
            .collect();
        if hits.len() > 1 {
            let message = format!(
                "expected the column {wanted} once, found it {} times",
                hits.len()
            );
            return Err(schema(file, 1, wanted, names.join(",").as_bytes(), message));
        }
        Ok(hits.first().copied())
    };
    let required = |wanted: &str| -> Result<usize> {
        find(wanted)?.ok_or_else(|| {
            let message =
                format!("missing required column {wanted}; the header must name USER_ID, ITEM_ID and TIMESTAMP");
            schema(file, 1, wanted, names.join(",").as_bytes(), message)
        })
    };
    let layout = Layout {
        user: required("USER_ID")?,
        item: required("ITEM_ID")?,
        timestamp: required("TIMESTAMP")?,
        event_type: find("EVENT_TYPE")?,
        event_value: find("EVENT_VALUE")?,
        width: names.len(),
        timestamp_unit,
    };
    let used = [
        Some(layout.user),
        Some(layout.item),
        Some(layout.timestamp),
        layout.event_type,
        layout.event_value,
    ];
    let ignored = (0..names.len())
        .filter(|i| !used.contains(&Some(*i)))
        .map(|i| names[i].clone())
        .collect();
    Ok(Header {
        layout,
        names,
        ignored,
    })
}

/// Fills `buf` from `source` until it holds at least `want` bytes or the source ends; returns
/// true at end of file. Reads straight into the buffer's spare capacity (no staging copy).
fn fill(source: &mut impl Read, buf: &mut Vec<u8>, want: usize, path: &Path) -> Result<bool> {
    while buf.len() < want {
        let missing = want - buf.len();
        buf.reserve(missing);
        let read = match source.by_ref().take(missing as u64).read_to_end(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        if read == 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Cuts `data` (whole records, starting outside quotes) into blocks of about BLOCK_BYTES.
fn split_blocks(data: &[u8], block_bytes: usize) -> Vec<&[u8]> {
    let mut blocks = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let window_end = (start + block_bytes).min(data.len());
        let end = if window_end == data.len() {
            data.len()
        } else {
            match last_record_end(&data[start..window_end]) {
                Some(cut) => start + cut,
                None => data.len(), // one record longer than a block: take the rest
            }
        };
        blocks.push(&data[start..end]);
        start = end;
    }
    blocks
}

/// Global id maps and row columns, filled block by block in file order.
struct Merger {
    users: IdMap,
    items: IdMap,
    types: IdMap,
    out: Interactions,
}

/// A row's id index in the global maps (`local` maps the block's new ids).
#[inline]
fn to_global(index: u32, local: &[u32]) -> u32 {
    if index & LOCAL != 0 {
        local[(index & !LOCAL) as usize]
    } else {
        index
    }
}

fn remap(global: &mut IdMap, local: &LocalIds<'_>) -> Vec<u32> {
    local
        .ids
        .iter()
        .map(|id| {
            global
                .intern(id, |b| Some(String::from_utf8_lossy(b).into_owned()))
                .expect("validated ids are always accepted")
        })
        .collect()
}

/// Rewrites the block-local indices in `values` to global ones (`local` maps the block's new ids;
/// nothing to do when the block had none).
fn localize(values: &mut [u32], local: &[u32]) {
    if local.is_empty() {
        return;
    }
    for v in values {
        *v = to_global(*v, local);
    }
}

/// One batch's parts of the output columns, one [`BlockColumns`] per block (see `column_parts`).
fn split_batch<'o>(out: &'o mut Interactions, sizes: &[usize]) -> Vec<BlockColumns<'o>> {
    fn parts<'o, T: Copy>(
        column: &'o mut Vec<T>,
        present: bool,
        sizes: &[usize],
    ) -> Vec<ColumnPart<'o, T>> {
        if present {
            split_parts(column, sizes)
        } else {
            sizes.iter().map(|_| ColumnPart::default()).collect()
        }
    }
    let users = split_parts(&mut out.user, sizes);
    let items = split_parts(&mut out.item, sizes);
    let stamps = split_parts(&mut out.timestamp, sizes);
    let types = parts(&mut out.event_type, out.has_event_type, sizes);
    let values = parts(&mut out.event_value, out.has_event_value, sizes);
    users
        .into_iter()
        .zip(items)
        .zip(stamps)
        .zip(types.into_iter().zip(values))
        .map(
            |(((user, item), timestamp), (event_type, event_value))| BlockColumns {
                user,
                item,
                event_type,
                timestamp,
                event_value,
            },
        )
        .collect()
}

impl Merger {
    fn reserve(&mut self, rows: usize) {
        let out = &mut self.out;
        out.user.reserve(rows);
        out.item.reserve(rows);
        out.timestamp.reserve(rows);
        if out.has_event_type {
            out.event_type.reserve(rows);
        }
        if out.has_event_value {
            out.event_value.reserve(rows);
        }
    }
}

/// Reads an interactions CSV file whose TIMESTAMP column is in Unix epoch seconds.
pub fn read_csv(path: &Path) -> Result<Interactions> {
    read_csv_with_unit(path, TimestampUnit::Seconds)
}

/// Reads an interactions CSV file whose TIMESTAMP column is in `timestamp_unit`; values are
/// converted to whole seconds (rounded down) and must lie in 1970-01-01 ..= 2199-12-31 UTC.
pub fn read_csv_with_unit(path: &Path, timestamp_unit: TimestampUnit) -> Result<Interactions> {
    read_csv_in_blocks(path, BLOCK_BYTES, timestamp_unit)
}

/// The block size of batch `batch` (0-based): the first batches are small, so that the ids they
/// introduce are known — found with a prefetched lookup in one shared table — before the big
/// batches are parsed, instead of being interned again by every block of a big first batch.
fn batch_block_bytes(block_bytes: usize, batch: usize) -> usize {
    (FIRST_BLOCK_BYTES << (2 * batch.min(8))).min(block_bytes)
}

/// [`read_csv`] with a given block size (batches hold four blocks); the result does not depend on it.
fn read_csv_in_blocks(
    path: &Path,
    block_bytes: usize,
    timestamp_unit: TimestampUnit,
) -> Result<Interactions> {
    let batch_bytes = 4 * block_bytes;
    let file_name = path.display().to_string();
    let mut source = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = Vec::with_capacity(batch_bytes + (1 << 20));

    // The header: the first record. A buffer of more than `MAX_RECORD_BYTES + 1` bytes (a `\r`
    // before the line break is not counted) without a record end holds an overlong record.
    let mut eof = fill(&mut source, &mut buf, 1 << 16, path)?;
    let header_end = loop {
        if let Some(end) = first_record_end(&buf) {
            break end;
        }
        if eof || buf.len() > MAX_RECORD_BYTES + 1 {
            break buf.len();
        }
        let want = (buf.len() * 2).min(MAX_RECORD_BYTES + 2);
        eof = fill(&mut source, &mut buf, want, path)?;
    };
    if let Some(cr) = lone_carriage_return(&buf[..header_end]) {
        // Supporting them would mean rewriting `\r` to `\n` on every path, quoted fields included,
        // for a format last written by Mac OS 9; a clear error costs the user one `tr`.
        return Err(schema(
            &file_name,
            1,
            "*",
            &buf[..cr],
            "CR-only line endings (classic Mac OS) are not supported: expected lines ending in \
             \\n or \\r\\n; convert the file first, e.g. with tr '\\r' '\\n'",
        ));
    }
    if record_bytes(&buf[..header_end]) > MAX_RECORD_BYTES {
        let (field, value) = overlong_field(&buf);
        let column = format!("#{}", field + 1);
        return Err(schema(&file_name, 1, &column, value, too_long_message()));
    }
    let header = parse_header(&file_name, &buf[..header_end], timestamp_unit)?;
    buf.drain(..header_end);

    let mut merger = Merger {
        users: IdMap::new(),
        items: IdMap::new(),
        types: IdMap::new(),
        out: Interactions {
            user: Vec::new(),
            item: Vec::new(),
            timestamp: Vec::new(),
            event_type: Vec::new(),
            event_value: Vec::new(),
            user_ids: Arc::default(),
            item_ids: Arc::default(),
            event_types: Arc::default(),
            has_event_type: header.layout.event_type.is_some(),
            has_event_value: header.layout.event_value.is_some(),
            ignored_columns: header.ignored.clone(),
            rows_read: 0,
            drops: Vec::new(),
            source: file_name.clone(),
        },
    };
    let file_bytes = source.metadata().map_or(0, |m| m.len()) as usize;
    let mut lines_before = 1u64; // the header's line
    let mut batch = 0;
    let mut next: Vec<u8> = Vec::with_capacity(buf.capacity());
    loop {
        if !eof {
            let want = 4 * batch_block_bytes(block_bytes, batch);
            eof = fill(&mut source, &mut buf, want, path)?;
        }
        let limit = if eof {
            if let Some(line) = open_quote_line(&buf) {
                let line_start = nth_line_start(&buf, line);
                return Err(schema(
                    &file_name,
                    lines_before + line + 1,
                    "*",
                    &buf[line_start..],
                    "a quoted field is left open at the end of the file",
                ));
            }
            buf.len()
        } else {
            match last_record_end(&buf) {
                Some(end) => end,
                None if buf.len() > MAX_RECORD_BYTES + 1 => {
                    // `buf` starts at a record, which is too long to hold: stop reading.
                    let (field, value) = overlong_field(&buf);
                    let column = header.names.get(field).map_or("*", String::as_str);
                    return Err(schema(
                        &file_name,
                        lines_before + 1,
                        column,
                        value,
                        too_long_message(),
                    ));
                }
                None => {
                    // One record longer than the batch: read on, up to the longest allowed.
                    eof = fill(&mut source, &mut buf, MAX_RECORD_BYTES + 2, path)?;
                    continue;
                }
            }
        };
        let blocks = split_blocks(&buf[..limit], batch_block_bytes(block_bytes, batch));
        if merger.out.user.is_empty() && limit > 0 {
            // Size the columns once from the first batch's bytes per line (+5%), sparing regrowth.
            let lines = memchr::memchr_iter(b'\n', &buf[..limit]).count().max(1);
            merger.reserve(file_bytes / (limit / lines).max(1) * 21 / 20);
        }
        if merger.users.len().max(merger.items.len()) >= LOCAL as usize {
            return Err(Error::invalid_argument(
                "path",
                "more than 2^31 distinct ids in one column",
            ));
        }
        let lines: Vec<u64> = blocks
            .par_iter()
            .map(|b| memchr::memchr_iter(b'\n', b).count() as u64)
            .collect();
        let sizes: Vec<usize> = blocks
            .iter()
            .zip(&lines)
            .map(|(b, &l)| row_capacity(b, l))
            .collect();
        let Merger {
            users,
            items,
            types,
            out,
        } = &mut merger;
        let known = Known {
            users: &*users,
            items: &*items,
            types: &*types,
        };
        // Each block writes its rows straight into its part of the output columns.
        let parts = split_batch(out, &sizes);
        // The bytes after the last whole record start the next batch, which is read while this
        // one is parsed.
        next.clear();
        next.extend_from_slice(&buf[limit..]);
        let read_ahead = !eof;
        let want = 4 * batch_block_bytes(block_bytes, batch + 1);
        let (read, mut parsed) = rayon::join(
            || {
                if read_ahead {
                    fill(&mut source, &mut next, want, path)
                } else {
                    Ok(true)
                }
            },
            || {
                blocks
                    .par_iter()
                    .zip(&lines)
                    .zip(parts)
                    .map(|((b, &l), cols)| parse_block(b, &header.layout, known, l, cols))
                    .collect::<Vec<BlockRows<'_, '_>>>()
            },
        );
        for block in &parsed {
            if let Some(error) = &block.error {
                let column = error.column.map_or("*", |c| header.names[c].as_str());
                return Err(schema(
                    &file_name,
                    lines_before + error.line + 1,
                    column,
                    &error.value,
                    error.message.clone(),
                ));
            }
            lines_before += block.lines;
        }
        // Ids new in a block get global indices in the block's order of first appearance, block
        // by block (sequential, but there are few); then the rows that hold a block-local index
        // are rewritten in parallel.
        let locals: Vec<[Vec<u32>; 3]> = parsed
            .iter()
            .map(|b| {
                [
                    remap(users, &b.users),
                    remap(items, &b.items),
                    remap(types, &b.types),
                ]
            })
            .collect();
        parsed
            .par_iter_mut()
            .zip(&locals)
            .for_each(|(b, [u, i, t])| {
                localize(b.cols.user.as_mut_slice(), u);
                localize(b.cols.item.as_mut_slice(), i);
                localize(b.cols.event_type.as_mut_slice(), t);
            });
        let written: Vec<usize> = parsed.iter().map(|b| b.cols.user.len()).collect();
        drop(parsed);
        // SAFETY: every block wrote one value per row into each of its parts of the columns the
        // file has (`written` rows; an error would have returned above), and nothing touched the
        // columns since `split_batch`.
        unsafe {
            commit_parts(&mut out.user, &sizes, &written);
            commit_parts(&mut out.item, &sizes, &written);
            commit_parts(&mut out.timestamp, &sizes, &written);
            if out.has_event_type {
                commit_parts(&mut out.event_type, &sizes, &written);
            }
            if out.has_event_value {
                commit_parts(&mut out.event_value, &sizes, &written);
            }
        }
        batch += 1;
        if eof {
            break;
        }
        eof = read?;
        std::mem::swap(&mut buf, &mut next);
    }
    let Merger {
        users,
        items,
        mut types,
        mut out,
    } = merger;
    if out.user.is_empty() {
        return Err(schema(
            &file_name,
            2,
            "",
            b"",
            "header only; expected at least one data row",
        ));
    }
    let n = out.user.len();
    if !out.has_event_type {
        out.event_type = vec![0; n];
        types = IdMap::from_ids(vec![String::new()]);
    }
    if !out.has_event_value {
        out.event_value = (0..n).into_par_iter().map(|_| f32::NAN).collect();
    }
    out.rows_read = n;
    out.user_ids = Arc::new(users.into_ids());
    out.item_ids = Arc::new(items.into_ids());
    out.event_types = Arc::new(types.into_ids());
    Ok(out)
}

/// The end of the first record (just past its `\n`, outside quotes), if `buf` holds one.
fn first_record_end(buf: &[u8]) -> Option<usize> {
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
fn lone_carriage_return(header: &[u8]) -> Option<usize> {
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
fn record_bytes(record: &[u8]) -> usize {
    let record = record.strip_suffix(b"\n").unwrap_or(record);
    record.strip_suffix(b"\r").unwrap_or(record).len()
}

/// The byte offset where 0-based line `line` of `buf` starts.
fn nth_line_start(buf: &[u8], line: u64) -> usize {
    if line == 0 {
        return 0;
    }
    memchr::memchr_iter(b'\n', buf)
        .nth(line as usize - 1)
        .map_or(buf.len(), |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load(text: &[u8]) -> Result<Interactions> {
        load_in_blocks(text, BLOCK_BYTES)
    }

    fn load_in_blocks(text: &[u8], block_bytes: usize) -> Result<Interactions> {
        load_with(text, |path| {
            read_csv_in_blocks(path, block_bytes, TimestampUnit::Seconds)
        })
    }

    fn load_with(
        text: &[u8],
        read: impl FnOnce(&Path) -> Result<Interactions>,
    ) -> Result<Interactions> {
        let dir =
            std::env::temp_dir().join(format!("hrnn-csv-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.csv");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text)
            .unwrap();
        let result = read(&path);
        std::fs::remove_dir_all(&dir).ok();
        result
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    fn message(text: &[u8]) -> String {
        load(text).unwrap_err().to_string()
    }

    #[test]
    fn reads_rows_and_interns_ids() {
        let data =
            load(b"user_id,Item_Id,TIMESTAMP,EXTRA\nu1,a,10,x\nu2,b,5,y\nu1,b,7,z\n").unwrap();
        assert_eq!(data.user, vec![0, 1, 0]);
        assert_eq!(data.item, vec![0, 1, 1]);
        assert_eq!(data.timestamp, vec![10, 5, 7]);
        assert_eq!(data.ignored_columns, vec!["EXTRA".to_owned()]);
        assert_eq!(*data.user_ids, vec!["u1".to_owned(), "u2".to_owned()]);
        assert!(data.event_value.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn optional_columns() {
        let data = load(
            b"USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE\nu,a,1,click,\nu,b,2,buy,2.5\n",
        )
        .unwrap();
        assert_eq!(
            *data.event_types,
            vec!["click".to_owned(), "buy".to_owned()]
        );
        assert!(data.event_value[0].is_nan());
        assert_eq!(data.event_value[1], 2.5);
    }

    #[test]
    fn errors_name_line_column_value() {
        let m = message(b"USER_ID,ITEM_ID,TIMESTAMP\nu,a,1\nu,b,12x\n");
        assert!(
            m.contains("line 3") && m.contains("TIMESTAMP") && m.contains("12x"),
            "{m}"
        );
        let m = message(b"USER_ID,ITEM_ID,TIMESTAMP\nu,a,-1\n");
        assert!(m.contains("non-negative"), "{m}");
        let m = message(b"USER_ID,ITEM_ID\nu,a\n");
        assert!(m.contains("missing required column TIMESTAMP"), "{m}");
        let m = message(b"");
        assert!(m.contains("empty file"), "{m}");
        let m = message(b"USER_ID,ITEM_ID,TIMESTAMP\n");
        assert!(m.contains("header only"), "{m}");
        let m = message(b"USER_ID,ITEM_ID,TIMESTAMP\ru,a,1\ru,b,2\r");
        assert!(
            m.contains("line 1, column *: CR-only line endings")
                && m.contains("not supported")
                && m.contains("(found \"USER_ID,ITEM_ID,TIMESTAMP\")"),
            "{m}"
        );
        let big_cr_only = "u,a,1\r".repeat(400_000);
        let m = message(format!("USER_ID,ITEM_ID,TIMESTAMP\r{big_cr_only}").as_bytes());
        assert!(m.contains("CR-only"), "{m}");
        // A `\r` inside a quoted header name is not a line ending.
        let m = message(b"USER_ID,ITEM_ID,TIMESTAMP,\"A\rB\"\r\n");
        assert!(m.contains("header only"), "{m}");
        let m = message(b"USER_ID,ITEM_ID,TIMESTAMP\nu,a,1,2\n");
        assert!(
            m.contains("expected 3 fields") && m.contains("line 2"),
            "{m}"
        );
        let m = message(b"USER_ID,ITEM_ID,TIMESTAMP\n,a,1\n");
        assert!(m.contains("USER_ID") && m.contains("non-empty"), "{m}");
        let long = format!("USER_ID,ITEM_ID,TIMESTAMP\n{},a,1\n", "x".repeat(257));
        assert!(message(long.as_bytes()).contains("at most 256"));
        let m = message(b"USER_ID,ITEM_ID,TIMESTAMP,EVENT_VALUE\nu,a,1,abc\n");
        assert!(m.contains("EVENT_VALUE") && m.contains("abc"), "{m}");
        let m = message(b"USER_ID,ITEM_ID,TIMESTAMP\nu\xff,a,1\n");
        assert!(m.contains("UTF-8"), "{m}");
        let m = message(b"USER_ID,ITEM_ID,TIMESTAMP\nu\0,a,1\n");
        assert!(m.contains("NUL"), "{m}");
        let m = message(b"USER_ID,ITEM_ID,TIMESTAMP\nu,a,1\n\"u,a,2\n");
        assert!(m.contains("left open") || m.contains("fields"), "{m}");
        let m = message(b"USER_ID,ITEM_ID,TIMESTAMP\nu,a,1\nu,\"b,2\nv,c,3\n");
        assert!(m.contains("line 3"), "{m}");
    }

    #[test]
    fn timestamps_in_a_finer_unit_are_an_error_unless_asked_for() {
        let text = b"USER_ID,ITEM_ID,TIMESTAMP\nu,a,1700000000000\nu,b,1700000060999\n";
        let m = message(text);
        assert!(
            m.contains("line 2, column TIMESTAMP: out of range")
                && m.contains("as milliseconds it is 2023-11-14 22:13:20 UTC")
                && m.contains("timestamp_unit=\"ms\"")
                && m.contains("(found \"1700000000000\")"),
            "{m}"
        );
        let ms = |path: &Path| read_csv_with_unit(path, TimestampUnit::Milliseconds);
        let data = load_with(text, ms).unwrap();
        assert_eq!(data.timestamp, vec![1_700_000_000, 1_700_000_060]);
        // In milliseconds, a value past 2199 is out of range too.
        let m = load_with(b"USER_ID,ITEM_ID,TIMESTAMP\nu,a,1700000000000000\n", ms)
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("Unix epoch milliseconds from 0 to 7258118399999")
                && m.contains("timestamp_unit=\"us\""),
            "{m}"
        );
        // i64::MAX is parsed, and the message states the range actually accepted.
        let m = message(b"USER_ID,ITEM_ID,TIMESTAMP\nu,a,9223372036854775807\n");
        assert!(
            m.contains("out of range: expected Unix epoch seconds from 0 to 7258118399"),
            "{m}"
        );
        assert_eq!(
            load(b"USER_ID,ITEM_ID,TIMESTAMP\nu,a,7258118399\n")
                .unwrap()
                .timestamp,
            vec![7_258_118_399]
        );
    }

    #[test]
    fn block_size_does_not_change_the_result() {
        let mut text = String::from("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n");
        for i in 0..500 {
            let item = if i % 7 == 0 {
                format!("\"it,{}\"", i % 13)
            } else {
                format!("i{}", i % 11)
            };
            text.push_str(&format!("u{},{item},{},t{}\n", i % 17, 1000 + i, i % 3));
        }
        let dir = std::env::temp_dir().join(format!("hrnn-blocks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.csv");
        std::fs::write(&path, &text).unwrap();
        let whole = read_csv(&path).unwrap();
        for block in [7, 64, 300] {
            let small = read_csv_in_blocks(&path, block, TimestampUnit::Seconds).unwrap();
            assert_eq!(small.user, whole.user);
            assert_eq!(small.item, whole.item);
            assert_eq!(small.timestamp, whole.timestamp);
            assert_eq!(small.event_type, whole.event_type);
            assert_eq!(*small.item_ids, *whole.item_ids);
        }
        // An error deep in the file names the same line whatever the block size.
        text.push_str("u1,i1,oops,t1\n");
        std::fs::write(&path, &text).unwrap();
        for block in [7, 64, 1 << 20] {
            let message = read_csv_in_blocks(&path, block, TimestampUnit::Seconds)
                .unwrap_err()
                .to_string();
            assert!(
                message.contains("line 502") && message.contains("oops"),
                "{message}"
            );
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn records_past_1_mib_are_rejected_where_they_start() {
        let long = |n: usize| "x".repeat(n);
        // A record of exactly MAX_RECORD_BYTES (its CRLF not counted) is fine, one byte more is
        // not, whether the record ends inside a batch or past it.
        let header = "USER_ID,ITEM_ID,TIMESTAMP,NOTE\r\n";
        let exact = format!("{header}u,a,1,{}\r\nu,b,2,\r\n", long(MAX_RECORD_BYTES - 6));
        let over = format!("{header}u,a,1,\r\nu,b,2,{}\r\n", long(MAX_RECORD_BYTES - 5));
        for block in [7, 1 << 16, BLOCK_BYTES] {
            assert_eq!(load_in_blocks(exact.as_bytes(), block).unwrap().len(), 2);
            let m = load_in_blocks(over.as_bytes(), block)
                .unwrap_err()
                .to_string();
            assert!(
                m.contains("line 3, column NOTE") && m.contains("at most 1048576 bytes"),
                "{m}"
            );
        }
        // Far past the limit, with more lines after it: reading stops at the limit.
        let huge = format!(
            "USER_ID,ITEM_ID,TIMESTAMP,NOTE\nu,a,1,\nu,b,2,\"x\ny\"\nu,a,{},\nu,b,3,\n",
            "9".repeat(5 * MAX_RECORD_BYTES)
        );
        let m = message(huge.as_bytes());
        assert!(
            m.contains("line 5, column TIMESTAMP") && m.contains("(found \"999"),
            "{m}"
        );
        // The last record, without a line break.
        let last = format!("USER_ID,ITEM_ID,TIMESTAMP\nu,a,1\n{},a,1", long(2 << 20));
        assert!(message(last.as_bytes()).contains("line 3, column USER_ID"));
        // A quote left open early in a big file.
        let open = format!(
            "USER_ID,ITEM_ID,TIMESTAMP\nu,\"a,1\n{}",
            "u,a,1\n".repeat(400_000)
        );
        let m = message(open.as_bytes());
        assert!(
            m.contains("line 2, column ITEM_ID") && m.contains("quote left open"),
            "{m}"
        );
        // The header.
        let header = format!("USER_ID,ITEM_ID,TIMESTAMP,{}\nu,a,1,x\n", long(2 << 20));
        assert!(message(header.as_bytes()).contains("line 1, column #4"));
    }

    #[test]
    fn exactly_256_chars_is_fine_and_bom_is_stripped() {
        let text = format!(
            "\u{feff}USER_ID,ITEM_ID,TIMESTAMP\n{},a,1\n",
            "é".repeat(256)
        );
        assert_eq!(load(text.as_bytes()).unwrap().len(), 1);
    }
}
