//! `GresoCore`: pre-rollout skipping of prompts with zero-variance streaks.

use numpy::{PyArray2, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::pyclass_init::PyClassInitializer;
use pyo3::types::PyDict;

use super::convert::predictions;
use super::record::from_dict;
use super::selector::PySelector;
use crate::greso::{Greso, GresoConfig};
use crate::selector::{Predictor, Selector};

#[pyclass(module = "dps._core", name = "GresoCore", extends = PySelector)]
pub struct PyGreso;

fn greso<'a>(slf: &'a PyRef<'_, PyGreso>) -> &'a Greso {
    slf.as_super().get::<Greso>()
}

#[pymethods]
impl PyGreso {
    #[new]
    fn new(num_prompts: usize, config: &Bound<'_, PyDict>) -> PyResult<PyClassInitializer<Self>> {
        let cfg: GresoConfig = from_dict(config, num_prompts, "config")?;
        Ok(PySelector::init(PyGreso, Greso::new(num_prompts, cfg)?))
    }

    #[getter]
    fn p_easy(slf: PyRef<'_, Self>) -> f64 {
        greso(&slf).probabilities().0
    }

    #[getter]
    fn p_hard(slf: PyRef<'_, Self>) -> f64 {
        greso(&slf).probabilities().1
    }

    #[getter]
    fn skipped(slf: PyRef<'_, Self>) -> u64 {
        greso(&slf).skipped()
    }

    /// The 0-based epoch of the prompts handed out last.
    #[getter]
    fn epoch_index(slf: PyRef<'_, Self>) -> u64 {
        greso(&slf).epoch_index()
    }

    /// The (n, 3) states the skip filter implies for the given prompts (see Greso::predicted).
    fn predicted<'py>(
        slf: PyRef<'py, Self>,
        prompt_ids: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let g = greso(&slf);
        predictions(slf.py(), g.num_prompts(), &prompt_ids, None, |i, k| {
            g.predicted(i, k)
        })
    }
}
