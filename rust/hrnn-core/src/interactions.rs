//! The interactions table in the Amazon Personalize schema, held column-wise with dense indices.

use std::sync::Arc;

use rayon::prelude::*;

use crate::error::{excerpt, Error, Result};
use crate::id_map::IdMap;

/// Longest id Personalize accepts, in characters.
pub const MAX_ID_CHARS: usize = 256;

/// Minimum data Personalize requires to train a solution.
pub const MIN_INTERACTIONS: usize = 1000;
/// Minimum number of users with at least [`MIN_EVENTS_PER_USER`] interactions.
pub const MIN_USERS: usize = 25;
/// Events a user needs to count towards [`MIN_USERS`].
pub const MIN_EVENTS_PER_USER: usize = 2;

/// One documented rule that dropped data, and how much it dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct DropRule {
    /// Short name of the rule (e.g. `event_type`, `max_user_history_length_percentile`).
    pub rule: String,
    /// What the rule was applied with, in words.
    pub detail: String,
    /// Rows dropped by this rule.
    pub rows_dropped: usize,
    /// Users that lost all their rows by this rule.
    pub users_dropped: usize,
    /// Items that lost all their rows by this rule.
    pub items_dropped: usize,
}

/// Interactions with dense user/item/event-type indices. Rows keep input order.
#[derive(Debug, Clone)]
pub struct Interactions {
    /// Dense user index of each row.
    pub user: Vec<u32>,
    /// Dense item index of each row.
    pub item: Vec<u32>,
    /// Unix seconds of each row.
    pub timestamp: Vec<i64>,
    /// Dense event-type index of each row (all 0 when the column is absent).
    pub event_type: Vec<u32>,
    /// EVENT_VALUE of each row; NaN where absent or empty.
    pub event_value: Vec<f32>,
    /// User ids, by index.
    pub user_ids: Arc<Vec<String>>,
    /// Item ids, by index.
    pub item_ids: Arc<Vec<String>>,
    /// Event types, by index (`[""]` when the column is absent).
    pub event_types: Arc<Vec<String>>,
    /// Whether the source had an EVENT_TYPE column.
    pub has_event_type: bool,
    /// Whether the source had an EVENT_VALUE column.
    pub has_event_value: bool,
    /// Columns present in the source but not used (as written in the header).
    pub ignored_columns: Vec<String>,
    /// Rows read from the source, before any rule.
    pub rows_read: usize,
    /// Every rule that dropped data since the source was read, in order.
    pub drops: Vec<DropRule>,
    /// Where the rows came from (a path or `<arrays>`).
    pub source: String,
}

/// Raw columns for [`Interactions::from_columns`].
pub struct Columns<'a> {
    /// USER_ID of each row.
    pub user_id: &'a [String],
    /// ITEM_ID of each row.
    pub item_id: &'a [String],
    /// TIMESTAMP of each row.
    pub timestamp: &'a [i64],
    /// EVENT_TYPE of each row, when given.
    pub event_type: Option<&'a [String]>,
    /// EVENT_VALUE of each row (NaN = missing), when given.
    pub event_value: Option<&'a [f64]>,
}

const ARRAYS: &str = "<arrays>";

/// Checks an id field: 1–256 characters, no NUL, no line break.
pub(crate) fn check_id(raw: &[u8]) -> std::result::Result<&str, &'static str> {
    if raw.is_empty() {
        return Err("expected a non-empty id");
    }
    let text = std::str::from_utf8(raw).map_err(|_| "expected valid UTF-8")?;
    if text.contains('\0') {
        return Err("expected no NUL bytes");
    }
    if text.contains(['\n', '\r']) {
        return Err("expected no line break inside an id (is a quote left open?)");
    }
    if text.chars().count() > MAX_ID_CHARS {
        return Err("expected at most 256 characters");
    }
    Ok(text)
}

