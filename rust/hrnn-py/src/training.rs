//! The CPU training kernels (`hrnn_core::training`) for torch's autograd functions in
//! `hrnn/training/kernels.py`. Arrays must be C-contiguous and must not be mutated during a call;
//! results are new arrays (zero-copy into numpy).

use hrnn_core::training::recurrence::{self, SAVED_PLANES};
use hrnn_core::training::{self as kernels, Exclusions, OutputLayer, RecurrentWeights, Targets};
use numpy::ndarray::{Array, ArrayD, IxDyn};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayDyn, PyReadonlyArray1, PyReadonlyArray2,
    PyReadonlyArray3, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use crate::errors::DetachExt;

fn shaped<'py>(py: Python<'py>, shape: &[usize], data: Vec<f32>) -> Bound<'py, PyArrayDyn<f32>> {
    let array: ArrayD<f32> = Array::from_shape_vec(IxDyn(shape), data)
        .expect("kernels return arrays of the stated shape");
    array.into_pyarray(py)
}

type LossAndGradients<'py> = (
    f64,
    Bound<'py, PyArrayDyn<f32>>,
    Bound<'py, PyArrayDyn<f32>>,
    Bound<'py, PyArray1<f32>>,
);

/// Fused full-softmax cross-entropy: `(loss, grad_input [M, H], grad_table [N, H], grad_bias [N])`
/// of rows `input` against `[M, W]` targets, with optional per-row exclusion ranges
/// `exclusion_items[exclusion_starts[m]:exclusion_stops[m]]`.
#[pyfunction]
#[pyo3(signature = (input, table, bias, target_items, target_weights, exclusion_items=None, exclusion_starts=None, exclusion_stops=None))]
#[allow(clippy::too_many_arguments)]
pub fn softmax_cross_entropy<'py>(
    py: Python<'py>,
    input: PyReadonlyArray2<'py, f32>,
    table: PyReadonlyArray2<'py, f32>,
    bias: PyReadonlyArray1<'py, f32>,
    target_items: PyReadonlyArray2<'py, i64>,
    target_weights: PyReadonlyArray2<'py, f32>,
    exclusion_items: Option<PyReadonlyArray1<'py, i64>>,
    exclusion_starts: Option<PyReadonlyArray1<'py, i64>>,
    exclusion_stops: Option<PyReadonlyArray1<'py, i64>>,
) -> PyResult<LossAndGradients<'py>> {
    let hidden = table.shape()[1];
    let (rows, num_items) = (input.shape()[0], table.shape()[0]);
    let width = target_items.shape()[1];
    let layer = OutputLayer {
        table: table.as_slice()?,
        bias: bias.as_slice()?,
        hidden,
    };
    let input = input.as_slice()?;
    let targets = Targets {
        items: target_items.as_slice()?,
        weights: target_weights.as_slice()?,
        width,
    };
    let exclusions = match (&exclusion_items, &exclusion_starts, &exclusion_stops) {
        (Some(items), Some(starts), Some(stops)) => Some(Exclusions {
            items: items.as_slice()?,
            starts: starts.as_slice()?,
            stops: stops.as_slice()?,
        }),
        (None, None, None) => None,
        _ => return Err(pyo3::exceptions::PyValueError::new_err(
            "exclusions: expected exclusion_items, exclusion_starts and exclusion_stops together",
        )),
    };
    let out = py.detached(|| {
        kernels::softmax_cross_entropy(&layer, input, &targets, exclusions.as_ref())
    })?;
    Ok((
        out.loss,
        shaped(py, &[rows, hidden], out.grad_input),
        shaped(py, &[num_items, hidden], out.grad_table),
        out.grad_bias.into_pyarray(py),
    ))
}

