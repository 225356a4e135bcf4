//! The thread pool hrnn's parallel work runs on after `hrnn.set_num_threads(n)` (the binding
//! holds it; without one, rayon's global pool is used), and [`sequential`]: running a call's
//! parallel steps one after the other on the calling thread, in the same order and with the same
//! results, when a pool of one thread would only add a hand-off.

use std::cell::Cell;

use crate::error::{Error, Result};

thread_local! {
    static SEQUENTIAL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work` on this thread with the steps that would fan out over a pool run in turn instead
/// (only where a step has a sequential form with identical results: the single query's chunked
/// scan). For a configured pool of one thread, where handing the call over costs a wake-up.
pub fn sequential<T>(work: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SEQUENTIAL.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SEQUENTIAL.with(|s| s.replace(true)));
    work()
}

/// Whether this thread is inside [`sequential`].
pub fn is_sequential() -> bool {
    SEQUENTIAL.with(Cell::get)
}

/// A pool of `n` threads named `hrnn-0`, `hrnn-1`, …; `n` must be at least 1 (rayon would read 0
/// as "one per core").
pub fn thread_pool(n: usize) -> Result<rayon::ThreadPool> {
    if n == 0 {
        return Err(Error::invalid_argument(
            "set_num_threads",
            "expected at least 1 thread, found 0",
        ));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("hrnn-{i}"))
        .build()
        .map_err(|e| Error::invalid_argument("set_num_threads", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_one_thread() {
        let Err(e) = thread_pool(0) else {
            panic!("0 threads is an error")
        };
        assert_eq!(
            e.to_string(),
            "set_num_threads: expected at least 1 thread, found 0"
        );
        assert_eq!(thread_pool(2).unwrap().current_num_threads(), 2);
    }
}
