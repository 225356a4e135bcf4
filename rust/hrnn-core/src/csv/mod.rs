//! Streaming reader for interactions CSV files in the Amazon Personalize schema.
//!
//! The header names the columns (matched case-insensitively, surrounding spaces ignored):
//! `USER_ID`, `ITEM_ID`, `TIMESTAMP` are required; `EVENT_TYPE` and `EVENT_VALUE` are optional;
//! any other column is kept out of the data and listed in `ignored_columns`.
//!
//! The file is read in batches of four blocks, never whole; each batch is cut at record
//! boundaries into blocks that are parsed in parallel, then merged in file order, so the result —
//! and the first error reported — is the same as a sequential parse. One concept per file:
//! - `reader`: [`read_csv`] / [`read_csv_with_unit`]: the header, then batch after batch;
//! - `header`: the first record: column names and where each schema column sits;
//! - `batches`: batch and block sizes, filling the buffer, where a batch ends, cutting blocks;
//! - `boundaries`: where records end outside quotes, open quotes, CR-only line endings;
//! - `record_limit`: the longest record accepted (1 MiB) and the error naming a longer one;
//! - `block`: parsing one block of whole records, with block-local ids;
//! - `separators`: the SIMD search for `,` and `\n` in blocks without quotes;
//! - `timestamps`: TIMESTAMP values, their unit ([`TimestampUnit`]) and accepted range;
//! - `column_parts`: disjoint parts of the output columns that blocks write in parallel;
//! - `merge`: global ids and the output columns, block by block in file order.

mod batches;
mod block;
mod boundaries;
mod column_parts;
mod header;
mod merge;
mod reader;
mod record_limit;
mod separators;
pub mod timestamps;

pub use reader::{read_csv, read_csv_with_unit};
pub use timestamps::TimestampUnit;

use crate::error::{excerpt, Error};

/// A schema error at `line` (1-based) and `column` of `file`, quoting `value`.
fn schema(file: &str, line: u64, column: &str, value: &[u8], message: impl Into<String>) -> Error {
    Error::Schema {
        file: file.to_owned(),
        line,
        column: column.to_owned(),
        value: excerpt(value),
        message: message.into(),
    }
}
