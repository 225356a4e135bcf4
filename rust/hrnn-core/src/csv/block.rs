//! Parsing one block of whole CSV records, independently of the other blocks.
//!
//! The reader (`reader`) cuts the file into blocks that end at a record boundary, then parses
//! blocks in parallel. Each block interns its ids locally (first-appearance order within the
//! block); the reader merges the local ids into the global maps block by block, in file order, so
//! global indices keep the order of first appearance in the file. Blocks without a quote character
//! take a fast path (split on `,` and `\n`); blocks with quotes go through the `csv` crate.

use std::borrow::Cow;

use memchr::memchr;

use super::column_parts::ColumnPart;
use super::record_limit::{overlong_field, too_long_message, MAX_RECORD_BYTES};
use super::separators::Separators;
use super::timestamps::{read_timestamp, TimestampUnit};
use crate::id_map::IdMap;
use crate::id_table::IdTable;
use crate::interactions::check_id;

/// Where each schema column sits in a record, the record width, and the TIMESTAMP unit.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub user: usize,
    pub item: usize,
    pub timestamp: usize,
    pub event_type: Option<usize>,
    pub event_value: Option<usize>,
    pub width: usize,
    pub timestamp_unit: TimestampUnit,
}

/// Marks a block-local id index (the other indices are global ones).
pub(crate) const LOCAL: u32 = 1 << 31;

/// The ids already known from earlier batches, shared read-only by the blocks being parsed.
#[derive(Clone, Copy)]
pub(crate) struct Known<'k> {
    pub users: &'k IdMap,
    pub items: &'k IdMap,
    pub types: &'k IdMap,
}

/// Ids first seen in one block (not in [`Known`]), in order of first appearance there.
#[derive(Default)]
pub(crate) struct LocalIds<'a> {
    index: IdTable,
    /// The distinct ids (validated UTF-8 text), by local index.
    pub ids: Vec<Cow<'a, [u8]>>,
}

impl<'a> LocalIds<'a> {
    /// Starts fetching the table slots a later [`intern`](Self::intern) of `raw` reads: in
    /// `known`, and in the block's own table once it holds ids.
    #[inline]
    fn prefetch(&self, raw: &[u8], known: &IdMap) {
        known.prefetch(raw);
        if !self.ids.is_empty() {
            self.index.prefetch(raw);
        }
    }

    /// The global index of a known id, else its local index marked with [`LOCAL`].
    fn intern(&mut self, raw: Cow<'a, [u8]>, known: &IdMap) -> Result<u32, &'static str> {
        if let Some(i) = known.get(&raw) {
            return Ok(i);
        }
        if let Some(i) = self.index.get(&raw) {
            return Ok(i | LOCAL);
        }
        check_id(&raw)?;
        let i = self.ids.len() as u32;
        self.index.insert_new(&raw, i);
        self.ids.push(raw);
        Ok(i | LOCAL)
    }
}

/// A problem found in a block: line relative to the block's first line (0-based).
#[derive(Debug)]
pub(crate) struct BlockError {
    pub line: u64,
    /// Column index in the record, or `None` for a record-level problem.
    pub column: Option<usize>,
    pub value: Vec<u8>,
    pub message: String,
}

/// Where a block writes its rows: its parts of the output columns (see `column_parts`), one slot
/// per line; a column the file lacks gets an empty part.
#[derive(Default)]
pub(crate) struct BlockColumns<'o> {
    pub user: ColumnPart<'o, u32>,
    pub item: ColumnPart<'o, u32>,
    pub event_type: ColumnPart<'o, u32>,
    pub timestamp: ColumnPart<'o, i64>,
    pub event_value: ColumnPart<'o, f32>,
}

/// The rows of one block, with block-local id indices.
#[derive(Default)]
pub(crate) struct BlockRows<'a, 'o> {
    pub users: LocalIds<'a>,
    pub items: LocalIds<'a>,
    pub types: LocalIds<'a>,
    pub cols: BlockColumns<'o>,
    /// Physical lines in the block (its `\n` count).
    pub lines: u64,
    /// The first problem, if any (rows after it are not parsed).
    pub error: Option<BlockError>,
}

fn parse_event_value(raw: &[u8]) -> Option<f32> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Some(f32::NAN);
    }
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.trim().parse::<f32>().ok())
        .filter(|v| v.is_finite())
}

