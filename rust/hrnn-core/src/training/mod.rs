//! CPU kernels of training, called by the torch trainer through autograd functions
//! (`python/hrnn/training/kernels.py`): the parts of a training step that torch runs slowly on a
//! CPU, as plain functions over slices.
//!
//! - `output_layer`: the full-softmax cross-entropy over the catalogue, fused with its gradients;
//! - `recurrence`: back-propagation through time of the discounted GRU cell;
//! - `softmax_rows`: the vectorized row passes (maximum, exponentials) of the softmax;
//! - `activations`: the vectorized gate activations (σ, tanh) of the cell;
//! - `gemm`: bounds-checked matrix views and the matrix product the two kernels use.
//!
//! Both kernels split their work over rayon's threads (the caller's pool) and give the same
//! results, up to floating-point summation order, as torch's autograd of docs/model.md.

mod activations;
pub mod gemm;
pub mod output_layer;
pub mod recurrence;
mod softmax_rows;

pub use output_layer::{softmax_cross_entropy, Exclusions, OutputLayer, SoftmaxLoss, Targets};
pub use recurrence::{Backward, Forward, RecurrentWeights, Window};
