//! A hash table from id bytes to `u32`, tuned for interning millions of short ids.
//!
//! Ids are stored inline, so a lookup touches one cache line and never follows a pointer: ids of
//! up to 8 bytes (numeric ids, short codes) in 16-byte slots, ids of 9–16 bytes in 32-byte slots;
//! longer ids go to an ordinary map. Slots never straddle two cache lines (with 24-byte slots a
//! third of the lookups touched two lines), and the short table is half the size of a single
//! 32-byte one — what lookups wait on while loading millions of rows is the memory these tables
//! live in. Open addressing with linear probing over power-of-two slot arrays, grown at 50% load.
//! The empty id is never stored (ids are validated non-empty before insertion), so a slot with
//! `len == 0` is free.

use rustc_hash::FxHashMap;

/// The packed bytes of a short id (`u64`: 1–8 bytes; `[u64; 2]`: 9–16 bytes); together with the
/// length the packing is injective.
trait Key: Copy + Default + PartialEq {
    /// A zero-sized type with the alignment of the key's slot: its size, so that no slot straddles
    /// two cache lines.
    type Align: Copy + Default;
    /// The key of `id` (of a length this key holds).
    fn pack(id: &[u8]) -> Self;
    /// A well-mixed hash of the key and the id's length (the table uses its top bits).
    fn hash(&self, len: u32) -> u64;
}

/// `id` (1–8 bytes) in one word, without a variable-length copy: overlapping loads of its first
/// and last bytes, which together with the length determine every byte.
#[inline]
fn word(id: &[u8]) -> u64 {
    let n = id.len();
    let half = |at: usize| {
        u64::from(u32::from_le_bytes(
            id[at..at + 4].try_into().expect("4 bytes"),
        ))
    };
    match n {
        8.. => u64::from_le_bytes(id[..8].try_into().expect("8 bytes")),
        4..=7 => half(0) | (half(n - 4) << 32),
        1..=3 => u64::from(id[0]) | (u64::from(id[n / 2]) << 8) | (u64::from(id[n - 1]) << 16),
        0 => 0,
    }
}

#[inline]
fn mix(x: u64) -> u64 {
    let m = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    m ^ (m >> 29)
}

/// Alignment markers (zero-sized) for [`Slot`].
#[derive(Clone, Copy, Default)]
#[repr(align(16))]
struct Align16;
#[derive(Clone, Copy, Default)]
#[repr(align(32))]
struct Align32;

/// Ids of 1–8 bytes.
impl Key for u64 {
    type Align = Align16;
    #[inline]
    fn pack(id: &[u8]) -> Self {
        word(id)
    }
    #[inline]
    fn hash(&self, len: u32) -> u64 {
        mix(self ^ u64::from(len).rotate_right(8))
    }
}

/// Ids of 9–16 bytes: the first and the last 8 bytes (overlapping).
impl Key for [u64; 2] {
    type Align = Align32;
    #[inline]
    fn pack(id: &[u8]) -> Self {
        [word(&id[..8]), word(&id[id.len() - 8..])]
    }
    #[inline]
    fn hash(&self, len: u32) -> u64 {
        mix(self[0] ^ self[1].rotate_left(31) ^ u64::from(len))
    }
}

/// One slot: 16 bytes (aligned to 16) for a `u64` key, 32 (24 padded, aligned to 32) for a
/// `[u64; 2]` one, so that no slot straddles two cache lines.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Slot<K: Key> {
    key: K,
    len: u32,
    value: u32,
    align: [K::Align; 0],
}

impl<K: Key> Slot<K> {
    #[inline]
    fn pack(id: &[u8], value: u32) -> Self {
        Self {
            key: K::pack(id),
            len: id.len() as u32,
            value,
            align: [],
        }
    }
    #[inline]
    fn same_id(&self, other: &Self) -> bool {
        self.len == other.len && self.key == other.key
    }
    #[inline]
    fn hash(&self) -> u64 {
        self.key.hash(self.len)
    }
}

/// Open addressing with linear probing over `2^k` slots of one width.
#[derive(Clone)]
struct Slots<K: Key> {
    slots: Vec<Slot<K>>,
    shift: u32,
    len: usize,
}

impl<K: Key> Slots<K> {
    fn with_capacity(capacity: usize) -> Self {
        let n = (capacity * 2).next_power_of_two().max(16);
        Self {
            slots: vec![Slot::default(); n],
            shift: 64 - n.trailing_zeros(),
            len: 0,
        }
    }

    #[inline]
    fn home(&self, key: &Slot<K>) -> usize {
        (key.hash() >> self.shift) as usize
    }

