//! Per-user recurrent state, changed by real-time events.
//!
//! Training users start from the state stored in the model; their entry here is created by their
//! first real-time event (copy-on-write), so an untouched model costs nothing. The map is split
//! into shards, each behind its own `RwLock`: readers of different users never contend, a writer
//! blocks only its shard, and every lock is held for `O(H²)` at most (one cell step per event), never
//! across a scan of the catalogue.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use rustc_hash::{FxBuildHasher, FxHashMap};

use super::seen::SeenAdded;

/// Number of shards (a power of two, well above any realistic thread count).
const SHARDS: usize = 64;

/// A user's state after real-time events.
#[derive(Clone, Debug, PartialEq)]
pub struct UserState {
    /// The hidden state `h_t`.
    pub hidden: Vec<f32>,
    /// Unix seconds of the latest event (`None` before the first one).
    pub last_timestamp: Option<f64>,
    /// Most recent item indices, oldest first, at most `history_limit`.
    pub history: VecDeque<u32>,
    /// `(item, event type)` entries the events added beyond the model's stored ones.
    pub seen: SeenAdded,
}

/// The sharded map from user key to [`UserState`].
pub struct StateStore {
    shards: Box<[RwLock<FxHashMap<String, UserState>>]>,
}

impl Default for StateStore {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| RwLock::new(FxHashMap::default()))
                .collect(),
        }
    }
}

/// The shard's map, locked for writing.
pub type ShardWriter<'a> = RwLockWriteGuard<'a, FxHashMap<String, UserState>>;

impl StateStore {
    fn shard(&self, key: &str) -> &RwLock<FxHashMap<String, UserState>> {
        // The high bits of Fx are the well-mixed ones.
        &self.shards[(FxBuildHasher.hash_one(key) >> 58) as usize % SHARDS]
    }

    /// Runs `f` on `key`'s state (if any) under the shard's read lock.
    pub fn read<R>(&self, key: &str, f: impl FnOnce(Option<&UserState>) -> R) -> R {
        // A panic while a lock was held cannot leave a state half-written (a step writes a finished
        // vector), so poisoning is ignored rather than turned into a second failure.
        let guard: RwLockReadGuard<'_, _> =
            self.shard(key).read().unwrap_or_else(|e| e.into_inner());
        f(guard.get(key))
    }

    /// Locks `key`'s shard for writing.
    pub fn write(&self, key: &str) -> ShardWriter<'_> {
        self.shard(key).write().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of users with a state changed by events.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// True when no event changed any state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_land_in_their_shard_and_are_counted() {
        let store = StateStore::default();
        for i in 0..100 {
            let key = format!("user{i}");
            store.write(&key).insert(
                key.clone(),
                UserState {
                    hidden: vec![i as f32],
                    last_timestamp: None,
                    history: VecDeque::new(),
                    seen: SeenAdded::default(),
                },
            );
        }
        assert_eq!(store.len(), 100);
        assert_eq!(store.read("user42", |s| s.map(|s| s.hidden[0])), Some(42.0));
        assert!(!store.read("nobody", |s| s.is_some()));
    }
}
