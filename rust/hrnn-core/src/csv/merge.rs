//! Merging parsed blocks into the output, block by block in file order: each block's new ids get
//! global indices (so global indices keep the order of first appearance in the file), and the
//! rows each block wrote into its part of the output columns are committed.

use std::sync::Arc;

use rayon::prelude::*;

use super::block::{BlockColumns, BlockRows, Known, LocalIds, LOCAL};
use super::column_parts::{commit_parts, split_parts, ColumnPart};
use super::header::Header;
use super::schema;
use crate::error::{Error, Result};
use crate::id_map::IdMap;
use crate::interactions::Interactions;

/// The global id maps, filled block by block in file order.
#[derive(Default)]
pub(super) struct GlobalIds {
    users: IdMap,
    items: IdMap,
    types: IdMap,
}

impl GlobalIds {
    /// The ids known so far, shared read-only by the blocks being parsed.
    pub(super) fn known(&self) -> Known<'_> {
        Known {
            users: &self.users,
            items: &self.items,
            types: &self.types,
        }
    }

    /// Fails once a column holds too many distinct ids for a block-local index to be told apart.
    pub(super) fn check_capacity(&self) -> Result<()> {
        if self.users.len().max(self.items.len()) >= LOCAL as usize {
            return Err(Error::invalid_argument(
                "path",
                "more than 2^31 distinct ids in one column",
            ));
        }
        Ok(())
    }

    /// Gives the ids new in each block global indices and rewrites the blocks' rows to them.
    ///
    /// Ids new in a block get global indices in the block's order of first appearance, block by
    /// block (sequential, but there are few); then the rows that hold a block-local index are
    /// rewritten in parallel.
    pub(super) fn globalize(&mut self, parsed: &mut [BlockRows<'_, '_>]) {
        let locals: Vec<[Vec<u32>; 3]> = parsed
            .iter()
            .map(|b| {
                [
                    remap(&mut self.users, &b.users),
                    remap(&mut self.items, &b.items),
                    remap(&mut self.types, &b.types),
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
    }
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

/// The empty output of a file with `header`, read from `file_name`.
pub(super) fn empty_output(header: &Header, file_name: &str) -> Interactions {
    Interactions {
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
        source: file_name.to_owned(),
    }
}

/// Reserves room for `rows` more rows in each column the file has.
pub(super) fn reserve(out: &mut Interactions, rows: usize) {
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

/// One batch's parts of the output columns, one [`BlockColumns`] per block (see `column_parts`).
pub(super) fn split_batch<'o>(out: &'o mut Interactions, sizes: &[usize]) -> Vec<BlockColumns<'o>> {
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

/// Commits the rows the blocks of a batch wrote: `written[b]` rows into part `b` (of `sizes[b]`
/// slots) of each column the file has.
///
/// # Safety
///
/// Every block wrote `written[b]` values into each of its parts from [`split_batch`] with the same
/// `sizes`, and nothing touched the columns since.
pub(super) unsafe fn commit_batch(out: &mut Interactions, sizes: &[usize], written: &[usize]) {
    // SAFETY: the caller's contract is `commit_parts`'s, column by column.
    unsafe {
        commit_parts(&mut out.user, sizes, written);
        commit_parts(&mut out.item, sizes, written);
        commit_parts(&mut out.timestamp, sizes, written);
        if out.has_event_type {
            commit_parts(&mut out.event_type, sizes, written);
        }
        if out.has_event_value {
            commit_parts(&mut out.event_value, sizes, written);
        }
    }
}

/// The interactions read: the id lists, and the columns a file without EVENT_TYPE or
/// EVENT_VALUE lacks (one type `""`, values NaN). Errors when the file had no data row.
pub(super) fn finish(ids: GlobalIds, mut out: Interactions) -> Result<Interactions> {
    let GlobalIds {
        users,
        items,
        mut types,
    } = ids;
    if out.user.is_empty() {
        return Err(schema(
            &out.source,
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
