//! Session sequencing: the one place where event-ordering rules live.
//!
//! Rules: rows are grouped by user (users in index order); within a user, events are ordered by
//! timestamp, ties keeping input order (a stable sort). A session starts at each user's first event
//! and wherever the gap to the user's previous event exceeds `session_timeout` seconds. The time gap
//! of a user's first event is 0.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::interactions::Interactions;

/// Default session timeout in seconds (30 minutes).
pub const DEFAULT_SESSION_TIMEOUT: i64 = 1800;

/// Interactions ordered per user and split into sessions, in CSR form: user `u`'s events are
/// positions `user_offsets[u]..user_offsets[u + 1]` of every per-event column.
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    /// `num_users + 1` offsets into the per-event columns.
    pub user_offsets: Vec<i64>,
    /// Row of the source interactions of each event (a permutation of `0..len`).
    pub row: Vec<i64>,
    /// Item index of each event.
    pub item: Vec<i32>,
    /// Unix seconds of each event.
    pub timestamp: Vec<i64>,
    /// Seconds since the user's previous event (0 for the first).
    pub time_gap: Vec<i64>,
    /// True where a session starts.
    pub session_start: Vec<bool>,
    /// Global session number of each event (0-based, consecutive).
    pub session_id: Vec<i64>,
    /// Event-type index of each event.
    pub event_type: Vec<i32>,
    /// EVENT_VALUE of each event (NaN where absent).
    pub event_value: Vec<f32>,
    /// Number of sessions.
    pub num_sessions: usize,
}

/// Splits `data` into per-user, time-ordered sessions (see the module docs for the rules).
pub fn sessionize(data: &Interactions, session_timeout: i64) -> Result<Sessions> {
    if session_timeout < 0 {
        return Err(Error::invalid_argument(
            "session_timeout",
            format!("expected non-negative seconds, found {session_timeout}"),
        ));
    }
    let n = data.len();
    let num_users = data.num_users();

    // 1. Group rows by user with a stable counting sort.
    let mut user_offsets = vec![0i64; num_users + 1];
    for &u in &data.user {
        user_offsets[u as usize + 1] += 1;
    }
    for u in 0..num_users {
        user_offsets[u + 1] += user_offsets[u];
    }
    let mut cursor: Vec<i64> = user_offsets[..num_users].to_vec();
    // (timestamp, row) pairs: sorting them within a user by the whole pair equals a stable sort by
    // timestamp, because rows enter each user's range in increasing order.
    let mut pairs = vec![(0i64, 0u32); n];
    for (row, &u) in data.user.iter().enumerate() {
        let slot = &mut cursor[u as usize];
        pairs[*slot as usize] = (data.timestamp[row], row as u32);
        *slot += 1;
    }

    // 2. Sort each user's events by time, in parallel over blocks of users.
    for_each_user_slice(&mut pairs, &user_offsets, |events| {
        if !events.is_sorted() {
            events.sort_unstable();
        }
    });

    // 3. Gather the per-event columns and mark sessions.
    let row: Vec<i64> = pairs.par_iter().map(|&(_, r)| i64::from(r)).collect();
    let item: Vec<i32> = pairs
        .par_iter()
        .map(|&(_, r)| data.item[r as usize] as i32)
        .collect();
    let event_type: Vec<i32> = pairs
        .par_iter()
        .map(|&(_, r)| data.event_type[r as usize] as i32)
        .collect();
    let event_value: Vec<f32> = pairs
        .par_iter()
        .map(|&(_, r)| data.event_value[r as usize])
        .collect();
    let timestamp: Vec<i64> = pairs.iter().map(|&(t, _)| t).collect();
    drop(pairs);

    let mut time_gap = vec![0i64; n];
    let mut session_start = vec![false; n];
    let mut session_id = vec![0i64; n];
    let mut next_session = 0i64;
    for u in 0..num_users {
        let (start, end) = (user_offsets[u] as usize, user_offsets[u + 1] as usize);
        for j in start..end {
            let gap = if j == start {
                0
            } else {
                timestamp[j] - timestamp[j - 1]
            };
            time_gap[j] = gap;
            let starts = j == start || gap > session_timeout;
            session_start[j] = starts;
            next_session += i64::from(starts);
            session_id[j] = next_session - 1;
        }
    }
    Ok(Sessions {
        user_offsets,
        row,
        item,
        timestamp,
        time_gap,
        session_start,
        session_id,
        event_type,
        event_value,
        num_sessions: next_session as usize,
    })
}