impl<'a> BlockRows<'a, '_> {
    /// Records the first problem of the block; returns false so callers can stop.
    fn fail(&mut self, line: u64, column: usize, value: &[u8], message: &str) -> bool {
        self.error = Some(BlockError {
            line,
            column: Some(column),
            value: value.to_vec(),
            message: message.to_owned(),
        });
        false
    }

    /// Adds one record; `field(i)` returns field `i`. Returns false after recording an error.
    fn push_record(
        &mut self,
        layout: &Layout,
        known: Known<'_>,
        line: u64,
        field: impl Fn(usize) -> Cow<'a, [u8]>,
    ) -> bool {
        let user_raw = field(layout.user);
        let user = match self.users.intern(user_raw.clone(), known.users) {
            Ok(i) => i,
            Err(m) => return self.fail(line, layout.user, &user_raw, m),
        };
        let item_raw = field(layout.item);
        let item = match self.items.intern(item_raw.clone(), known.items) {
            Ok(i) => i,
            Err(m) => return self.fail(line, layout.item, &item_raw, m),
        };
        let ts_raw = field(layout.timestamp);
        let ts = match read_timestamp(&ts_raw, layout.timestamp_unit) {
            Ok(ts) => ts,
            Err(m) => return self.fail(line, layout.timestamp, &ts_raw, &m),
        };
        if let Some(column) = layout.event_type {
            let raw = field(column);
            match self.types.intern(raw.clone(), known.types) {
                Ok(i) => self.cols.event_type.push(i),
                Err(m) => return self.fail(line, column, &raw, m),
            }
        }
        if let Some(column) = layout.event_value {
            let raw = field(column);
            match parse_event_value(&raw) {
                Some(v) => self.cols.event_value.push(v),
                None => {
                    return self.fail(
                        line,
                        column,
                        &raw,
                        "expected a finite number or an empty field",
                    )
                }
            }
        }
        self.cols.user.push(user);
        self.cols.item.push(item);
        self.cols.timestamp.push(ts);
        true
    }

    fn record_error(&mut self, line: u64, value: &[u8], message: String) {
        self.error = Some(BlockError {
            line,
            column: None,
            value: value.to_vec(),
            message,
        });
    }

    /// Records a record past [`MAX_RECORD_BYTES`] (`record` starts at the record's first byte).
    fn record_too_long(&mut self, line: u64, record: &[u8], width: usize) {
        let (field, value) = overlong_field(record);
        self.error = Some(BlockError {
            line,
            column: (field < width).then_some(field),
            value: value.to_vec(),
            message: too_long_message(),
        });
    }
}

/// Parses `block` (whole records only; it starts outside quotes; `lines` of `\n`), writing its
/// rows into `cols`, which has room for one row per line (plus one when the block does not end
/// with a line break).
pub(crate) fn parse_block<'a, 'o>(
    block: &'a [u8],
    layout: &Layout,
    known: Known<'_>,
    lines: u64,
    cols: BlockColumns<'o>,
) -> BlockRows<'a, 'o> {
    let mut rows = BlockRows {
        lines,
        cols,
        ..BlockRows::default()
    };
    if memchr(b'"', block).is_none() {
        parse_plain(block, layout, known, &mut rows);
    } else {
        parse_quoted(block, layout, known, &mut rows);
    }
    rows
}

/// Rows `block` can hold at most: its lines, plus a last one without a line break.
pub(crate) fn row_capacity(block: &[u8], lines: u64) -> usize {
    lines as usize + usize::from(!block.is_empty() && !block.ends_with(b"\n"))
}

/// Records of the fast path whose fields are known but whose ids are not yet looked up.
#[derive(Default)]
struct PendingRecords {
    /// Per record: byte range (without the line end), 0-based line, index of its first field.
    records: Vec<(usize, usize, u64, usize)>,
    /// Field byte ranges of the records, in order, then those of the record still open.
    fields: Vec<(usize, usize)>,
    /// Index in `fields` of the open record's first field.
    open_first: usize,
}

impl PendingRecords {
    fn clear(&mut self) {
        self.records.clear();
        self.fields.clear();
        self.open_first = 0;
    }

    /// The fields of record `k`.
    fn fields_of(&self, k: usize) -> &[(usize, usize)] {
        let end = self.records.get(k + 1).map_or(self.open_first, |r| r.3);
        &self.fields[self.records[k].3..end]
    }

    /// Closes the open record, which started at `record_start` and ends at `end` (its `\n` or the
    /// block end): a blank line is dropped, anything else becomes a record.
    fn close(&mut self, block: &[u8], record_start: usize, end: usize, line: u64) {
        let first = self.open_first;
        let last_end = close_record(block, &mut self.fields[first..], record_start, end);
        let own = &self.fields[first..];
        if own.len() == 1 && own[0].0 == own[0].1 {
            self.fields.truncate(first);
        } else {
            self.records.push((record_start, last_end, line, first));
        }
        self.open_first = self.fields.len();
    }
}

