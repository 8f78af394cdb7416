//! `UniformCore`: the shuffled dataloader.

use pyo3::prelude::*;
use pyo3::pyclass_init::PyClassInitializer;
use pyo3::types::PyDict;

use super::record::{from_dict, values_to_dict};
use super::selector::PySelector;
use crate::record::to_values;
use crate::selector::Selector;
use crate::uniform::{SeedConfig, Uniform};

#[pyclass(module = "dps._core", name = "UniformCore", extends = PySelector)]
pub struct PyUniform;

#[pymethods]
impl PyUniform {
    #[new]
    fn new(num_prompts: usize, config: &Bound<'_, PyDict>) -> PyResult<PyClassInitializer<Self>> {
        let cfg: SeedConfig = from_dict(config, num_prompts, "config")?;
        Ok(PySelector::init(
            PyUniform,
            Uniform::new(num_prompts, cfg.seed)?,
        ))
    }

    /// The state; without the epoch order (N ids) when `with_order` is false.
    #[pyo3(signature = (with_order=true))]
    fn state<'py>(slf: PyRef<'py, Self>, with_order: bool) -> PyResult<Bound<'py, PyDict>> {
        let u = slf.as_super().get::<Uniform>();
        let n = u.num_prompts();
        let values = if with_order {
            to_values(u.state(), n)
        } else {
            to_values(u.position(), n).without("order")
        };
        values_to_dict(slf.py(), values)
    }
}