/// Runs `f` on each user's slice of `values`, spreading blocks of users over the rayon pool.
fn for_each_user_slice<T: Send>(values: &mut [T], offsets: &[i64], f: impl Fn(&mut [T]) + Sync) {
    const BLOCK_EVENTS: usize = 1 << 16;
    // Cut `values` into blocks of whole users of about BLOCK_EVENTS events each.
    let mut blocks: Vec<(&mut [T], usize, usize)> = Vec::new();
    let mut rest = values;
    let mut first_user = 0;
    let num_users = offsets.len() - 1;
    while first_user < num_users {
        let base = offsets[first_user] as usize;
        let mut last_user = first_user + 1;
        while last_user < num_users && (offsets[last_user] as usize) - base < BLOCK_EVENTS {
            last_user += 1;
        }
        let len = offsets[last_user] as usize - base;
        let (block, tail) = rest.split_at_mut(len);
        blocks.push((block, first_user, last_user));
        rest = tail;
        first_user = last_user;
    }
    blocks.into_par_iter().for_each(|(block, first, last)| {
        let base = offsets[first] as usize;
        let mut block = block;
        for u in first..last {
            let len = (offsets[u + 1] - offsets[u]) as usize;
            let (events, tail) = block.split_at_mut(len);
            f(events);
            block = tail;
        }
        debug_assert!(
            block.is_empty(),
            "block of users starting at {base} not consumed"
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interactions::Columns;
    use proptest::prelude::*;

    fn build(users: &[u8], times: &[i64]) -> Interactions {
        let user_id: Vec<String> = users.iter().map(|u| format!("u{u}")).collect();
        let item_id: Vec<String> = (0..users.len()).map(|i| format!("i{}", i % 7)).collect();
        Interactions::from_columns(Columns {
            user_id: &user_id,
            item_id: &item_id,
            timestamp: times,
            event_type: None,
            event_value: None,
        })
        .unwrap()
    }

    #[test]
    fn splits_at_gaps_over_timeout() {
        let data = build(&[1, 1, 1, 2, 1], &[0, 100, 2000, 50, 3800]);
        let s = sessionize(&data, 1800).unwrap();
        assert_eq!(s.user_offsets, vec![0, 4, 5]);
        assert_eq!(s.timestamp, vec![0, 100, 2000, 3800, 50]);
        assert_eq!(s.session_start, vec![true, false, true, false, true]);
        assert_eq!(s.session_id, vec![0, 0, 1, 1, 2]);
        assert_eq!(s.time_gap, vec![0, 100, 1900, 1800, 0]);
        assert_eq!(s.num_sessions, 3);
    }

    #[test]
    fn ties_keep_input_order() {
        let data = build(&[1, 1, 1], &[5, 3, 5]);
        let s = sessionize(&data, 10).unwrap();
        assert_eq!(s.row, vec![1, 0, 2]);
    }

    proptest! {
        #[test]
        fn partitions_sorts_and_splits(events in prop::collection::vec((0u8..6, 0i64..50), 0..300), timeout in 0i64..10) {
            let users: Vec<u8> = events.iter().map(|e| e.0).collect();
            let times: Vec<i64> = events.iter().map(|e| e.1).collect();
            let data = build(&users, &times);
            let s = sessionize(&data, timeout).unwrap();
            // A permutation of the input rows.
            let mut rows = s.row.clone();
            rows.sort_unstable();
            prop_assert_eq!(rows, (0..events.len() as i64).collect::<Vec<_>>());
            for u in 0..data.num_users() {
                let (a, b) = (s.user_offsets[u] as usize, s.user_offsets[u + 1] as usize);
                for j in a..b {
                    let r = s.row[j] as usize;
                    prop_assert_eq!(data.user[r] as usize, u);
                    prop_assert_eq!(s.timestamp[j], times[r]);
                    if j > a {
                        // time-sorted and stable
                        prop_assert!((s.timestamp[j - 1], s.row[j - 1]) < (s.timestamp[j], s.row[j]));
                        prop_assert_eq!(s.session_start[j], s.timestamp[j] - s.timestamp[j - 1] > timeout);
                    } else {
                        prop_assert!(s.session_start[j]);
                    }
                }
            }
        }
    }
}