impl Interactions {
    /// Builds interactions from in-memory columns, validating every value like the CSV reader.
    pub fn from_columns(columns: Columns<'_>) -> Result<Self> {
        let n = columns.user_id.len();
        let lengths = [
            ("item_id", Some(columns.item_id.len())),
            ("timestamp", Some(columns.timestamp.len())),
            ("event_type", columns.event_type.map(<[String]>::len)),
            ("event_value", columns.event_value.map(<[f64]>::len)),
        ];
        for (name, len) in lengths {
            if let Some(len) = len {
                if len != n {
                    return Err(Error::invalid_argument(
                        name,
                        format!("expected {n} values (as many as user_id), found {len}"),
                    ));
                }
            }
        }
        let schema = |row: usize, column: &str, value: &[u8], message: &str| Error::Schema {
            file: ARRAYS.into(),
            line: row as u64 + 1,
            column: column.into(),
            value: excerpt(value),
            message: message.into(),
        };
        let mut users = IdMap::new();
        let mut items = IdMap::new();
        let mut types = IdMap::new();
        let mut user = Vec::with_capacity(n);
        let mut item = Vec::with_capacity(n);
        let mut event_type = Vec::with_capacity(n);
        for row in 0..n {
            let intern = |map: &mut IdMap, column: &str, raw: &str| -> Result<u32> {
                let mut problem = "";
                map.intern(raw.as_bytes(), |b| {
                    check_id(b).map(str::to_owned).map_err(|m| problem = m).ok()
                })
                .ok_or_else(|| schema(row, column, raw.as_bytes(), problem))
            };
            user.push(intern(&mut users, "USER_ID", &columns.user_id[row])?);
            item.push(intern(&mut items, "ITEM_ID", &columns.item_id[row])?);
            if let Some(types_col) = columns.event_type {
                event_type.push(intern(&mut types, "EVENT_TYPE", &types_col[row])?);
            }
            let ts = columns.timestamp[row];
            if ts < 0 {
                return Err(schema(
                    row,
                    "TIMESTAMP",
                    ts.to_string().as_bytes(),
                    "expected non-negative Unix epoch seconds",
                ));
            }
        }
        let event_value = match columns.event_value {
            Some(values) => {
                let mut out = Vec::with_capacity(n);
                for (row, &v) in values.iter().enumerate() {
                    if v.is_infinite() {
                        return Err(schema(
                            row,
                            "EVENT_VALUE",
                            v.to_string().as_bytes(),
                            "expected a finite number or missing",
                        ));
                    }
                    out.push(v as f32);
                }
                out
            }
            None => vec![f32::NAN; n],
        };
        let has_event_type = columns.event_type.is_some();
        if !has_event_type {
            event_type = vec![0; n];
            types = IdMap::from_ids(vec![String::new()]);
        }
        Ok(Self {
            user,
            item,
            timestamp: columns.timestamp.to_vec(),
            event_type,
            event_value,
            user_ids: Arc::new(users.into_ids()),
            item_ids: Arc::new(items.into_ids()),
            event_types: Arc::new(types.into_ids()),
            has_event_type,
            has_event_value: columns.event_value.is_some(),
            ignored_columns: Vec::new(),
            rows_read: n,
            drops: Vec::new(),
            source: ARRAYS.into(),
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.user.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.user.is_empty()
    }

    /// Number of distinct users.
    pub fn num_users(&self) -> usize {
        self.user_ids.len()
    }

    /// Number of distinct items.
    pub fn num_items(&self) -> usize {
        self.item_ids.len()
    }

    /// Rows per user, by user index.
    pub fn history_lengths(&self) -> Vec<u32> {
        let mut counts = vec![0u32; self.num_users()];
        for &u in &self.user {
            counts[u as usize] += 1;
        }
        counts
    }

    /// Keeps the rows where `keep(row)` holds, re-indexing users and items densely (in order of
    /// first appearance among kept rows) and recording the drop under `rule`.
    pub fn retain_rows(
        &self,
        rule: &str,
        detail: String,
        keep: impl Fn(usize) -> bool + Sync,
    ) -> Self {
        let n = self.len();
        // 1. Which rows stay (in parallel), then one sequential pass assigning new indices in
        //    order of first appearance among the kept rows.
        let kept_mask: Vec<bool> = (0..n).into_par_iter().map(&keep).collect();
        let mut user_map = vec![u32::MAX; self.num_users()];
        let mut item_map = vec![u32::MAX; self.num_items()];
        let mut user_ids = Vec::new();
        let mut item_ids = Vec::new();
        let mut rows: Vec<u32> = Vec::with_capacity(n);
        for (row, _) in kept_mask.iter().enumerate().filter(|(_, &k)| k) {
            let (u, i) = (self.user[row] as usize, self.item[row] as usize);
            if user_map[u] == u32::MAX {
                user_map[u] = user_ids.len() as u32;
                user_ids.push(self.user_ids[u].clone());
            }
            if item_map[i] == u32::MAX {
                item_map[i] = item_ids.len() as u32;
                item_ids.push(self.item_ids[i].clone());
            }
            rows.push(row as u32);
        }
        // 2. Gather the columns (in parallel).
        let gather = |column: &[u32], map: &[u32]| -> Vec<u32> {
            rows.par_iter()
                .map(|&r| map[column[r as usize] as usize])
                .collect()
        };
        let user = gather(&self.user, &user_map);
        let item = gather(&self.item, &item_map);
        let timestamp = rows
            .par_iter()
            .map(|&r| self.timestamp[r as usize])
            .collect();
        let event_type = rows
            .par_iter()
            .map(|&r| self.event_type[r as usize])
            .collect();
        let event_value = rows
            .par_iter()
            .map(|&r| self.event_value[r as usize])
            .collect();
        let mut drops = self.drops.clone();
        drops.push(DropRule {
            rule: rule.to_owned(),
            detail,
            rows_dropped: n - rows.len(),
            users_dropped: self.num_users() - user_ids.len(),
            items_dropped: self.num_items() - item_ids.len(),
        });
        Interactions {
            user,
            item,
            timestamp,
            event_type,
            event_value,
            user_ids: Arc::new(user_ids),
            item_ids: Arc::new(item_ids),
            event_types: Arc::clone(&self.event_types),
            has_event_type: self.has_event_type,
            has_event_value: self.has_event_value,
            ignored_columns: self.ignored_columns.clone(),
            rows_read: self.rows_read,
            drops,
            source: self.source.clone(),
        }
    }

    /// Personalize's training-data selection: keep only rows of `event_type` (when given) and rows
    /// whose EVENT_VALUE is ≥ `event_value_threshold` (when given; rows without a value are
    /// dropped by the threshold rule).
    pub fn select(
        &self,
        event_type: Option<&str>,
        event_value_threshold: Option<f64>,
    ) -> Result<Self> {
        let mut current = None::<Self>;
        if let Some(wanted) = event_type {
            if !self.has_event_type {
                return Err(Error::invalid_argument(
                    "event_type",
                    format!("{wanted:?} given but the data has no EVENT_TYPE column"),
                ));
            }
            let index = self.event_types.iter().position(|t| t == wanted);
            let index = index.map_or(u32::MAX, |i| i as u32);
            current = Some(self.retain_rows(
                "event_type",
                format!("EVENT_TYPE == {wanted:?}"),
                |r| self.event_type[r] == index,
            ));
        }
        if let Some(threshold) = event_value_threshold {
            if !threshold.is_finite() {
                return Err(Error::invalid_argument(
                    "event_value_threshold",
                    format!("expected a finite number, found {threshold}"),
                ));
            }
            if !self.has_event_value {
                return Err(Error::invalid_argument(
                    "event_value_threshold",
                    "given but the data has no EVENT_VALUE column",
                ));
            }
            let base = current.as_ref().unwrap_or(self);
            let threshold32 = threshold as f32;
            current = Some(base.retain_rows(
                "event_value_threshold",
                format!("EVENT_VALUE >= {threshold} (rows without a value dropped)"),
                |r| base.event_value[r] >= threshold32,
            ));
        }
        Ok(current.unwrap_or_else(|| self.clone()))
    }

    /// Checks Personalize's minimum: ≥ 1000 interactions and ≥ 25 users with ≥ 2 interactions.
    pub fn check_minimum(&self) -> Result<()> {
        let users_ok = self
            .history_lengths()
            .iter()
            .filter(|&&c| c as usize >= MIN_EVENTS_PER_USER)
            .count();
        if self.len() < MIN_INTERACTIONS || users_ok < MIN_USERS {
            return Err(Error::InsufficientData(format!(
                "{}: expected at least {MIN_INTERACTIONS} interactions and at least {MIN_USERS} users \
                 with at least {MIN_EVENTS_PER_USER} interactions each, found {} interactions and {users_ok} such users",
                self.source,
                self.len()
            )));
        }
        Ok(())
    }
}
