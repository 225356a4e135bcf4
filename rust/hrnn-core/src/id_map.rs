//! String id ↔ dense index maps. Indices are assigned in order of first appearance.

use crate::id_table::IdTable;

/// Assigns dense `u32` indices to string ids, in order of first appearance.
#[derive(Debug, Clone, Default)]
pub struct IdMap {
    index: IdTable,
    ids: Vec<String>,
}

impl IdMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// A map over `ids` (a repeated id keeps its first index; the empty id is never found).
    pub fn from_ids(ids: Vec<String>) -> Self {
        let mut index = IdTable::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            if index.get(id.as_bytes()).is_none() && !id.is_empty() {
                index.insert_new(id.as_bytes(), i as u32);
            }
        }
        Self { index, ids }
    }

    /// The index of `id`, if known.
    #[inline]
    pub fn get(&self, id: &[u8]) -> Option<u32> {
        self.index.get(id)
    }

    /// Starts fetching the memory a later [`get`](Self::get) of `id` reads.
    #[inline]
    pub fn prefetch(&self, id: &[u8]) {
        self.index.prefetch(id);
    }

    /// The index of `id`, inserting it when new. `validate` turns a new id into its text or rejects
    /// it (`None`); known ids are not validated again (they were checked when inserted).
    #[inline]
    pub fn intern(
        &mut self,
        id: &[u8],
        validate: impl FnOnce(&[u8]) -> Option<String>,
    ) -> Option<u32> {
        if let Some(i) = self.index.get(id) {
            return Some(i);
        }
        let text = validate(id)?;
        let i = self.ids.len() as u32;
        self.index.insert_new(id, i);
        self.ids.push(text);
        Some(i)
    }

    /// Number of distinct ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when no id was interned.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The ids in index order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Gives up the map, returning the ids in index order.
    pub fn into_ids(self) -> Vec<String> {
        self.ids
    }
}
