//! The header: the first record of the file, read before any batch, naming the columns.
//!
//! Column names are matched case-insensitively, surrounding spaces ignored (a UTF-8 BOM before the
//! first is dropped): `USER_ID`, `ITEM_ID`, `TIMESTAMP` are required, `EVENT_TYPE` and
//! `EVENT_VALUE` optional, any other column is listed in `ignored`.

use std::io::Read;
use std::path::Path;

use ::csv::ByteRecord;

use super::batches::fill;
use super::block::Layout;
use super::boundaries::{first_record_end, lone_carriage_return, record_bytes};
use super::record_limit::{overlong_field, too_long_message, MAX_RECORD_BYTES};
use super::schema;
use super::timestamps::TimestampUnit;
use crate::error::Result;

/// The columns of a file.
pub(super) struct Header {
    /// Where each schema column sits.
    pub layout: Layout,
    /// Every column's name, in file order.
    pub names: Vec<String>,
    /// The columns that are not part of the schema.
    pub ignored: Vec<String>,
}

/// Reads the header from `source` into `buf` and removes it from there (what was read past it
/// stays in `buf`); returns it and whether the source has ended.
pub(super) fn read_header(
    source: &mut impl Read,
    buf: &mut Vec<u8>,
    path: &Path,
    file_name: &str,
    timestamp_unit: TimestampUnit,
) -> Result<(Header, bool)> {
    // A buffer of more than `MAX_RECORD_BYTES + 1` bytes (a `\r` before the line break is not
    // counted) without a record end holds an overlong record.
    let mut eof = fill(source, buf, 1 << 16, path)?;
    let header_end = loop {
        if let Some(end) = first_record_end(buf) {
            break end;
        }
        if eof || buf.len() > MAX_RECORD_BYTES + 1 {
            break buf.len();
        }
        let want = (buf.len() * 2).min(MAX_RECORD_BYTES + 2);
        eof = fill(source, buf, want, path)?;
    };
    if let Some(cr) = lone_carriage_return(&buf[..header_end]) {
        // Supporting them would mean rewriting `\r` to `\n` on every path, quoted fields included,
        // for a format last written by Mac OS 9; a clear error costs the user one `tr`.
        return Err(schema(
            file_name,
            1,
            "*",
            &buf[..cr],
            "CR-only line endings (classic Mac OS) are not supported: expected lines ending in \
             \\n or \\r\\n; convert the file first, e.g. with tr '\\r' '\\n'",
        ));
    }
    if record_bytes(&buf[..header_end]) > MAX_RECORD_BYTES {
        let (field, value) = overlong_field(buf);
        let column = format!("#{}", field + 1);
        return Err(schema(file_name, 1, &column, value, too_long_message()));
    }
    let header = parse_header(file_name, &buf[..header_end], timestamp_unit)?;
    buf.drain(..header_end);
    Ok((header, eof))
}

fn parse_header(file: &str, raw_header: &[u8], timestamp_unit: TimestampUnit) -> Result<Header> {
    let mut reader = ::csv::ReaderBuilder::new()
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
