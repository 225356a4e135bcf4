//! The thread pool hrnn's parallel work runs on after `hrnn.set_num_threads(n)` (the binding
//! holds it; without one, rayon's global pool is used).

use crate::error::{Error, Result};

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
