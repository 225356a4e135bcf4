//! `hrnn._hrnn`: the thin PyO3 layer over hrnn-core. Type conversion, GIL release and error
//! mapping only; every algorithm lives in hrnn-core.

mod baselines;
mod errors;
mod events;
mod interactions;
mod recommender;
mod threads;
mod training;

use pyo3::prelude::*;

/// Large column buffers get transparent huge pages (see `hrnn_core::huge_pages`).
#[global_allocator]
static ALLOCATOR: hrnn_core::huge_pages::HugePageAlloc = hrnn_core::huge_pages::HugePageAlloc;

/// The private extension module of hrnn.
#[pymodule]
mod _hrnn {
    use pyo3::prelude::*;

    #[pymodule_export]
    use super::baselines::{item_popularity, SessionKnnIndex};
    #[pymodule_export]
    use super::events::{read_event_log, repair_event_log};
    #[pymodule_export]
    use super::interactions::Interactions;
    #[pymodule_export]
    use super::recommender::{validate_model_dir, ItemIds, Recommender};
    #[pymodule_export]
    use super::threads::{get_num_threads, set_num_threads};
    #[pymodule_export]
    use super::training::{recurrence_backward, recurrence_forward, softmax_cross_entropy};

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
