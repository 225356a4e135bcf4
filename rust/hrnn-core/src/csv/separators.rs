//! Finding the field and record separators (`,` and `\n`) of an unquoted CSV block.
//!
//! Separators come every few bytes, too densely for a `memchr`-style search per separator and too
//! irregularly for a byte loop's branch predictor. Instead each 64-byte window is turned into one
//! 64-bit mask of separator positions (four SSE2 compares on x86-64, which every x86-64 CPU has;
//! a plain loop elsewhere) and the positions are read off the mask with `trailing_zeros`.

/// Iterator over the positions of `,` and `\n` in a byte slice, in order.
pub struct Separators<'a> {
    bytes: &'a [u8],
    /// Start of the window `mask` describes.
    base: usize,
    /// Separator positions not yet returned, relative to `base`.
    mask: u64,
}

impl<'a> Separators<'a> {
    /// The separators of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            base: 0,
            mask: window_mask(bytes),
        }
    }
}

impl Iterator for Separators<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            self.base += 64;
            if self.base >= self.bytes.len() {
                return None;
            }
            self.mask = window_mask(&self.bytes[self.base..]);
        }
        let at = self.base + self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some(at)
    }
}

/// Bit `i` set where `bytes[i]` (for `i < 64`) is `,` or `\n`.
#[inline]
fn window_mask(bytes: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if bytes.len() >= 64 {
        // SAFETY: 64 bytes are readable; SSE2 is part of the x86-64 baseline.
        return unsafe { window_mask_sse2(bytes.as_ptr()) };
    }
    let mut mask = 0u64;
    for (i, &b) in bytes.iter().take(64).enumerate() {
        mask |= u64::from(b == b',' || b == b'\n') << i;
    }
    mask
}

/// # Safety
/// `ptr` points to at least 64 readable bytes.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "sse2")]
unsafe fn window_mask_sse2(ptr: *const u8) -> u64 {
    use std::arch::x86_64::*;
    let comma = _mm_set1_epi8(b',' as i8);
    let newline = _mm_set1_epi8(b'\n' as i8);
    let mut mask = 0u64;
    for k in 0..4 {
        // SAFETY: bytes 16k..16k + 16 are within the 64 the caller guarantees.
        let v = unsafe { _mm_loadu_si128(ptr.add(16 * k).cast()) };
        let hits = _mm_or_si128(_mm_cmpeq_epi8(v, comma), _mm_cmpeq_epi8(v, newline));
        mask |= u64::from(_mm_movemask_epi8(hits) as u16) << (16 * k);
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn finds_exactly_the_separators(bytes in prop::collection::vec(prop::sample::select(vec![b'a', b',', b'\n', b'1', b'"', 0xFF]), 0..300)) {
            let expected: Vec<usize> = bytes
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b',' || b == b'\n')
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(Separators::new(&bytes).collect::<Vec<_>>(), expected);
        }
    }

    #[test]
    fn windows_without_separators_are_skipped() {
        let mut bytes = vec![b'x'; 200];
        bytes[3] = b',';
        bytes[190] = b'\n';
        assert_eq!(Separators::new(&bytes).collect::<Vec<_>>(), vec![3, 190]);
        assert_eq!(Separators::new(b"").count(), 0);
    }
}
