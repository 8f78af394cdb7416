//! `MoppsCore`: Beta posteriors per prompt, sampled towards a 0.5 success rate.

use numpy::{PyArray2, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::pyclass_init::PyClassInitializer;
use pyo3::types::PyDict;

use super::convert::predictions;
use super::record::from_dict;
use super::selector::PySelector;
use crate::mopps::{Mopps, MoppsConfig};
use crate::selector::{Predictor, Selector};

#[pyclass(module = "dps._core", name = "MoppsCore", extends = PySelector)]
pub struct PyMopps;

#[pymethods]
impl PyMopps {
    #[new]
    fn new(num_prompts: usize, config: &Bound<'_, PyDict>) -> PyResult<PyClassInitializer<Self>> {
        let cfg: MoppsConfig = from_dict(config, num_prompts, "config")?;
        Ok(PySelector::init(PyMopps, Mopps::new(num_prompts, cfg)?))
    }

    /// The (n, 3) Beta-binomial predictive of each prompt's next group of n_rollouts.
    fn predicted<'py>(
        slf: PyRef<'py, Self>,
        prompt_ids: PyReadonlyArray1<'_, i64>,
        n_rollouts: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let m = slf.as_super().get::<Mopps>();
        predictions(
            slf.py(),
            m.num_prompts(),
            &prompt_ids,
            Some(&n_rollouts),
            |i, k| m.predicted(i, k),
        )
    }
}
