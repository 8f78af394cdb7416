//! `Selector`: the base class of every policy core. It holds the policy behind the core's
//! `AnySelector` and gives every class select, observe, its options and its state.

use numpy::PyReadonlyArray1;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pyclass::PyClass;
use pyo3::pyclass_init::PyClassInitializer;
use pyo3::types::{PyDict, PyList};

use super::convert::{graded_observations, ids_array, observations, Ids};
use super::record::{dict_to_values, fields_list, values_to_dict};
use crate::observe::{GradedRule, Observations};
use crate::pending::Arrival;
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

impl PySelector {
    fn take(&mut self, py: Python<'_>, groups: &Observations, arrival: Arrival) -> PyResult<()> {
        let inner = &mut self.inner;
        Ok(py.detach(|| inner.observe_as(groups, arrival))?)
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
        self.take(py, &groups, Arrival::Lockstep)
    }

    /// A step's groups as counts (`n_correct`) or as rewards (`reward_mean`, `reward_std`,
    /// mapped to states by `spread_tol` and `success_at`), arriving as `arrival` says:
    /// "lockstep", "in_flight" or "warm_start".
    #[pyo3(signature = (prompt_ids, n_rollouts, *, n_correct=None, reward_mean=None, reward_std=None, spread_tol, success_at, arrival))]
    #[allow(clippy::too_many_arguments)]
    fn observe_groups(
        &mut self,
        py: Python<'_>,
        prompt_ids: PyReadonlyArray1<'_, i64>,
        n_rollouts: PyReadonlyArray1<'_, i64>,
        n_correct: Option<PyReadonlyArray1<'_, i64>>,
        reward_mean: Option<PyReadonlyArray1<'_, f64>>,
        reward_std: Option<PyReadonlyArray1<'_, f64>>,
        spread_tol: f64,
        success_at: f64,
        arrival: &str,
    ) -> PyResult<()> {
        let arrival = Arrival::parse(arrival)?;
        let n = self.inner.num_prompts();
        let groups = match (reward_mean, reward_std, n_correct) {
            (Some(mean), Some(std), _) => {
                let rule = GradedRule {
                    spread_tol,
                    success_at,
                };
                graded_observations(n, &prompt_ids, &n_rollouts, &mean, &std, rule)?
            }
            (None, None, Some(correct)) => observations(n, &prompt_ids, &correct, &n_rollouts)?,
            _ => {
                return Err(PyValueError::new_err(
                    "give n_correct, or reward_mean and reward_std together",
                ))
            }
        };
        self.take(py, &groups, arrival)
    }

    /// Hand ids in flight back unobserved; returns them.
    fn hand_back<'py>(
        &mut self,
        py: Python<'py>,
        prompt_ids: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<Ids<'py>> {
        let back = self.inner.hand_back(prompt_ids.as_slice()?)?;
        Ok(ids_array(py, back))
    }

    /// Every id handed out and not yet observed: this step's, then earlier steps' in flight.
    fn in_flight<'py>(&self, py: Python<'py>) -> Ids<'py> {
        ids_array(py, self.inner.in_flight())
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