/// Fast path: no quotes anywhere in the block, so `,` and `\n` always separate.
///
/// Records are gathered in batches; the table slots of a batch's ids are prefetched when the
/// batch is complete, and the batch is interned only after the next one has been scanned, by
/// which time those slots have arrived: id lookups in tables of a few MB otherwise wait on memory
/// for most of the loading time.
fn parse_plain<'a>(
    block: &'a [u8],
    layout: &Layout,
    known: Known<'_>,
    rows: &mut BlockRows<'a, '_>,
) {
    const BATCH: usize = 32;
    let width = layout.width;
    let prefetch = |rows: &BlockRows<'a, '_>, batch: &PendingRecords, k: usize| {
        let own = batch.fields_of(k);
        if own.len() == width {
            let (u, i) = (own[layout.user], own[layout.item]);
            rows.users.prefetch(&block[u.0..u.1], known.users);
            rows.items.prefetch(&block[i.0..i.1], known.items);
        }
    };
    // Interns `batch`, prefetching the ids of `next`'s records one by one on the way (one
    // prefetch per lookup keeps the number of misses in flight steady); false when a record
    // failed (the error is recorded in `rows`).
    let intern =
        |rows: &mut BlockRows<'a, '_>, batch: &PendingRecords, next: &PendingRecords| -> bool {
            for (k, &(start, end, line, _)) in batch.records.iter().enumerate() {
                if k < next.records.len() {
                    prefetch(rows, next, k);
                }
                if end - start > MAX_RECORD_BYTES {
                    rows.record_too_long(line, &block[start..end], width);
                    return false;
                }
                let own = batch.fields_of(k);
                if own.len() != width {
                    let message = format!(
                        "expected {width} fields as in the header, found {}",
                        own.len()
                    );
                    rows.record_error(line, &block[start..end], message);
                    return false;
                }
                if !rows.push_record(layout, known, line, |i| {
                    Cow::Borrowed(&block[own[i].0..own[i].1])
                }) {
                    return false;
                }
            }
            for k in batch.records.len()..next.records.len() {
                prefetch(rows, next, k);
            }
            true
        };
    let mut filling = PendingRecords::default();
    let mut ready = PendingRecords::default();
    let mut field_start = 0;
    let mut record_start = 0;
    let mut line = 0u64;
    for pos in Separators::new(block) {
        filling.fields.push((field_start, pos));
        field_start = pos + 1;
        if block[pos] != b'\n' {
            continue;
        }
        filling.close(block, record_start, pos, line);
        record_start = field_start;
        line += 1;
        if filling.records.len() == BATCH {
            if !intern(rows, &ready, &filling) {
                return;
            }
            ready.clear();
            std::mem::swap(&mut ready, &mut filling);
        }
    }
    if record_start < block.len() {
        filling.fields.push((field_start, block.len()));
        filling.close(block, record_start, block.len(), line);
    }
    let none = PendingRecords::default();
    if intern(rows, &ready, &filling) {
        intern(rows, &filling, &none);
    }
}

/// Ends the record that started at `record_start` and ends at `end` (its `\n` or the block end):
/// a CR before the line end is cut from the last field. Returns the record's end without the CR.
fn close_record(
    block: &[u8],
    fields: &mut [(usize, usize)],
    record_start: usize,
    end: usize,
) -> usize {
    let mut last_end = end;
    if last_end > record_start && block[last_end - 1] == b'\r' {
        last_end -= 1;
    }
    if let Some(last) = fields.last_mut() {
        last.1 = last.1.min(last_end).max(last.0);
    }
    last_end
}

