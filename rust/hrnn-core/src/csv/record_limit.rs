//! The longest CSV record the reader accepts, and the error that names where a longer one is.
//!
//! Why a limit: the reader holds a whole record in memory, so a file that is one huge line (or a
//! quote left open, which turns the rest of the file into one field) would be read whole — and a
//! 100 MB line took ~700 MB while it was buffered, copied and parsed. No valid row needs more than
//! a few KB (ids are at most 256 characters), so a record past [`MAX_RECORD_BYTES`] is rejected
//! as soon as that many bytes have been read, and the memory one record can take stays bounded.

/// The most bytes one record may have (its line break not counted): 1 MiB.
pub(crate) const MAX_RECORD_BYTES: usize = 1 << 20;

/// What was expected, for the error on a record past [`MAX_RECORD_BYTES`].
pub(crate) fn too_long_message() -> String {
    format!(
        "expected a record of at most {MAX_RECORD_BYTES} bytes (1 MiB), found a longer one: no \
         valid row needs that much (ids are at most 256 characters); is a quote left open?"
    )
}

/// For a record that starts at `record[0]` and runs past [`MAX_RECORD_BYTES`]: the 0-based index
/// of the field that holds its byte `MAX_RECORD_BYTES` (quotes respected), and that field's
/// first bytes (enough for an 80-character excerpt).
pub(crate) fn overlong_field(record: &[u8]) -> (usize, &[u8]) {
    let scanned = &record[..record.len().min(MAX_RECORD_BYTES + 1)];
    let mut inside = false;
    let mut field = 0;
    let mut field_start = 0;
    for (i, &b) in scanned.iter().enumerate() {
        match b {
            b'"' => inside = !inside,
            b',' if !inside => {
                field += 1;
                field_start = i + 1;
            }
            _ => {}
        }
    }
    let end = scanned.len().min(field_start + 4 * 80);
    (field, &scanned[field_start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_field_that_crosses_the_limit() {
        let mut record = b"u,\"a,b\",".to_vec();
        record.extend(std::iter::repeat_n(b'x', MAX_RECORD_BYTES));
        let (field, start) = overlong_field(&record);
        assert_eq!(field, 2);
        assert_eq!(start.len(), 320);
        assert!(start.iter().all(|&b| b == b'x'));
        let mut record = vec![b'y'; MAX_RECORD_BYTES + 10];
        record[5] = b',';
        assert_eq!(overlong_field(&record).0, 1);
    }
}
