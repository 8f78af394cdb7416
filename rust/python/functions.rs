//! The module's functions: the DS admission rule, seeded top-k, and the replay world's dice.

use numpy::{ndarray::Array2, IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::convert::{ids_array, Ids};

/// Dynamic sampling's admission mask: std > 0, or a mean inside [lo, hi].
#[pyfunction]
#[pyo3(signature = (n_correct, n_rollouts, band=None))]
pub fn admit_mask<'py>(
    py: Python<'py>,
    n_correct: PyReadonlyArray1<'_, i64>,
    n_rollouts: PyReadonlyArray1<'_, i64>,
    band: Option<(f64, f64)>,
) -> PyResult<Bound<'py, PyArray1<bool>>> {
    let mask = crate::gate::admit(n_correct.as_slice()?, n_rollouts.as_slice()?, band)?;
    Ok(mask.into_pyarray(py))
}

/// The ids of the k highest scores, best first; ties in a seeded random order.
#[pyfunction]
pub fn top_k<'py>(
    py: Python<'py>,
    scores: PyReadonlyArray1<'_, f32>,
    k: usize,
    seed: u64,
) -> PyResult<Ids<'py>> {
    let s = scores.as_slice()?;
    if s.iter().any(|x| x.is_nan()) {
        return Err(PyValueError::new_err("scores hold NaN"));
    }
    let ids = py.detach(|| crate::topk::top_k(s, k, crate::rng::key(&[seed]), |_| false));
    Ok(ids_array(py, ids))
}

/// (len(ids), k) uniforms in [0, 1), a pure function of (seed, step, id, j) (dps.replay.worlds).
#[pyfunction]
pub fn hashed_uniforms<'py>(
    py: Python<'py>,
    seed: u64,
    step: u64,
    ids: PyReadonlyArray1<'_, i64>,
    k: usize,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let ids = ids.as_slice()?;
    let v: Vec<f64> = ids
        .iter()
        .flat_map(|&id| {
            let dice = crate::logworld::Dice::new(seed, step, id);
            (1..=k as u64).map(move |j| dice.uniform(j))
        })
        .collect();
    let a = Array2::from_shape_vec((ids.len(), k), v)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(a.into_pyarray(py))
}

/// Binomial(k, p) per prompt, drawn with the dice of (seed, step, id).
#[pyfunction]
pub fn draw_correct<'py>(
    py: Python<'py>,
    seed: u64,
    step: u64,
    ids: PyReadonlyArray1<'_, i64>,
    p: PyReadonlyArray1<'_, f64>,
    k: u64,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let (ids, p) = (ids.as_slice()?, p.as_slice()?);
    let v = py.detach(|| crate::logworld::draw_correct(seed, step, ids, p, k))?;
    Ok(v.into_pyarray(py))
}
