//! `LogRows`: a rollout log's rows and the log world's model over them (rust/logworld).

use numpy::{ndarray::Array2, IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::convert::{rows_array, Ids};
use crate::logworld::Model;

/// A rollout log's groups sorted by (prompt, step), with the log world's model over them
/// (rust/logworld.rs; python/dps/replay/logworld.py, `RowLog`).
#[pyclass(module = "dps._core", name = "LogRows")]
pub struct PyLogRows {
    inner: crate::logworld::LogRows,
}

fn i64_array<'py>(py: Python<'py>, v: &[i64]) -> Ids<'py> {
    PyArray1::from_slice(py, v)
}

#[pymethods]
impl PyLogRows {
    #[new]
    fn new(
        py: Python<'_>,
        step: PyReadonlyArray1<'_, i64>,
        prompt_id: PyReadonlyArray1<'_, i64>,
        n_correct: PyReadonlyArray1<'_, i64>,
        n_rollouts: PyReadonlyArray1<'_, i64>,
        origin: i64,
    ) -> PyResult<Self> {
        let (s, p, c, n) = (
            step.as_slice()?,
            prompt_id.as_slice()?,
            n_correct.as_slice()?,
            n_rollouts.as_slice()?,
        );
        let inner = py.detach(|| crate::logworld::LogRows::new(s, p, c, n, origin))?;
        Ok(PyLogRows { inner })
    }

    #[getter]
    fn rows(&self) -> usize {
        self.inner.rows()
    }

    /// Write the rows and, when built, the model and its kept messages to `path`.
    fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        Ok(py.detach(|| self.inner.save(&path))?)
    }

    /// A log written by `save`.
    #[staticmethod]
    fn load(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| crate::logworld::LogRows::load(&path))?;
        Ok(PyLogRows { inner })
    }

    #[getter]
    fn message_bytes(&self) -> usize {
        self.inner.message_bytes()
    }

    /// Steps relative to the first, in row order.
    fn steps<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        i64_array(py, self.inner.steps())
    }

    fn offsets<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        i64_array(py, self.inner.offsets())
    }

    /// The distinct (n_rollouts, n_correct), ascending, as an (m, 2) array.
    fn pairs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let flat: Vec<i64> = self
            .inner
            .pairs()
            .iter()
            .flat_map(|&(n, c)| [n, c])
            .collect();
        let a = Array2::from_shape_vec((self.inner.pairs().len(), 2), flat)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(a.into_pyarray(py))
    }

    /// Each row's index into `pairs`.
    fn pair_index<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u32>> {
        PyArray1::from_slice(py, self.inner.pair_index())
    }

    /// (relative step, prompt id, n_rollouts, n_correct) of each of `rows`.
    fn row_info<'py>(
        &self,
        py: Python<'py>,
        rows: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<(Ids<'py>, Ids<'py>, Ids<'py>, Ids<'py>)> {
        let (s, p, n, c) = self.inner.row_info(rows.as_slice()?)?;
        Ok((
            s.into_pyarray(py),
            p.into_pyarray(py),
            n.into_pyarray(py),
            c.into_pyarray(py),
        ))
    }

    fn subset(&self, py: Python<'_>, prompts: PyReadonlyArray1<'_, i64>) -> PyResult<Self> {
        let p = prompts.as_slice()?;
        let inner = py.detach(|| self.inner.subset(p))?;
        Ok(PyLogRows { inner })
    }

    #[pyo3(signature = (emission, prior, prior_start, prior_scale, rate, floor, p_grid, float16, every))]
    #[allow(clippy::too_many_arguments)]
    fn build(
        &mut self,
        py: Python<'_>,
        emission: PyReadonlyArray2<'_, f32>,
        prior: PyReadonlyArray2<'_, f64>,
        prior_start: f64,
        prior_scale: f64,
        rate: f64,
        floor: f32,
        p_grid: PyReadonlyArray1<'_, f64>,
        float16: bool,
        every: usize,
    ) -> PyResult<()> {
        let grid = p_grid.len()?;
        if emission.as_array().ncols() != grid || prior.as_array().ncols() != grid {
            return Err(PyValueError::new_err(
                "the emission, prior and p grids differ in size",
            ));
        }
        let model = Model {
            rate,
            prior: prior.as_array().iter().copied().collect(),
            prior_start,
            prior_scale,
            floor,
            emission: emission.as_array().iter().copied().collect(),
            p_grid: p_grid.as_array().to_vec(),
        };
        let inner = &mut self.inner;
        Ok(py.detach(|| inner.build(model, float16, every))?)
    }

    /// Every row's stored forward (or backward) message, rows x grid.
    fn messages<'py>(&self, py: Python<'py>, forward: bool) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let v = py.detach(|| self.inner.messages(forward))?;
        rows_array(py, v, self.inner.rows())
    }

    fn posterior<'py>(
        &self,
        py: Python<'py>,
        t: PyReadonlyArray1<'_, i64>,
        ids: PyReadonlyArray1<'_, i64>,
        include_cell: bool,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (t, ids) = (t.as_slice()?, ids.as_slice()?);
        let v = py.detach(|| self.inner.posterior(t, ids, include_cell))?;
        rows_array(py, v, ids.len())
    }

    fn held_out_posterior<'py>(
        &self,
        py: Python<'py>,
        rows: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let rows = rows.as_slice()?;
        let v = py.detach(|| self.inner.held_out_posterior(rows))?;
        rows_array(py, v, rows.len())
    }

    fn lookup<'py>(
        &self,
        py: Python<'py>,
        t: i64,
        ids: PyReadonlyArray1<'_, i64>,
        seed: u64,
    ) -> PyResult<(Bound<'py, PyArray1<bool>>, Ids<'py>, Ids<'py>)> {
        let ids = ids.as_slice()?;
        let (found, nc, nr) = self.inner.lookup(t, ids, seed);
        Ok((
            found.into_pyarray(py),
            nc.into_pyarray(py),
            nr.into_pyarray(py),
        ))
    }

    fn draw<'py>(
        &self,
        py: Python<'py>,
        t: i64,
        ids: PyReadonlyArray1<'_, i64>,
        draw_seed: u64,
        mean: bool,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let ids = ids.as_slice()?;
        let v = py.detach(|| self.inner.draw(t, ids, draw_seed, mean))?;
        Ok(v.into_pyarray(py))
    }

    #[allow(clippy::too_many_arguments)]
    fn rollout<'py>(
        &self,
        py: Python<'py>,
        t: i64,
        ids: PyReadonlyArray1<'_, i64>,
        seed: u64,
        k: u64,
        draw_seed: u64,
        mean: bool,
    ) -> PyResult<(Ids<'py>, Ids<'py>)> {
        let ids = ids.as_slice()?;
        let (nc, nr) = py.detach(|| self.inner.rollout(t, ids, seed, k, draw_seed, mean))?;
        Ok((nc.into_pyarray(py), nr.into_pyarray(py)))
    }
}
