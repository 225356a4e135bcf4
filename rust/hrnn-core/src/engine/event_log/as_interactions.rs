//! An event log as training rows (`hrnn train --events LOG`, `Interactions.from_event_log`).
//!
//! Each logged event with an item becomes one row: its user, item, `sent_at` rounded down to whole
//! seconds, event type and value. Two rules, as Personalize applies them at a full retrain:
//! - **Repeats** (the same `event_id`, or the same content without one — the rule `put_events`
//!   applies) count once; a log written by this version holds none, an older or concatenated one
//!   may.
//! - **Stitching**: an anonymous event (no user id) whose session at some point carried a user id
//!   belongs to that user (the first user id seen for the session); other anonymous events keep
//!   the session id as their user id, as the engine serves them.

use rustc_hash::{FxHashMap, FxHashSet};

use super::format::LogContents;
use crate::engine::dedup::EventKey;

/// The rows of a log, column by column, and what the rules did.
#[derive(Debug, Default, PartialEq)]
pub struct LogRows {
    /// USER_ID of each row.
    pub users: Vec<String>,
    /// ITEM_ID of each row.
    pub items: Vec<String>,
    /// TIMESTAMP (whole seconds) of each row.
    pub timestamps: Vec<i64>,
    /// EVENT_TYPE of each row.
    pub event_types: Vec<String>,
    /// EVENT_VALUE of each row (NaN where absent).
    pub event_values: Vec<f64>,
    /// Events without an item (not rows).
    pub without_item: u64,
    /// Repeats left out.
    pub repeats: u64,
    /// Anonymous rows given the user id their session later (or earlier) carried.
    pub stitched: u64,
}

/// The training rows of `contents` (see the module docs).
pub fn log_rows(contents: &LogContents) -> LogRows {
    let mut session_user: FxHashMap<&str, &str> = FxHashMap::default();
    for event in &contents.events {
        if let Some(user) = &event.user_id {
            session_user
                .entry(event.session_id.as_str())
                .or_insert(user.as_str());
        }
    }
    let mut seen = FxHashSet::default();
    let mut rows = LogRows::default();
    for event in &contents.events {
        if !seen.insert(EventKey::of(event, event.user_key())) {
            rows.repeats += 1;
            continue;
        }
        let Some(item) = &event.item_id else {
            rows.without_item += 1;
            continue;
        };
        let user = match (&event.user_id, session_user.get(event.session_id.as_str())) {
            (Some(user), _) => user.as_str(),
            (None, Some(user)) => {
                rows.stitched += 1;
                user
            }
            (None, None) => event.session_id.as_str(),
        };
        rows.users.push(user.to_owned());
        rows.items.push(item.clone());
        rows.timestamps.push(event.sent_at.floor() as i64);
        rows.event_types.push(event.event_type.clone());
        rows.event_values
            .push(event.event_value.unwrap_or(f64::NAN));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Event;

    fn event(user: Option<&str>, session: &str, item: Option<&str>, t: f64) -> Event {
        Event {
            user_id: user.map(Into::into),
            session_id: session.into(),
            event_type: "click".into(),
            sent_at: t,
            item_id: item.map(Into::into),
            event_value: None,
            event_id: None,
            impression: vec![],
            properties: None,
        }
    }

    #[test]
    fn anonymous_sessions_are_stitched_to_the_user_they_later_became() {
        let contents = LogContents {
            events: vec![
                event(None, "s1", Some("a"), 10.5),
                event(None, "s2", Some("b"), 11.0),
                event(Some("u1"), "s1", Some("c"), 12.0),
                event(None, "s1", None, 13.0),
                event(None, "s1", Some("a"), 10.5), // a repeat
            ],
            ..LogContents::default()
        };
        let rows = log_rows(&contents);
        assert_eq!(rows.users, ["u1", "s2", "u1"]);
        assert_eq!(rows.items, ["a", "b", "c"]);
        assert_eq!(rows.timestamps, [10, 11, 12]);
        assert_eq!((rows.stitched, rows.repeats, rows.without_item), (1, 1, 1));
    }
}