    /// Where `key` is, or the free slot where it would go.
    #[inline]
    fn probe(&self, key: &Slot<K>) -> (usize, bool) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let slot = &self.slots[i];
            if slot.len == 0 {
                return (i, false);
            }
            if slot.same_id(key) {
                return (i, true);
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    fn get(&self, key: &Slot<K>) -> Option<u32> {
        let (i, found) = self.probe(key);
        found.then(|| self.slots[i].value)
    }

    #[inline]
    fn prefetch(&self, key: &Slot<K>) {
        let slot = &self.slots[self.home(key)];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            // SAFETY: a prefetch never faults, and SSE is part of the x86_64 baseline.
            #[allow(unused_unsafe)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(slot).cast::<i8>());
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }

    fn insert_new(&mut self, key: Slot<K>) {
        if (self.len + 1) * 2 > self.slots.len() {
            let doubled = vec![Slot::default(); self.slots.len() * 2];
            let old = std::mem::replace(&mut self.slots, doubled);
            self.shift -= 1;
            for slot in old.into_iter().filter(|s| s.len != 0) {
                let (i, _) = self.probe(&slot);
                self.slots[i] = slot;
            }
        }
        let (i, _) = self.probe(&key);
        self.slots[i] = key;
        self.len += 1;
    }
}

/// Map from id bytes to dense indices.
#[derive(Clone)]
pub struct IdTable {
    short: Slots<u64>,
    inline: Slots<[u64; 2]>,
    long: FxHashMap<Box<[u8]>, u32>,
}

impl std::fmt::Debug for IdTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdTable").field("len", &self.len()).finish()
    }
}

impl Default for IdTable {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl IdTable {
    /// A table sized for about `capacity` ids of up to 8 bytes without growing.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            short: Slots::with_capacity(capacity),
            inline: Slots::with_capacity(0),
            long: FxHashMap::default(),
        }
    }

    /// Number of ids stored.
    pub fn len(&self) -> usize {
        self.short.len + self.inline.len + self.long.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value stored for `id`, if any.
    #[inline]
    pub fn get(&self, id: &[u8]) -> Option<u32> {
        match id.len() {
            0 => None,
            1..=8 => self.short.get(&Slot::pack(id, 0)),
            9..=16 => self.inline.get(&Slot::pack(id, 0)),
            _ => self.long.get(id).copied(),
        }
    }

    /// Hints the CPU to fetch the slot where `id` would be found, ahead of a [`get`](Self::get):
    /// issued for a batch of ids first, it overlaps their cache misses.
    #[inline]
    pub fn prefetch(&self, id: &[u8]) {
        match id.len() {
            1..=8 => self.short.prefetch(&Slot::pack(id, 0)),
            9..=16 => self.inline.prefetch(&Slot::pack(id, 0)),
            _ => {}
        }
    }

    /// Stores `value` for `id`, which must be non-empty and not yet stored.
    pub fn insert_new(&mut self, id: &[u8], value: u32) {
        debug_assert!(!id.is_empty() && self.get(id).is_none());
        match id.len() {
            1..=8 => self.short.insert_new(Slot::pack(id, value)),
            9..=16 => self.inline.insert_new(Slot::pack(id, value)),
            _ => {
                self.long.insert(id.into(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        #[test]
        fn behaves_like_a_hash_map(ids in prop::collection::vec(prop::collection::vec(1u8..=255, 1..40), 0..400)) {
            let mut table = IdTable::default();
            let mut reference = HashMap::new();
            for id in &ids {
                match reference.get(id) {
                    Some(&v) => prop_assert_eq!(table.get(id), Some(v)),
                    None => {
                        prop_assert_eq!(table.get(id), None);
                        let v = reference.len() as u32;
                        table.insert_new(id, v);
                        reference.insert(id.clone(), v);
                    }
                }
            }
            prop_assert_eq!(table.len(), reference.len());
            for (id, &v) in &reference {
                prop_assert_eq!(table.get(id), Some(v));
            }
        }
    }

    #[test]
    fn slots_fit_cache_lines() {
        assert_eq!(std::mem::size_of::<Slot<u64>>(), 16);
        assert_eq!(std::mem::size_of::<Slot<[u64; 2]>>(), 32);
        assert_eq!(std::mem::align_of::<Slot<u64>>(), 16);
        assert_eq!(std::mem::align_of::<Slot<[u64; 2]>>(), 32);
    }

    #[test]
    fn ids_differing_only_by_trailing_zero_bytes_are_distinct() {
        let mut table = IdTable::default();
        table.insert_new(b"a", 0);
        assert_eq!(table.get(b"a\0"), None);
        table.insert_new(b"a\0", 1);
        assert_eq!((table.get(b"a"), table.get(b"a\0")), (Some(0), Some(1)));
        assert_eq!(table.get(b""), None);
    }
}
