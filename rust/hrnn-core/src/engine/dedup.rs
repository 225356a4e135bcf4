//! Which events were already accepted: Personalize's de-duplication, over a bounded window.
//!
//! An event is identified by its `event_id` when it has one; without one, by its content — the
//! user (or session), event type, timestamp, item, value, impression and properties — so sending
//! the same event twice (a retried request, a re-run import) records it once, as Personalize
//! drops events with the same timestamp and identical properties.
//!
//! Identities are kept as 128-bit hashes (two seeded SipHash-1-3 halves; a false match needs ~2⁶⁴
//! events), remembering the most recent `capacity` of them, oldest forgotten first: a repeat
//! is caught if fewer than `capacity` newer events were accepted in between. That bounds memory
//! (~50 bytes per remembered event) in a process that runs for months.

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use rustc_hash::FxHashMap;

use super::events::Event;

/// Shards of the window (each behind its own lock).
const SHARDS: usize = 16;

/// An event's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventKey(u128);

/// One 64-bit half of a key: SipHash-1-3 (std's `DefaultHasher`, fixed keys within a build —
/// identities are never persisted, only rebuilt by replay) over a seed and the fields.
fn half(seed: u8, write: impl Fn(&mut DefaultHasher)) -> u64 {
    let mut h = DefaultHasher::new();
    seed.hash(&mut h);
    write(&mut h);
    h.finish()
}

impl EventKey {
    /// The identity of `event` sent by `user_key` (the user id, or the session id when anonymous).
    pub fn of(event: &Event, user_key: &str) -> Self {
        let write = |h: &mut DefaultHasher| match &event.event_id {
            Some(id) => {
                1u8.hash(h);
                id.hash(h);
            }
            None => {
                2u8.hash(h);
                user_key.hash(h);
                event.event_type.hash(h);
                event.sent_at.to_bits().hash(h);
                event.item_id.hash(h);
                event.event_value.map(f64::to_bits).hash(h);
                event.impression.hash(h);
                event.properties.hash(h);
            }
        };
        Self(u128::from(half(1, write)) << 64 | u128::from(half(2, write)))
    }
}

#[derive(Default)]
struct Shard {
    /// Key → sequence number of its latest insertion.
    seen: FxHashMap<EventKey, u64>,
    /// Insertion order, oldest first.
    order: VecDeque<(EventKey, u64)>,
    next: u64,
}

/// The most recent `capacity` event identities.
pub struct DedupWindow {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

impl DedupWindow {
    /// A window remembering about `capacity` identities (at least one per shard).
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, key: EventKey) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[(key.0 as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers `key`; false if it was already remembered.
    pub fn insert(&self, key: EventKey) -> bool {
        let mut shard = self.shard(key);
        if shard.seen.contains_key(&key) {
            return false;
        }
        let seq = shard.next;
        shard.next += 1;
        shard.seen.insert(key, seq);
        shard.order.push_back((key, seq));
        while shard.order.len() > self.per_shard {
            let (old, old_seq) = shard.order.pop_front().expect("non-empty");
            if shard.seen.get(&old) == Some(&old_seq) {
                shard.seen.remove(&old);
            }
        }
        true
    }

    /// Forgets `key` (an insertion whose event was then not recorded).
    pub fn remove(&self, key: EventKey) {
        self.shard(key).seen.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: Option<&str>, t: f64) -> Event {
        Event {
            user_id: None,
            session_id: "s".into(),
            event_type: "click".into(),
            sent_at: t,
            item_id: Some("i".into()),
            event_value: None,
            event_id: id.map(Into::into),
            impression: vec![],
            properties: None,
        }
    }

    #[test]
    fn identity_is_the_id_or_the_content() {
        let a = EventKey::of(&event(Some("x"), 1.0), "u");
        assert_eq!(a, EventKey::of(&event(Some("x"), 2.0), "v"));
        assert_ne!(a, EventKey::of(&event(Some("y"), 1.0), "u"));
        let c = EventKey::of(&event(None, 1.0), "u");
        assert_eq!(c, EventKey::of(&event(None, 1.0), "u"));
        assert_ne!(c, EventKey::of(&event(None, 1.5), "u"));
        assert_ne!(c, EventKey::of(&event(None, 1.0), "v"));
        let mut props = event(None, 1.0);
        props.properties = Some("{}".into());
        assert_ne!(c, EventKey::of(&props, "u"));
    }

    #[test]
    fn the_window_forgets_the_oldest_and_remove_undoes_an_insert() {
        let window = DedupWindow::new(SHARDS * 4);
        let keys: Vec<EventKey> = (0..1000)
            .map(|i| EventKey::of(&event(Some(&format!("e{i}")), 0.0), ""))
            .collect();
        assert!(window.insert(keys[0]));
        assert!(!window.insert(keys[0]));
        window.remove(keys[0]);
        assert!(window.insert(keys[0]));
        for k in &keys[1..] {
            window.insert(*k);
        }
        // The newest are remembered, the oldest forgotten.
        assert!(!window.insert(keys[999]));
        assert!(window.insert(keys[0]));
    }
}
