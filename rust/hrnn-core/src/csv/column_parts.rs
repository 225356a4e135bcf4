//! Parallel writers into one output column: each block of a CSV batch gets a disjoint part of the
//! column's spare capacity, writes its rows there directly (no per-block buffer, no copy at the
//! merge), and the parts are then closed up and committed in file order.

use std::mem::MaybeUninit;

/// A writer over a part of a column's spare capacity: the first `len` slots are written.
pub(crate) struct ColumnPart<'o, T> {
    slots: &'o mut [MaybeUninit<T>],
    len: usize,
}

impl<T> Default for ColumnPart<'_, T> {
    fn default() -> Self {
        Self {
            slots: &mut [],
            len: 0,
        }
    }
}

impl<'o, T: Copy> ColumnPart<'o, T> {
    pub fn new(slots: &'o mut [MaybeUninit<T>]) -> Self {
        Self { slots, len: 0 }
    }

    /// Appends `value`; panics past the part's capacity (callers size parts by line count).
    #[inline]
    pub fn push(&mut self, value: T) {
        self.slots[self.len].write(value);
        self.len += 1;
    }

    /// Values written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The values written so far.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: slots 0..len were each written by `push`; `MaybeUninit<T>` has `T`'s layout.
        unsafe { std::slice::from_raw_parts_mut(self.slots.as_mut_ptr().cast::<T>(), self.len) }
    }

    /// The values written so far.
    #[cfg(test)]
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: as in `as_mut_slice`.
        unsafe { std::slice::from_raw_parts(self.slots.as_ptr().cast::<T>(), self.len) }
    }
}

/// Splits the next `sizes.iter().sum()` slots of `column`'s spare capacity (reserved here) into
/// consecutive parts of `sizes[b]` slots.
pub(crate) fn split_parts<'o, T: Copy>(
    column: &'o mut Vec<T>,
    sizes: &[usize],
) -> Vec<ColumnPart<'o, T>> {
    let total = sizes.iter().sum();
    column.reserve(total);
    let mut rest = &mut column.spare_capacity_mut()[..total];
    let mut parts = Vec::with_capacity(sizes.len());
    for &n in sizes {
        let (part, tail) = rest.split_at_mut(n);
        parts.push(ColumnPart::new(part));
        rest = tail;
    }
    parts
}

/// Commits parts made by [`split_parts`] with the same `sizes`, in which `written[b]` values were
/// written: moves each part's values down to close the gaps left by shorter parts, then extends
/// the column's length over them.
///
/// # Safety
/// The parts of the last `split_parts(column, sizes)` each had `written[b]` values written (their
/// `len()`), and `column` was not changed since.
pub(crate) unsafe fn commit_parts<T: Copy>(
    column: &mut Vec<T>,
    sizes: &[usize],
    written: &[usize],
) {
    assert_eq!(sizes.len(), written.len());
    let base = column.len();
    let ptr = column.as_mut_ptr();
    let (mut from, mut to) = (base, base);
    for (&size, &n) in sizes.iter().zip(written) {
        assert!(n <= size);
        if from != to {
            // SAFETY: `from..from + n` was written (the caller's contract) and `to ≤ from`; both
            // ranges lie inside the capacity reserved by `split_parts`. `copy` allows overlap.
            unsafe { std::ptr::copy(ptr.add(from), ptr.add(to), n) };
        }
        from += size;
        to += n;
    }
    // SAFETY: base..to now holds written values only, and to ≤ capacity.
    unsafe { column.set_len(to) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_written_in_parallel_and_committed_without_gaps() {
        let mut column: Vec<u32> = vec![7];
        let sizes = [3, 0, 4, 2];
        let written = {
            let mut parts = split_parts(&mut column, &sizes);
            std::thread::scope(|s| {
                for (b, part) in parts.iter_mut().enumerate() {
                    s.spawn(move || {
                        // Part b writes min(b + 1, size) values: gaps after parts 0, 2 and 3.
                        for k in 0..(b + 1).min(sizes[b]) {
                            part.push((10 * b + k) as u32);
                        }
                    });
                }
            });
            assert_eq!(parts[2].as_slice(), &[20, 21, 22]);
            parts[2].as_mut_slice()[0] = 99;
            parts.iter().map(ColumnPart::len).collect::<Vec<_>>()
        };
        // SAFETY: each part wrote `written[b]` values; the column was not touched since.
        unsafe { commit_parts(&mut column, &sizes, &written) };
        assert_eq!(column, vec![7, 0, 99, 21, 22, 30, 31]);
    }

    #[test]
    #[should_panic(expected = "index out of bounds")]
    fn a_part_cannot_be_overfilled() {
        let mut column: Vec<u8> = Vec::new();
        let mut parts = split_parts(&mut column, &[1]);
        parts[0].push(1);
        parts[0].push(2);
    }
}
