//! `RateDpsCore`: the success rate as the hidden state, a binomial look per group, the switch
//! rate fitted online, revisits of the prompts most likely stranded or observed least recently.

use numpy::{PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::pyclass_init::PyClassInitializer;
use pyo3::types::PyDict;

use super::convert::{checked_ids, predictions, rows_array};
use super::record::from_dict;
use super::selector::PySelector;
use crate::ratedps::{RateDps, RateDpsConfig};
use crate::selector::{Predictor, Selector};

#[pyclass(module = "dps._core", name = "RateDpsCore", extends = PySelector)]
pub struct PyRateDps;

fn core<'a>(slf: &'a PyRef<'_, PyRateDps>) -> &'a RateDps {
    slf.as_super().get::<RateDps>()
}

#[pymethods]
impl PyRateDps {
    /// The switch-rate candidates of the online fit when none are given.
    #[classattr]
    const SWITCH_RATES: [f64; 6] = crate::ratedps::SWITCH_RATES;
    /// The switch rate while the candidates tie.
    #[classattr]
    const START_SWITCH_RATE: f64 = crate::ratedps::START_SWITCH_RATE;
    /// About how many prompts the shadow filters follow.
    #[classattr]
    const FIT_SAMPLE: u64 = crate::ratedps::FIT_SAMPLE;
    /// The selection when none is given.
    #[classattr]
    const SELECTION: &'static str = crate::ratedps::SELECTION;
    /// Every selection's name.
    #[classattr]
    const SELECTIONS: [&'static str; 3] = crate::ratedps::SELECTIONS;
    /// The revisit rule when none is given.
    #[classattr]
    const REVISIT_BY: &'static str = crate::ratedps::REVISIT_BY;
    /// Every revisit rule's name.
    #[classattr]
    const REVISIT_BYS: [&'static str; 2] = crate::ratedps::REVISIT_BYS;

    #[new]
    #[pyo3(signature = (num_prompts, config, families=None))]
    fn new(
        num_prompts: usize,
        config: &Bound<'_, PyDict>,
        families: Option<PyReadonlyArray1<'_, i64>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let cfg: RateDpsConfig = from_dict(config, num_prompts, "config")?;
        let families = families
            .map(|f| f.as_slice().map(<[i64]>::to_vec))
            .transpose()?;
        let policy = RateDps::with_families(num_prompts, cfg, families)?;
        Ok(PySelector::init(PyRateDps, policy))
    }

    /// The (n, 3) binomial predictive of each prompt's next group of n_rollouts.
    fn predicted<'py>(
        slf: PyRef<'py, Self>,
        prompt_ids: PyReadonlyArray1<'_, i64>,
        n_rollouts: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let r = core(&slf);
        predictions(
            slf.py(),
            r.num_prompts(),
            &prompt_ids,
            Some(&n_rollouts),
            |i, k| r.predicted(i, k),
        )
    }

    /// The (n, G) predicted rate distributions of the given prompts at the coming step.
    fn rate_distribution<'py>(
        slf: PyRef<'py, Self>,
        prompt_ids: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let r = core(&slf);
        let ids = checked_ids(&prompt_ids, r.num_prompts())?;
        let flat: Vec<f64> = ids
            .iter()
            .flat_map(|&i| r.rate_distribution(i as u32))
            .collect();
        rows_array(slf.py(), flat, ids.len())
    }

    /// Every prompt's score: P(its next group of k is partially solved).
    fn scores<'py>(slf: PyRef<'py, Self>) -> Bound<'py, PyArray1<f64>> {
        let r = core(&slf);
        let scores = slf.py().detach(|| r.scores());
        PyArray1::from_vec(slf.py(), scores)
    }

    /// The grid of success rates.
    #[getter]
    fn rates<'py>(slf: PyRef<'py, Self>) -> Bound<'py, PyArray1<f64>> {
        PyArray1::from_slice(slf.py(), core(&slf).rates())
    }

    /// The score's group size k now.
    #[getter]
    fn group_size(slf: PyRef<'_, Self>) -> u64 {
        core(&slf).group_size()
    }

    /// switch_rate, population_mean_rate, population_partial, observed_share and, once the fit
    /// has scored groups, switch_rate_loglik.
    fn metrics<'py>(slf: PyRef<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(slf.py());
        for (name, value) in core(&slf).metrics() {
            d.set_item(name, value)?;
        }
        Ok(d)
    }

    fn bytes_per_prompt(slf: PyRef<'_, Self>) -> f64 {
        core(&slf).bytes_per_prompt()
    }
}
