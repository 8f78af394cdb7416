//! `DpsCore`: the per-prompt HMM filter and top-B selection.

use numpy::{ndarray::Array2, IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::pyclass_init::PyClassInitializer;
use pyo3::types::PyDict;

use super::convert::predictions;
use super::record::from_dict;
use super::selector::PySelector;
use crate::dps::{Dps, DpsConfig, PRIORS};
use crate::selector::{Predictor, Selector};

#[pyclass(module = "dps._core", name = "DpsCore", extends = PySelector)]
pub struct PyDps;

fn dps<'a>(slf: &'a PyRef<'_, PyDps>) -> &'a Dps {
    slf.as_super().get::<Dps>()
}

#[pymethods]
impl PyDps {
    /// lambda when none is given: the paper's MATH setting.
    #[classattr]
    const DEFAULT_DECAY: f64 = crate::dps::DEFAULT_DECAY;

    /// The structured priors alpha0[to][from] by name (docs/method.md#dps-options).
    #[classattr]
    #[allow(non_snake_case)]
    fn PRIORS(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
        let d = PyDict::new(py);
        for (name, matrix) in PRIORS {
            d.set_item(name, matrix.map(|row| row.to_vec()).to_vec())?;
        }
        Ok(d)
    }

    #[new]
    fn new(num_prompts: usize, config: &Bound<'_, PyDict>) -> PyResult<PyClassInitializer<Self>> {
        let cfg: DpsConfig = from_dict(config, num_prompts, "config")?;
        Ok(PySelector::init(PyDps, Dps::new(num_prompts, cfg)?))
    }

    /// The (n, 3) predicted state distribution of the given prompts.
    fn predicted<'py>(
        slf: PyRef<'py, Self>,
        prompt_ids: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let d = dps(&slf);
        predictions(slf.py(), d.num_prompts(), &prompt_ids, None, |i, k| {
            d.predicted(i, k)
        })
    }

    fn scores<'py>(slf: PyRef<'py, Self>) -> Bound<'py, PyArray1<f32>> {
        PyArray1::from_slice(slf.py(), dps(&slf).scores())
    }

    /// The last step's confusion counts, `[observed state][predicted state]`.
    fn confusion<'py>(slf: PyRef<'py, Self>) -> Bound<'py, PyArray2<u64>> {
        let c = dps(&slf).confusion();
        Array2::from_shape_fn((3, 3), |(i, j)| c[i][j]).into_pyarray(slf.py())
    }

    fn bytes_per_prompt(slf: PyRef<'_, Self>) -> f64 {
        dps(&slf).bytes_per_prompt()
    }
}
