//! `HistoryCore`: uniform epochs that leave out prompts last seen solved.

use pyo3::prelude::*;
use pyo3::pyclass_init::PyClassInitializer;
use pyo3::types::PyDict;

use super::record::from_dict;
use super::selector::PySelector;
use crate::history::HistoryResampling;
use crate::uniform::SeedConfig;

#[pyclass(module = "dps._core", name = "HistoryCore", extends = PySelector)]
pub struct PyHistory;

fn history<'a>(slf: &'a PyRef<'_, PyHistory>) -> &'a HistoryResampling {
    slf.as_super().get::<HistoryResampling>()
}

#[pymethods]
impl PyHistory {
    #[new]
    fn new(num_prompts: usize, config: &Bound<'_, PyDict>) -> PyResult<PyClassInitializer<Self>> {
        let cfg: SeedConfig = from_dict(config, num_prompts, "config")?;
        let h = HistoryResampling::new(num_prompts, cfg.seed)?;
        Ok(PySelector::init(PyHistory, h))
    }

    #[getter]
    fn excluded_count(slf: PyRef<'_, Self>) -> usize {
        history(&slf).excluded_count()
    }

    #[getter]
    fn resets(slf: PyRef<'_, Self>) -> u64 {
        history(&slf).resets()
    }
}