/// Quoted fields: the `csv` crate does the unquoting.
fn parse_quoted<'a>(
    block: &'a [u8],
    layout: &Layout,
    known: Known<'_>,
    rows: &mut BlockRows<'a, '_>,
) {
    // Records end at `\n` only, as on the fast path: with the crate's default CRLF terminator a
    // `\r` ends the record and the `\n` after it is counted as the next record's line, so every
    // line number after a quoted field in a CRLF file came out one too low. The `\r` of a `\r\n`
    // is cut from the last field below.
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .terminator(::csv::Terminator::Any(b'\n'))
        .from_reader(block);
    let mut record = ::csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => return,
            Ok(true) => {}
            Err(error) => {
                let line = error.position().map_or(0, |p| p.line().saturating_sub(1));
                rows.record_error(line, b"", format!("unreadable CSV: {error}"));
                return;
            }
        }
        let start = record.position().map_or(0, |p| p.byte() as usize);
        let raw = &block[start..reader.position().byte() as usize];
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let ends_with_cr = raw.ends_with(b"\r");
        let line = record.position().map_or(0, |p| p.line().saturating_sub(1));
        if raw.len() - usize::from(ends_with_cr) > MAX_RECORD_BYTES {
            rows.record_too_long(line, &block[start..], layout.width);
            return;
        }
        if record.len() == 1 && (record[0].is_empty() || (ends_with_cr && &record[0] == b"\r")) {
            continue;
        }
        if record.len() != layout.width {
            let message = format!(
                "expected {} fields as in the header, found {}",
                layout.width,
                record.len()
            );
            rows.record_error(line, record.as_slice(), message);
            return;
        }
        let mut fields: Vec<Vec<u8>> = record.iter().map(<[u8]>::to_vec).collect();
        if ends_with_cr {
            // A `\r` outside quotes before the line end (a `\r` inside quotes is kept).
            if let Some(last) = fields.last_mut() {
                last.pop();
            }
        }
        if !rows.push_record(layout, known, line, |i| Cow::Owned(fields[i].clone())) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csv::column_parts::split_parts;
    use memchr::memchr_iter;

    struct Empty(IdMap);
    static EMPTY: std::sync::LazyLock<Empty> = std::sync::LazyLock::new(|| Empty(IdMap::new()));

    impl Empty {
        fn known(&self) -> Known<'_> {
            Known {
                users: &self.0,
                items: &self.0,
                types: &self.0,
            }
        }
    }

    /// Parses `block` into freshly reserved columns and hands the rows to `check`.
    fn parse(block: &[u8], check: impl FnOnce(&BlockRows<'_, '_>)) {
        let lines = memchr_iter(b'\n', block).count() as u64;
        let capacity = [row_capacity(block, lines)];
        let (mut user, mut item, mut timestamp) = (Vec::new(), Vec::new(), Vec::new());
        let cols = BlockColumns {
            user: split_parts(&mut user, &capacity).pop().unwrap(),
            item: split_parts(&mut item, &capacity).pop().unwrap(),
            timestamp: split_parts(&mut timestamp, &capacity).pop().unwrap(),
            ..BlockColumns::default()
        };
        check(&parse_block(block, &layout(), EMPTY.known(), lines, cols));
    }

    fn layout() -> Layout {
        Layout {
            user: 0,
            item: 1,
            timestamp: 2,
            event_type: None,
            event_value: None,
            width: 3,
            timestamp_unit: TimestampUnit::Seconds,
        }
    }

    #[test]
    fn plain_and_quoted_paths_agree() {
        let plain = b"u,a,1\nv,b,2\r\n\nu,b,3\n";
        let quoted = b"\"u\",a,1\nv,\"b\",2\r\n\nu,b,3\n";
        let crlf = b"\"u\",a,1\r\nv,b,\"2\"\r\n\r\nu,b,3\r\n";
        for block in [&plain[..], &quoted[..], &crlf[..]] {
            parse(block, |rows| {
                assert!(rows.error.is_none());
                assert_eq!(rows.cols.user.as_slice(), [LOCAL, LOCAL | 1, LOCAL]);
                assert_eq!(rows.cols.item.as_slice(), [LOCAL, LOCAL | 1, LOCAL | 1]);
                assert_eq!(rows.cols.timestamp.as_slice(), [1, 2, 3]);
                assert_eq!(rows.lines, 4);
            });
        }
    }

    #[test]
    fn errors_carry_the_block_line() {
        parse(b"u,a,1\nu,a,x\n", |rows| {
            let error = rows.error.as_ref().unwrap();
            assert_eq!((error.line, error.column), (1, Some(2)));
        });
        parse(b"u,a,1\n\nu,a\n", |rows| {
            assert_eq!(rows.error.as_ref().unwrap().line, 2);
        });
        // CRLF after a quoted field: the line count is not shifted by the `\r\n`s.
        parse(b"\"u\",a,1\r\nu,b,2\r\n\r\nu,c,x\r\n", |rows| {
            let error = rows.error.as_ref().unwrap();
            assert_eq!((error.line, error.column), (3, Some(2)));
        });
        // A `\r` inside quotes is part of the field.
        parse(b"u,\"a\r\",1\r\n", |rows| {
            let error = rows.error.as_ref().unwrap();
            assert_eq!((error.line, error.column), (0, Some(1)));
        });
    }
}
