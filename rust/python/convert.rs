//! Conversions the classes share: ids and observations in, ids and predictions out.

use numpy::{ndarray::Array2, IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::observe::{GradedRule, Observations};

pub type Ids<'py> = Bound<'py, PyArray1<i64>>;

pub fn ids_array(py: Python<'_>, ids: Vec<u32>) -> Ids<'_> {
    ids.into_iter()
        .map(i64::from)
        .collect::<Vec<_>>()
        .into_pyarray(py)
}

pub fn observations(
    num_prompts: usize,
    ids: &PyReadonlyArray1<'_, i64>,
    n_correct: &PyReadonlyArray1<'_, i64>,
    n_rollouts: &PyReadonlyArray1<'_, i64>,
) -> PyResult<Observations> {
    Ok(Observations::new(
        num_prompts,
        ids.as_slice()?,
        n_correct.as_slice()?,
        n_rollouts.as_slice()?,
    )?)
}

pub fn graded_observations(
    num_prompts: usize,
    ids: &PyReadonlyArray1<'_, i64>,
    n_rollouts: &PyReadonlyArray1<'_, i64>,
    reward_mean: &PyReadonlyArray1<'_, f64>,
    reward_std: &PyReadonlyArray1<'_, f64>,
    rule: GradedRule,
) -> PyResult<Observations> {
    Ok(Observations::graded(
        num_prompts,
        ids.as_slice()?,
        n_rollouts.as_slice()?,
        reward_mean.as_slice()?,
        reward_std.as_slice()?,
        rule,
    )?)
}

/// The ids checked to lie in [0, n).
pub fn checked_ids<'a>(prompt_ids: &'a PyReadonlyArray1<'_, i64>, n: usize) -> PyResult<&'a [i64]> {
    let ids = prompt_ids.as_slice()?;
    if let Some(bad) = ids.iter().find(|&&i| i < 0 || i as u64 >= n as u64) {
        return Err(PyValueError::new_err(format!(
            "prompt id {bad} is outside [0, {n})"
        )));
    }
    Ok(ids)
}

/// An (n, 3) array of per-prompt state distributions.
fn states_array(py: Python<'_>, rows: Vec<[f64; 3]>) -> Bound<'_, PyArray2<f64>> {
    let n = rows.len();
    let flat: Vec<f64> = rows.into_iter().flatten().collect();
    Array2::from_shape_vec((n, 3), flat)
        .expect("three values per prompt")
        .into_pyarray(py)
}

/// The (n, 3) predicted states of the given prompts' next groups, of the given sizes (one per
/// prompt), or of any size where the prediction does not depend on it (`n_rollouts` None).
pub fn predictions<'py>(
    py: Python<'py>,
    n: usize,
    prompt_ids: &PyReadonlyArray1<'_, i64>,
    n_rollouts: Option<&PyReadonlyArray1<'_, i64>>,
    predict: impl Fn(u32, u32) -> [f64; 3] + Send + Sync,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let ids = checked_ids(prompt_ids, n)?;
    let sizes = match n_rollouts {
        Some(k) => group_sizes(k.as_slice()?, ids.len())?,
        None => vec![0; ids.len()],
    };
    let rows = py.detach(|| {
        ids.iter()
            .zip(&sizes)
            .map(|(&i, &k)| predict(i as u32, k))
            .collect()
    });
    Ok(states_array(py, rows))
}

fn group_sizes(k: &[i64], groups: usize) -> PyResult<Vec<u32>> {
    if k.len() != groups {
        return Err(PyValueError::new_err(format!(
            "n_rollouts has {} values for {groups} prompt ids",
            k.len()
        )));
    }
    if let Some(bad) = k.iter().find(|&&x| x < 0 || x > u32::MAX as i64) {
        return Err(PyValueError::new_err(format!(
            "n_rollouts holds {bad}, outside [0, 2^32)"
        )));
    }
    Ok(k.iter().map(|&x| x as u32).collect())
}

/// An (n, len / n) array of `v` (n rows of a grid).
pub fn rows_array<T: numpy::Element>(
    py: Python<'_>,
    v: Vec<T>,
    n: usize,
) -> PyResult<Bound<'_, PyArray2<T>>> {
    let grid = v.len().checked_div(n).unwrap_or(0);
    let a =
        Array2::from_shape_vec((n, grid), v).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(a.into_pyarray(py))
}
