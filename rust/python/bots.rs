//! `BotsCore`: Beta beliefs with forgetting, explicit and implicit evidence, Thompson selection.

use numpy::{PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pyclass_init::PyClassInitializer;
use pyo3::types::PyDict;

use super::convert::predictions;
use super::record::from_dict;
use super::selector::PySelector;
use crate::bots::{Bots, BotsConfig};
use crate::selector::{Predictor, Selector};

#[pyclass(module = "dps._core", name = "BotsCore", extends = PySelector)]
pub struct PyBots;

fn anchor_rows(anchors: Option<PyReadonlyArray2<'_, f64>>) -> PyResult<Vec<[f64; 2]>> {
    let Some(anchors) = anchors else {
        return Ok(Vec::new());
    };
    let view = anchors.as_array();
    if view.ncols() != 2 {
        return Err(PyValueError::new_err(format!(
            "anchors must have shape (num_prompts, 2), got {:?}",
            view.shape()
        )));
    }
    Ok(view.rows().into_iter().map(|r| [r[0], r[1]]).collect())
}

#[pymethods]
impl PyBots {
    #[new]
    #[pyo3(signature = (num_prompts, config, anchors=None))]
    fn new(
        num_prompts: usize,
        config: &Bound<'_, PyDict>,
        anchors: Option<PyReadonlyArray2<'_, f64>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let cfg: BotsConfig = from_dict(config, num_prompts, "config")?;
        let bots = Bots::new(num_prompts, cfg, anchor_rows(anchors)?)?;
        Ok(PySelector::init(PyBots, bots))
    }

    /// The capability estimate c of the interpolation plug-in (None before the first step).
    #[getter]
    fn capability(slf: PyRef<'_, Self>) -> Option<f64> {
        slf.as_super().get::<Bots>().capability()
    }

    /// The (n, 3) Beta-binomial predictive of each prompt's next group of n_rollouts.
    fn predicted<'py>(
        slf: PyRef<'py, Self>,
        prompt_ids: PyReadonlyArray1<'_, i64>,
        n_rollouts: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let b = slf.as_super().get::<Bots>();
        predictions(
            slf.py(),
            b.num_prompts(),
            &prompt_ids,
            Some(&n_rollouts),
            |i, k| b.predicted(i, k),
        )
    }
}
