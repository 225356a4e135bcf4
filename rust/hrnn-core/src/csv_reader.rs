//! Streaming reader for interactions CSV files in the Amazon Personalize schema.
//!
//! The header names the columns (matched case-insensitively, surrounding spaces ignored):
//! `USER_ID`, `ITEM_ID`, `TIMESTAMP` are required; `EVENT_TYPE` and `EVENT_VALUE` are optional;
//! any other column is kept out of the data and listed in `ignored_columns`. The file is read in
//! one pass through a buffered reader, never held in memory whole.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use csv::ByteRecord;

use crate::error::{excerpt, Error, Result};
use crate::id_map::IdMap;
use crate::interactions::{check_id, Interactions};

const READ_BUFFER: usize = 1 << 20;

struct Layout {
    user: usize,
    item: usize,
    timestamp: usize,
    event_type: Option<usize>,
    event_value: Option<usize>,
    names: Vec<String>,
    ignored: Vec<String>,
}

struct RowError<'a> {
    file: &'a str,
    line: u64,
}

impl RowError<'_> {
    fn at(&self, column: &str, value: &[u8], message: &str) -> Error {
        Error::Schema {
            file: self.file.to_owned(),
            line: self.line,
            column: column.to_owned(),
            value: excerpt(value),
            message: message.to_owned(),
        }
    }
}

fn parse_header(file: &str, header: &ByteRecord) -> Result<Layout> {
    let mut names = Vec::with_capacity(header.len());
    for (i, raw) in header.iter().enumerate() {
        let raw = if i == 0 {
            raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw)
        } else {
            raw
        };
        let name = std::str::from_utf8(raw).map_err(|_| Error::Schema {
            file: file.to_owned(),
            line: 1,
            column: format!("#{}", i + 1),
            value: excerpt(raw),
            message: "expected a UTF-8 column name".into(),
        })?;
        names.push(name.trim().to_owned());
    }
    let find = |wanted: &str| -> Result<Option<usize>> {
        let hits: Vec<usize> = (0..names.len())
            .filter(|&i| names[i].eq_ignore_ascii_case(wanted))
            .collect();
        if hits.len() > 1 {
            return Err(Error::Schema {
                file: file.to_owned(),
                line: 1,
                column: wanted.to_owned(),
                value: names.join(","),
                message: format!(
                    "expected the column {wanted} once, found it {} times",
                    hits.len()
                ),
            });
        }
        Ok(hits.first().copied())
    };
    let required = |wanted: &str| -> Result<usize> {
        find(wanted)?.ok_or_else(|| Error::Schema {
            file: file.to_owned(),
            line: 1,
            column: wanted.to_owned(),
            value: names.join(","),
            message: format!("missing required column {wanted}; the header must name USER_ID, ITEM_ID and TIMESTAMP"),
        })
    };
    let user = required("USER_ID")?;
    let item = required("ITEM_ID")?;
    let timestamp = required("TIMESTAMP")?;
    let event_type = find("EVENT_TYPE")?;
    let event_value = find("EVENT_VALUE")?;
    let used = [
        Some(user),
        Some(item),
        Some(timestamp),
        event_type,
        event_value,
    ];
    let ignored = (0..names.len())
        .filter(|i| !used.contains(&Some(*i)))
        .map(|i| names[i].clone())
        .collect();
    Ok(Layout {
        user,
        item,
        timestamp,
        event_type,
        event_value,
        names,
        ignored,
    })
}

/// Parses a non-negative integer of ASCII digits (Unix epoch seconds).
fn parse_timestamp(raw: &[u8]) -> Option<i64> {
    let digits = raw.strip_prefix(b"+").unwrap_or(raw);
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut value: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(b - b'0');
    }
    Some(value)
}

