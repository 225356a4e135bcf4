//! Reading a file: the header, then batch after batch — each read while the previous one is
//! parsed, cut into blocks parsed in parallel (`block`), then merged in file order (`merge`) — so
//! the result, and the first error reported, are the same as a sequential parse.

use std::fs::File;
use std::path::Path;

use rayon::prelude::*;

use super::batches::{batch_block_bytes, batch_end, fill, split_blocks, BLOCK_BYTES};
use super::block::{parse_block, row_capacity, BlockRows};
use super::header::{read_header, Header};
use super::merge::{self, GlobalIds};
use super::record_limit::MAX_RECORD_BYTES;
use super::schema;
use super::timestamps::TimestampUnit;
use crate::error::{Error, Result};
use crate::interactions::Interactions;

/// Reads an interactions CSV file whose TIMESTAMP column is in Unix epoch seconds.
pub fn read_csv(path: &Path) -> Result<Interactions> {
    read_csv_with_unit(path, TimestampUnit::Seconds)
}

/// Reads an interactions CSV file whose TIMESTAMP column is in `timestamp_unit`; values are
/// converted to whole seconds (rounded down) and must lie in 1970-01-01 ..= 2199-12-31 UTC.
pub fn read_csv_with_unit(path: &Path, timestamp_unit: TimestampUnit) -> Result<Interactions> {
    read_csv_in_blocks(path, BLOCK_BYTES, timestamp_unit)
}

/// [`read_csv`] with a given block size (batches hold four blocks); the result does not depend on it.
fn read_csv_in_blocks(
    path: &Path,
    block_bytes: usize,
    timestamp_unit: TimestampUnit,
) -> Result<Interactions> {
    let file_name = path.display().to_string();
    let mut source = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = Vec::with_capacity(4 * block_bytes + (1 << 20));
    let (header, mut eof) = read_header(&mut source, &mut buf, path, &file_name, timestamp_unit)?;

    let mut ids = GlobalIds::default();
    let mut out = merge::empty_output(&header, &file_name);
    let file_bytes = source.metadata().map_or(0, |m| m.len()) as usize;
    let mut lines_before = 1u64; // the header's line
    let mut batch = 0;
    let mut next: Vec<u8> = Vec::with_capacity(buf.capacity());
    loop {
        if !eof {
            let want = 4 * batch_block_bytes(block_bytes, batch);
            eof = fill(&mut source, &mut buf, want, path)?;
        }
        let Some(limit) = batch_end(&buf, eof, lines_before, &header.names, &file_name)? else {
            eof = fill(&mut source, &mut buf, MAX_RECORD_BYTES + 2, path)?;
            continue;
        };
        let blocks = split_blocks(&buf[..limit], batch_block_bytes(block_bytes, batch));
        if out.user.is_empty() && limit > 0 {
            // Size the columns once from the first batch's bytes per line (+5%), sparing regrowth.
            let lines = memchr::memchr_iter(b'\n', &buf[..limit]).count().max(1);
            merge::reserve(&mut out, file_bytes / (limit / lines).max(1) * 21 / 20);
        }
        ids.check_capacity()?;
        let lines: Vec<u64> = blocks
            .par_iter()
            .map(|b| memchr::memchr_iter(b'\n', b).count() as u64)
            .collect();
        let sizes: Vec<usize> = blocks
            .iter()
            .zip(&lines)
            .map(|(b, &l)| row_capacity(b, l))
            .collect();
        let known = ids.known();
        // Each block writes its rows straight into its part of the output columns.
        let parts = merge::split_batch(&mut out, &sizes);
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
        lines_before = first_error(&parsed, &header, &file_name, lines_before)?;
        ids.globalize(&mut parsed);
        let written: Vec<usize> = parsed.iter().map(|b| b.cols.user.len()).collect();
        drop(parsed);
        // SAFETY: every block wrote one value per row into each of its parts of the columns the
        // file has (`written` rows; an error would have returned above), and nothing touched the
        // columns since `split_batch`.
        unsafe { merge::commit_batch(&mut out, &sizes, &written) };
        batch += 1;
        if eof {
            break;
        }
        eof = read?;
        std::mem::swap(&mut buf, &mut next);
    }
    merge::finish(ids, out)
}

/// The first error of a batch's blocks, in file order, as a schema error naming the file's line;
/// else the lines read once the batch (which starts after `lines_before` lines) is done.
fn first_error(
    parsed: &[BlockRows<'_, '_>],
    header: &Header,
    file_name: &str,
    mut lines_before: u64,
) -> Result<u64> {
    for block in parsed {
        if let Some(error) = &block.error {
            let column = error.column.map_or("*", |c| header.names[c].as_str());
            return Err(schema(
                file_name,
                lines_before + error.line + 1,
                column,
                &error.value,
                error.message.clone(),
            ));
        }
        lines_before += block.lines;
    }
    Ok(lines_before)
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
