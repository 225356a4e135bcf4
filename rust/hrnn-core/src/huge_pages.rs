//! A global allocator that asks Linux for transparent huge pages on large allocations.
//!
//! hrnn's columns are large and short-lived: loading 10M rows, filtering or sessionizing them
//! allocates a few hundred MB of fresh arrays. The system allocator hands each of them out as a new
//! `mmap`, so every 4 KiB page costs a page fault on first touch — measured here at about a third of
//! the percentile filter's time. [`HugePageAlloc`] forwards everything to the system allocator and,
//! for allocations of at least [`THRESHOLD`] bytes, advises the kernel (`madvise(MADV_HUGEPAGE)`)
//! to back their 2 MiB-aligned interior with huge pages: one fault per 2 MiB instead of 512. Where
//! transparent huge pages are off (`never`) or the platform is not Linux the advice is a no-op, and
//! nothing else changes: same memory, same alignment, same `free`.
//!
//! The binding crate installs it with `#[global_allocator]`; the core crate only provides it.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations of at least this many bytes are advised (smaller ones cannot hold an aligned huge
/// page with room to spare, and are served from the allocator's arenas anyway).
pub const THRESHOLD: usize = 4 << 20;

/// The size of an x86-64 / aarch64 (4 KiB base page) transparent huge page.
const HUGE_PAGE: usize = 2 << 20;

/// The system allocator plus huge-page advice for large blocks (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
pub struct HugePageAlloc;

/// Advises huge pages for the 2 MiB-aligned part of `[ptr, ptr + len)`; returns whether the
/// kernel accepted the advice (false where there is nothing to advise or no such facility).
pub fn advise(ptr: *mut u8, len: usize) -> bool {
    let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
    let end = (ptr as usize + len) / HUGE_PAGE * HUGE_PAGE;
    if end <= start {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: the range lies inside a live allocation of this process; MADV_HUGEPAGE only
        // changes how not-yet-touched pages are backed, never their contents.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

// SAFETY: every call is forwarded to `System` with the same arguments; `advise` never changes the
// memory's contents or extent.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() && layout.size() >= THRESHOLD {
            advise(ptr, layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above. A large zeroed block is a fresh mapping nobody has touched yet, so
        // the advice takes effect on every one of its pages.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() && layout.size() >= THRESHOLD {
            advise(ptr, layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() && new_size >= THRESHOLD {
            advise(new, new_size);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_keep_their_contents_through_growth_and_shrinking() {
        let a = HugePageAlloc;
        let small = Layout::from_size_align(1000, 8).unwrap();
        let big = 3 * THRESHOLD + 123;
        // SAFETY: layouts are non-zero; each pointer is used within its size and freed once.
        unsafe {
            let p = a.alloc(small);
            assert!(!p.is_null());
            for i in 0..1000 {
                *p.add(i) = (i % 251) as u8;
            }
            let p = a.realloc(p, small, big);
            assert!(!p.is_null());
            assert!((0..1000).all(|i| *p.add(i) == (i % 251) as u8));
            std::ptr::write_bytes(p.add(1000), 7, big - 1000);
            let grown = Layout::from_size_align(big, 8).unwrap();
            let p = a.realloc(p, grown, 2000);
            assert!((0..1000).all(|i| *p.add(i) == (i % 251) as u8));
            assert!((1000..2000).all(|i| *p.add(i) == 7));
            a.dealloc(p, Layout::from_size_align(2000, 8).unwrap());

            let z = a.alloc_zeroed(grown);
            assert!(!z.is_null());
            assert!(std::slice::from_raw_parts(z, big).iter().all(|&b| b == 0));
            a.dealloc(z, grown);
        }
    }

    #[test]
    fn advice_needs_a_whole_aligned_huge_page() {
        let mut v = vec![0u8; 3 * HUGE_PAGE];
        let p = v.as_mut_ptr();
        // Less than one aligned 2 MiB page inside: nothing to advise.
        assert!(!advise(p, HUGE_PAGE / 2));
        // Three pages always hold at least one aligned huge page. Accepted wherever the kernel
        // has transparent huge pages (the advice is valid even when THP is set to `never`).
        if cfg!(target_os = "linux")
            && std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists()
        {
            assert!(advise(p, v.len()));
        }
        v[0] = 1;
        assert_eq!(v.iter().map(|&b| u32::from(b)).sum::<u32>(), 1);
    }
}
