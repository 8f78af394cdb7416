//! `Selector`: the base class of every policy core. It holds the policy behind the core's
//! `AnySelector` and gives every class select, observe, its options and its state.

use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use pyo3::pyclass::PyClass;
use pyo3::pyclass_init::PyClassInitializer;
use pyo3::types::{PyDict, PyList};

use super::convert::{ids_array, observations, Ids};
use super::record::{dict_to_values, fields_list, values_to_dict};
use crate::selector::AnySelector;

/// A prompt-selection policy of the core (rust/selector.rs).
#[pyclass(module = "dps._core", name = "Selector", subclass)]
pub struct PySelector {
    inner: Box<dyn AnySelector>,
}

impl PySelector {
    /// A class `T` of this base holding `selector`.
    pub fn init<T: PyClass<BaseType = PySelector>>(
        class: T,
        selector: impl AnySelector + 'static,
    ) -> PyClassInitializer<T> {
        let base = PySelector {
            inner: Box::new(selector),
        };
        PyClassInitializer::from(base).add_subclass(class)
    }

    /// The policy held, as its own type (each class holds one kind).
    pub fn get<T: 'static>(&self) -> &T {
        self.inner
            .as_any()
            .downcast_ref()
            .expect("each class holds the policy its constructor made")
    }

    pub fn inner(&self) -> &dyn AnySelector {
        &*self.inner
    }
}

#[pymethods]
impl PySelector {
    #[getter]
    fn num_prompts(&self) -> usize {
        self.inner.num_prompts()
    }

    /// Steps observed so far.
    #[getter]
    fn step(&self) -> u64 {
        self.inner.step()
    }

    fn select<'py>(&mut self, py: Python<'py>, batch_size: usize) -> PyResult<Ids<'py>> {
        let inner = &mut self.inner;
        let ids = py.detach(|| inner.select(batch_size))?;
        Ok(ids_array(py, ids))
    }

    fn observe(
        &mut self,
        py: Python<'_>,
        prompt_ids: PyReadonlyArray1<'_, i64>,
        n_correct: PyReadonlyArray1<'_, i64>,
        n_rollouts: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<()> {
        let groups = observations(
            self.inner.num_prompts(),
            &prompt_ids,
            &n_correct,
            &n_rollouts,
        )?;
        let inner = &mut self.inner;
        Ok(py.detach(|| inner.observe(&groups))?)
    }

    /// The options the policy was built with.
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        values_to_dict(py, self.inner.config_values())
    }

    /// Everything needed to continue exactly.
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let inner = &self.inner;
        values_to_dict(py, py.detach(|| inner.state_values()))
    }

    /// The state's fields: (name, type, shape), shape None for a scalar and None for an axis of
    /// any length.
    fn state_fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        fields_list(py, self.inner.state_fields(), self.inner.num_prompts())
    }

    /// Continue from `state()`'s dict, each value of its field's type, dtype and shape; a state
    /// that does not fit changes nothing.
    fn load_state(&mut self, py: Python<'_>, state: &Bound<'_, PyDict>) -> PyResult<()> {
        let values = dict_to_values(state)?;
        let inner = &mut self.inner;
        Ok(py.detach(|| inner.load_state(values))?)
    }
}