/// The cell's weights and the window's per-step inputs, as slices of the arrays (shapes from
/// `discount`, `[T, B, H]`; the core checks every length).
fn cell_window<'a>(
    discount: &'a PyReadonlyArray3<'_, f32>,
    keep: &'a PyReadonlyArray2<'_, bool>,
    initial: &'a PyReadonlyArray2<'_, f32>,
    weight_hh: &'a PyReadonlyArray2<'_, f32>,
    bias_hh: &'a PyReadonlyArray1<'_, f32>,
) -> PyResult<(RecurrentWeights<'a>, kernels::Window<'a>)> {
    let shape = discount.shape();
    let weights = RecurrentWeights {
        weight: weight_hh.as_slice()?,
        bias: bias_hh.as_slice()?,
        hidden: shape[2],
    };
    let window = kernels::Window {
        discount: discount.as_slice()?,
        keep: keep.as_slice()?,
        initial: initial.as_slice()?,
        steps: shape[0],
        slots: shape[1],
    };
    Ok((weights, window))
}

type StatesAndSaved<'py> = (
    Bound<'py, PyArrayDyn<f32>>,
    Option<Bound<'py, PyArrayDyn<f32>>>,
);

/// Forward pass of the cell over a `[T, B]` window: `(states [T, B, H], saved)` where `saved` is
/// `[5, T, B, H]` with `save=True` (what `recurrence_backward` needs), else `None`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn recurrence_forward<'py>(
    py: Python<'py>,
    input_gates: PyReadonlyArray3<'py, f32>,
    discount: PyReadonlyArray3<'py, f32>,
    keep: PyReadonlyArray2<'py, bool>,
    initial: PyReadonlyArray2<'py, f32>,
    weight_hh: PyReadonlyArray2<'py, f32>,
    bias_hh: PyReadonlyArray1<'py, f32>,
    save: bool,
) -> PyResult<StatesAndSaved<'py>> {
    let (weights, window) = cell_window(&discount, &keep, &initial, &weight_hh, &bias_hh)?;
    let (steps, slots, hidden) = (window.steps, window.slots, weights.hidden);
    let input_gates = input_gates.as_slice()?;
    let out = py.detached(|| recurrence::forward(&weights, &window, input_gates, save))?;
    let saved = save.then(|| shaped(py, &[SAVED_PLANES, steps, slots, hidden], out.saved));
    Ok((shaped(py, &[steps, slots, hidden], out.states), saved))
}

type RecurrenceGradients<'py> = (
    Bound<'py, PyArrayDyn<f32>>,
    Bound<'py, PyArrayDyn<f32>>,
    Bound<'py, PyArray2<f32>>,
    Bound<'py, PyArray1<f32>>,
);

/// Backward pass of `recurrence_forward`: `(grad_input_gates, grad_discount, grad_weight_hh,
/// grad_bias_hh)` from the gradient with respect to every step's state.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn recurrence_backward<'py>(
    py: Python<'py>,
    discount: PyReadonlyArray3<'py, f32>,
    keep: PyReadonlyArray2<'py, bool>,
    initial: PyReadonlyArray2<'py, f32>,
    weight_hh: PyReadonlyArray2<'py, f32>,
    bias_hh: PyReadonlyArray1<'py, f32>,
    states: PyReadonlyArray3<'py, f32>,
    saved: numpy::PyReadonlyArrayDyn<'py, f32>,
    grad_states: PyReadonlyArray3<'py, f32>,
) -> PyResult<RecurrenceGradients<'py>> {
    let (weights, window) = cell_window(&discount, &keep, &initial, &weight_hh, &bias_hh)?;
    let (steps, slots, hidden) = (window.steps, window.slots, weights.hidden);
    let (states, saved, grad_states) = (
        states.as_slice()?,
        saved.as_slice()?,
        grad_states.as_slice()?,
    );
    let out =
        py.detached(|| recurrence::backward(&weights, &window, states, saved, grad_states))?;
    let grad_weight = Array::from_shape_vec((3 * hidden, hidden), out.grad_weight)
        .expect("backward returns [3H, H]");
    Ok((
        shaped(py, &[steps, slots, 3 * hidden], out.grad_input_gates),
        shaped(py, &[steps, slots, hidden], out.grad_discount),
        grad_weight.into_pyarray(py),
        out.grad_bias.into_pyarray(py),
    ))
}