/// Reads an interactions CSV file.
pub fn read_csv(path: &Path) -> Result<Interactions> {
    let file_name = path.display().to_string();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(READ_BUFFER)
        .from_reader(BufReader::with_capacity(READ_BUFFER, file));
    let csv_error = |e: csv::Error| match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io(path, io),
        other => Error::Schema {
            file: file_name.clone(),
            line: 0,
            column: String::new(),
            value: String::new(),
            message: format!("unreadable CSV: {other:?}"),
        },
    };
    let mut record = ByteRecord::new();
    if !reader.read_byte_record(&mut record).map_err(csv_error)? {
        return Err(Error::Schema {
            file: file_name,
            line: 1,
            column: String::new(),
            value: String::new(),
            message: "empty file; expected a header row naming USER_ID, ITEM_ID, TIMESTAMP".into(),
        });
    }
    let layout = parse_header(&file_name, &record)?;
    let width = layout.names.len();

    let mut users = IdMap::new();
    let mut items = IdMap::new();
    let mut types = IdMap::new();
    let mut out = Interactions {
        user: Vec::new(),
        item: Vec::new(),
        timestamp: Vec::new(),
        event_type: Vec::new(),
        event_value: Vec::new(),
        user_ids: Arc::default(),
        item_ids: Arc::default(),
        event_types: Arc::default(),
        has_event_type: layout.event_type.is_some(),
        has_event_value: layout.event_value.is_some(),
        ignored_columns: layout.ignored.clone(),
        rows_read: 0,
        drops: Vec::new(),
        source: file_name.clone(),
    };
    let mut last_record_start = 0u64;
    while reader.read_byte_record(&mut record).map_err(csv_error)? {
        let position = record.position().expect("csv records carry positions");
        let at = RowError {
            file: &file_name,
            line: position.line(),
        };
        last_record_start = position.byte();
        if record.len() == 1 && record[0].is_empty() {
            continue; // a blank line (e.g. a trailing newline pair) carries no row
        }
        if record.len() != width {
            return Err(at.at(
                "*",
                record.as_slice(),
                &format!(
                    "expected {width} fields as in the header, found {}",
                    record.len()
                ),
            ));
        }
        let intern = |map: &mut IdMap, index: usize| -> Result<u32> {
            let raw = &record[index];
            let mut problem = "";
            map.intern(raw, |b| check_id(b).map_err(|m| problem = m).ok())
                .ok_or_else(|| at.at(&layout.names[index], raw, problem))
        };
        out.user.push(intern(&mut users, layout.user)?);
        out.item.push(intern(&mut items, layout.item)?);
        if let Some(index) = layout.event_type {
            out.event_type.push(intern(&mut types, index)?);
        }
        let raw_ts = &record[layout.timestamp];
        let ts = parse_timestamp(raw_ts).ok_or_else(|| {
            at.at(
                &layout.names[layout.timestamp],
                raw_ts,
                "expected non-negative integer Unix epoch seconds",
            )
        })?;
        out.timestamp.push(ts);
        if let Some(index) = layout.event_value {
            let raw = &record[index];
            let value = if raw.iter().all(u8::is_ascii_whitespace) {
                f32::NAN
            } else {
                std::str::from_utf8(raw)
                    .ok()
                    .and_then(|s| s.trim().parse::<f32>().ok())
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        at.at(
                            &layout.names[index],
                            raw,
                            "expected a finite number or an empty field",
                        )
                    })?
            };
            out.event_value.push(value);
        }
    }
    if out.user.is_empty() {
        return Err(Error::Schema {
            file: file_name,
            line: 2,
            column: String::new(),
            value: String::new(),
            message: "header only; expected at least one data row".into(),
        });
    }
    check_last_record_quotes(
        path,
        &file_name,
        last_record_start,
        reader.position().line(),
    )?;
    let n = out.user.len();
    if !out.has_event_type {
        out.event_type = vec![0; n];
        types = IdMap::from_ids(vec![String::new()]);
    }
    if !out.has_event_value {
        out.event_value = vec![f32::NAN; n];
    }
    out.rows_read = n;
    out.user_ids = Arc::new(users.into_ids());
    out.item_ids = Arc::new(items.into_ids());
    out.event_types = Arc::new(types.into_ids());
    Ok(out)
}

/// The csv crate ends an unterminated quoted field at end of file without an error; a quote left
/// open anywhere else swallows line breaks and fails the id/field checks. This catches the last
/// case: an odd number of quotes in the final record.
fn check_last_record_quotes(path: &Path, file_name: &str, start: u64, line: u64) -> Result<()> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    file.seek(SeekFrom::Start(start))
        .map_err(|e| Error::io(path, e))?;
    let mut tail = Vec::new();
    file.take(1 << 20)
        .read_to_end(&mut tail)
        .map_err(|e| Error::io(path, e))?;
    if tail.iter().filter(|&&b| b == b'"').count() % 2 == 1 {
        return Err(Error::Schema {
            file: file_name.to_owned(),
            line,
            column: "*".into(),
            value: excerpt(&tail),
            message: "a quoted field is left open at the end of the file".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load(text: &[u8]) -> Result<Interactions> {
        let dir =
            std::env::temp_dir().join(format!("hrnn-csv-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.csv");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text)
            .unwrap();
        let result = read_csv(&path);
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
    fn exactly_256_chars_is_fine_and_bom_is_stripped() {
        let text = format!(
            "\u{feff}USER_ID,ITEM_ID,TIMESTAMP\n{},a,1\n",
            "é".repeat(256)
        );
        assert_eq!(load(text.as_bytes()).unwrap().len(), 1);
    }
}
