//! Python bindings (`dps._core`): numpy arrays in and out, the GIL released in batch work.
//! Argument types and dtypes are checked by the Python layer (python/dps/policies/builtin.py);
//! values are checked here, by the core.

use numpy::{ndarray::Array2, IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::bots::{Bots, BotsConfig};
use crate::dps::{Dps, DpsConfig, DpsState};
use crate::error::Error;
use crate::greso::{Greso, GresoConfig};
use crate::history::HistoryResampling;
use crate::mopps::{Mopps, MoppsConfig};
use crate::observe::Observations;
use crate::sampler::EpochOrder;
use crate::uniform::Uniform;

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        PyValueError::new_err(e.to_string())
    }
}

fn ids_array(py: Python<'_>, ids: Vec<u32>) -> Bound<'_, PyArray1<i64>> {
    ids.into_iter()
        .map(i64::from)
        .collect::<Vec<_>>()
        .into_pyarray(py)
}

fn observations(
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

fn order_state<'py>(d: &Bound<'py, PyDict>, order: &EpochOrder) -> PyResult<()> {
    let py = d.py();
    d.set_item("epoch", order.epoch)?;
    d.set_item("cursor", order.cursor)?;
    d.set_item("order", ids_array(py, order.order.clone()))?;
    Ok(())
}

/// The candidate pool's epoch order, under `pool_` keys.
fn pool_state<'py>(d: &Bound<'py, PyDict>, order: &EpochOrder) -> PyResult<()> {
    let py = d.py();
    d.set_item("pool_epoch", order.epoch)?;
    d.set_item("pool_cursor", order.cursor)?;
    d.set_item("pool_order", ids_array(py, order.order.clone()))?;
    Ok(())
}

fn pending_array<'py>(py: Python<'py>, ids: &[u32]) -> Bound<'py, PyArray1<i64>> {
    ids_array(py, ids.to_vec())
}

/// The ids checked to lie in [0, n).
fn checked_ids<'a>(prompt_ids: &'a PyReadonlyArray1<'_, i64>, n: usize) -> PyResult<&'a [i64]> {
    let ids = prompt_ids.as_slice()?;
    if let Some(bad) = ids.iter().find(|&&i| i < 0 || i as u64 >= n as u64) {
        return Err(PyValueError::new_err(format!(
            "prompt id {bad} is outside [0, {n})"
        )));
    }
    Ok(ids)
}

/// An (n, 3) array of per-prompt state distributions.
fn states_array<'py>(py: Python<'py>, rows: Vec<[f64; 3]>) -> Bound<'py, PyArray2<f64>> {
    let n = rows.len();
    let flat: Vec<f64> = rows.into_iter().flatten().collect();
    Array2::from_shape_vec((n, 3), flat)
        .expect("three values per prompt")
        .into_pyarray(py)
}

/// Predicted states of the given prompts for groups of the given sizes (one per prompt).
fn group_predictions<'py>(
    py: Python<'py>,
    n: usize,
    prompt_ids: &PyReadonlyArray1<'_, i64>,
    n_rollouts: &PyReadonlyArray1<'_, i64>,
    predict: impl Fn(u32, u32) -> [f64; 3] + Send + Sync,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let ids = checked_ids(prompt_ids, n)?;
    let k = n_rollouts.as_slice()?;
    if k.len() != ids.len() {
        return Err(PyValueError::new_err(format!(
            "n_rollouts has {} values for {} prompt ids",
            k.len(),
            ids.len()
        )));
    }
    if let Some(bad) = k.iter().find(|&&x| x < 0 || x > u32::MAX as i64) {
        return Err(PyValueError::new_err(format!(
            "n_rollouts holds {bad}, outside [0, 2^32)"
        )));
    }
    let rows = py.detach(|| {
        ids.iter()
            .zip(k)
            .map(|(&i, &k)| predict(i as u32, k as u32))
            .collect()
    });
    Ok(states_array(py, rows))
}

/// The methods every selector class shares, followed by the class's own (`$extra`).
macro_rules! selector_methods {
    ($class:ident { $($extra:tt)* }) => {
        #[pymethods]
        impl $class {
            #[getter]
            fn num_prompts(&self) -> usize {
                self.inner.num_prompts()
            }

            #[getter]
            fn step(&self) -> u64 {
                self.inner.step()
            }

            fn select<'py>(&mut self, py: Python<'py>, batch_size: usize) -> PyResult<Bound<'py, PyArray1<i64>>> {
                let inner = &mut self.inner;
                let ids = py.detach(|| inner.select(batch_size))?;
                Ok(ids_array(py, ids))
            }

            fn observe(
                &mut self,
                py: Python<'_>,
                prompt_ids: PyReadonlyArray1<'_, i64>,
                n_correct: PyReadonlyArray1<'_, i64>,
                n_rollouts: PyReadonlyArray1<'_, i64>,
            ) -> PyResult<()> {
                let obs = observations(self.inner.num_prompts(), &prompt_ids, &n_correct, &n_rollouts)?;
                let inner = &mut self.inner;
                Ok(py.detach(|| inner.observe(&obs))?)
            }

            $($extra)*
        }
    };
}

/// Per-prompt HMM filter and top-B selection.
#[pyclass(module = "dps._core", name = "DpsCore")]
struct PyDps {
    inner: Dps,
}

selector_methods!(PyDps {
    /// lambda when none is given: the paper's MATH setting.
    #[classattr]
    const DEFAULT_DECAY: f64 = crate::dps::DEFAULT_DECAY;

    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (num_prompts, decay, alpha0, pi0, entropy_weight, seed, candidate_ratio=None))]
    fn new(num_prompts: usize, decay: f64, alpha0: [f64; 9], pi0: [f64; 3], entropy_weight: f64, seed: u64, candidate_ratio: Option<f64>) -> PyResult<Self> {
        let cfg = DpsConfig { decay, alpha0, pi0, entropy_weight, candidate_ratio, seed };
        Ok(PyDps { inner: Dps::new(num_prompts, cfg)? })
    }

    /// The (n, 3) predicted state distribution of the given prompts.
    fn predicted<'py>(&self, py: Python<'py>, prompt_ids: PyReadonlyArray1<'_, i64>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let ids = prompt_ids.as_slice()?;
        let n = self.inner.num_prompts() as i64;
        if let Some(bad) = ids.iter().find(|&&i| i < 0 || i >= n) {
            return Err(PyValueError::new_err(format!("prompt id {bad} is outside [0, {n})")));
        }
        let inner = &self.inner;
        let flat: Vec<f64> = py.detach(|| ids.iter().flat_map(|&i| inner.predicted(i as u32)).collect());
        let array = Array2::from_shape_vec((ids.len(), 3), flat).expect("three values per prompt");
        Ok(array.into_pyarray(py))
    }

    fn scores<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        PyArray1::from_slice(py, self.inner.scores())
    }

    /// The last step's confusion counts, `[observed state][predicted state]`.
    fn confusion<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<u64>> {
        let c = self.inner.confusion();
        Array2::from_shape_fn((3, 3), |(i, j)| c[i][j]).into_pyarray(py)
    }

    fn bytes_per_prompt(&self) -> f64 {
        self.inner.bytes_per_prompt()
    }

    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.export();
        let d = PyDict::new(py);
        d.set_item("alpha", s.alpha.into_pyarray(py))?;
        d.set_item("post", s.post.into_pyarray(py))?;
        d.set_item("step", s.step)?;
        d.set_item("pending", s.pending.into_pyarray(py))?;
        let c = s.confusion;
        d.set_item("confusion", Array2::from_shape_fn((3, 3), |(i, j)| c[i][j] as i64).into_pyarray(py))?;
        pool_state(&d, &s.pool)?;
        Ok(d)
    }

    #[allow(clippy::too_many_arguments)]
    fn load_state(
        &mut self,
        alpha: PyReadonlyArray1<'_, f32>,
        post: PyReadonlyArray1<'_, f32>,
        step: u64,
        pending: PyReadonlyArray1<'_, i64>,
        confusion: PyReadonlyArray1<'_, i64>,
        pool_epoch: u64,
        pool_cursor: u64,
        pool_order: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<()> {
        let n = self.inner.num_prompts();
        let cfg = self.inner.config().clone();
        let c = confusion.as_slice()?;
        if c.len() != 9 || c.iter().any(|&x| x < 0) {
            return Err(PyValueError::new_err("confusion must hold 9 non-negative counts"));
        }
        let state = DpsState {
            alpha: alpha.as_slice()?.to_vec(),
            post: post.as_slice()?.to_vec(),
            step,
            pending: pending.as_slice()?.to_vec(),
            confusion: std::array::from_fn(|i| std::array::from_fn(|j| c[3 * i + j] as u64)),
            pool: EpochOrder::restore(cfg.seed, n, pool_epoch, pool_cursor, pool_order.as_slice()?)?,
        };
        self.inner = Dps::restore(n, cfg, &state)?;
        Ok(())
    }
});

/// The shuffled dataloader.
#[pyclass(module = "dps._core", name = "UniformCore")]
struct PyUniform {
    inner: Uniform,
    seed: u64,
}

selector_methods!(PyUniform {
    #[new]
    fn new(num_prompts: usize, seed: u64) -> PyResult<Self> {
        Ok(PyUniform { inner: Uniform::new(num_prompts, seed)?, seed })
    }

    /// The state; without the epoch order (N ids) when `with_order` is false.
    #[pyo3(signature = (with_order=true))]
    fn state<'py>(&self, py: Python<'py>, with_order: bool) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("step", self.inner.step)?;
        d.set_item("pending", pending_array(py, self.inner.pending.ids()))?;
        if with_order {
            order_state(&d, &self.inner.order)?;
        } else {
            d.set_item("epoch", self.inner.order.epoch)?;
            d.set_item("cursor", self.inner.order.cursor)?;
        }
        Ok(d)
    }

    fn load_state(
        &mut self,
        step: u64,
        pending: PyReadonlyArray1<'_, i64>,
        epoch: u64,
        cursor: u64,
        order: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<()> {
        let n = self.inner.num_prompts();
        let order = EpochOrder::restore(self.seed, n, epoch, cursor, order.as_slice()?)?;
        self.inner = Uniform::restore(n, self.seed, step, order, pending.as_slice()?)?;
        Ok(())
    }
});

/// Uniform epochs that leave out prompts last seen solved.
#[pyclass(module = "dps._core", name = "HistoryCore")]
struct PyHistory {
    inner: HistoryResampling,
    seed: u64,
}

selector_methods!(PyHistory {
    #[new]
    fn new(num_prompts: usize, seed: u64) -> PyResult<Self> {
        Ok(PyHistory { inner: HistoryResampling::new(num_prompts, seed)?, seed })
    }

    #[getter]
    fn excluded_count(&self) -> usize {
        self.inner.excluded_count()
    }

    #[getter]
    fn resets(&self) -> u64 {
        self.inner.resets()
    }

    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("step", self.inner.step)?;
        d.set_item("resets", self.inner.resets)?;
        d.set_item("excluded", self.inner.excluded.iter().map(|&e| e as u8).collect::<Vec<_>>().into_pyarray(py))?;
        d.set_item("pending", pending_array(py, self.inner.pending.ids()))?;
        order_state(&d, &self.inner.order)?;
        Ok(d)
    }

    #[allow(clippy::too_many_arguments)]
    fn load_state(
        &mut self,
        step: u64,
        resets: u64,
        excluded: PyReadonlyArray1<'_, u8>,
        pending: PyReadonlyArray1<'_, i64>,
        epoch: u64,
        cursor: u64,
        order: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<()> {
        let n = self.inner.num_prompts();
        let flags = excluded.as_slice()?;
        if flags.iter().any(|&f| f > 1) {
            return Err(PyValueError::new_err("excluded must hold 0/1 flags"));
        }
        let flags: Vec<bool> = flags.iter().map(|&f| f == 1).collect();
        let order = EpochOrder::restore(self.seed, n, epoch, cursor, order.as_slice()?)?;
        self.inner = HistoryResampling::restore(n, self.seed, step, resets, &flags, order, pending.as_slice()?)?;
        Ok(())
    }
});

/// Beta posteriors per prompt, sampled towards a 0.5 success rate.
#[pyclass(module = "dps._core", name = "MoppsCore")]
struct PyMopps {
    inner: Mopps,
}

selector_methods!(PyMopps {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (num_prompts, decay, prior_a, prior_b, target, band, seed, candidate_ratio=None))]
    fn new(num_prompts: usize, decay: f64, prior_a: f64, prior_b: f64, target: f64, band: Option<(f64, f64)>, seed: u64, candidate_ratio: Option<f64>) -> PyResult<Self> {
        let cfg = MoppsConfig { decay, prior_a, prior_b, target, band, candidate_ratio, seed };
        Ok(PyMopps { inner: Mopps::new(num_prompts, cfg)? })
    }

    /// The (n, 3) Beta-binomial predictive of each prompt's next group of n_rollouts.
    fn predicted<'py>(&self, py: Python<'py>, prompt_ids: PyReadonlyArray1<'_, i64>, n_rollouts: PyReadonlyArray1<'_, i64>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let inner = &self.inner;
        group_predictions(py, inner.num_prompts(), &prompt_ids, &n_rollouts, |i, k| inner.predicted(i, k))
    }

    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("step", self.inner.step)?;
        d.set_item("a", PyArray1::from_slice(py, &self.inner.a))?;
        d.set_item("b", PyArray1::from_slice(py, &self.inner.b))?;
        d.set_item("pending", pending_array(py, self.inner.pending.ids()))?;
        pool_state(&d, self.inner.pool.order())?;
        Ok(d)
    }

    #[allow(clippy::too_many_arguments)]
    fn load_state(
        &mut self,
        step: u64,
        a: PyReadonlyArray1<'_, f64>,
        b: PyReadonlyArray1<'_, f64>,
        pending: PyReadonlyArray1<'_, i64>,
        pool_epoch: u64,
        pool_cursor: u64,
        pool_order: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<()> {
        let n = self.inner.num_prompts();
        let cfg = self.inner.config().clone();
        let pool = EpochOrder::restore(cfg.seed, n, pool_epoch, pool_cursor, pool_order.as_slice()?)?;
        self.inner = Mopps::restore(n, cfg, a.as_slice()?, b.as_slice()?, step, pending.as_slice()?, pool)?;
        Ok(())
    }
});

/// Pre-rollout skipping of prompts with zero-variance streaks.
#[pyclass(module = "dps._core", name = "GresoCore")]
struct PyGreso {
    inner: Greso,
}

selector_methods!(PyGreso {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (num_prompts, p_easy, p_hard, step_size, p_min, p_max, min_keep, target_easy, target_hard, adapt_from_epoch, seed))]
    fn new(
        num_prompts: usize,
        p_easy: f64,
        p_hard: f64,
        step_size: f64,
        p_min: f64,
        p_max: f64,
        min_keep: f64,
        target_easy: f64,
        target_hard: f64,
        adapt_from_epoch: u64,
        seed: u64,
    ) -> PyResult<Self> {
        let cfg = GresoConfig { p_easy, p_hard, step_size, p_min, p_max, min_keep, target_easy, target_hard, adapt_from_epoch, seed };
        Ok(PyGreso { inner: Greso::new(num_prompts, cfg)? })
    }

    #[getter]
    fn p_easy(&self) -> f64 {
        self.inner.probabilities().0
    }

    #[getter]
    fn p_hard(&self) -> f64 {
        self.inner.probabilities().1
    }

    #[getter]
    fn skipped(&self) -> u64 {
        self.inner.skipped()
    }

    /// The 0-based epoch of the prompts handed out last.
    #[getter]
    fn epoch_index(&self) -> u64 {
        self.inner.epoch_index()
    }

    /// The (n, 3) states the skip filter implies for the given prompts (see Greso::predicted).
    fn predicted<'py>(&self, py: Python<'py>, prompt_ids: PyReadonlyArray1<'_, i64>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let ids = checked_ids(&prompt_ids, self.inner.num_prompts())?;
        let rows = ids.iter().map(|&i| self.inner.predicted(i as u32)).collect();
        Ok(states_array(py, rows))
    }

    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let g = &self.inner;
        let d = PyDict::new(py);
        d.set_item("step", g.step)?;
        d.set_item("calls", g.calls)?;
        d.set_item("skipped", g.skipped)?;
        d.set_item("p_easy_now", g.p_easy)?;
        d.set_item("p_hard_now", g.p_hard)?;
        d.set_item("easy", PyArray1::from_slice(py, &g.easy))?;
        d.set_item("hard", PyArray1::from_slice(py, &g.hard))?;
        d.set_item("pending", pending_array(py, g.pending.ids()))?;
        order_state(&d, &g.order)?;
        Ok(d)
    }

    #[allow(clippy::too_many_arguments)]
    fn load_state(
        &mut self,
        step: u64,
        calls: u64,
        skipped: u64,
        p_easy_now: f64,
        p_hard_now: f64,
        easy: PyReadonlyArray1<'_, u16>,
        hard: PyReadonlyArray1<'_, u16>,
        pending: PyReadonlyArray1<'_, i64>,
        epoch: u64,
        cursor: u64,
        order: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<()> {
        let n = self.inner.num_prompts();
        let cfg = self.inner.config().clone();
        let order = EpochOrder::restore(cfg.seed, n, epoch, cursor, order.as_slice()?)?;
        self.inner = Greso::restore(
            n,
            cfg,
            easy.as_slice()?,
            hard.as_slice()?,
            p_easy_now,
            p_hard_now,
            order,
            pending.as_slice()?,
            step,
            calls,
            skipped,
        )?;
        Ok(())
    }
});

/// BOTS: Beta beliefs with forgetting, explicit and implicit evidence, Thompson selection.
#[pyclass(module = "dps._core", name = "BotsCore")]
struct PyBots {
    inner: Bots,
}

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

selector_methods!(PyBots {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (num_prompts, forgetting, implicit_weight, prior_a, prior_b, target, pseudo_count, smoothing, thompson, seed, candidate_ratio=None, anchors=None))]
    fn new(
        num_prompts: usize,
        forgetting: f64,
        implicit_weight: f64,
        prior_a: f64,
        prior_b: f64,
        target: f64,
        pseudo_count: Option<f64>,
        smoothing: f64,
        thompson: bool,
        seed: u64,
        candidate_ratio: Option<f64>,
        anchors: Option<PyReadonlyArray2<'_, f64>>,
    ) -> PyResult<Self> {
        let cfg = BotsConfig { forgetting, implicit_weight, prior_a, prior_b, target, pseudo_count, smoothing, thompson, candidate_ratio, seed };
        Ok(PyBots { inner: Bots::new(num_prompts, cfg, anchor_rows(anchors)?)? })
    }

    /// The capability estimate c of the interpolation plug-in (None before the first step).
    #[getter]
    fn capability(&self) -> Option<f64> {
        self.inner.capability()
    }

    /// The (n, 3) Beta-binomial predictive of each prompt's next group of n_rollouts.
    fn predicted<'py>(&self, py: Python<'py>, prompt_ids: PyReadonlyArray1<'_, i64>, n_rollouts: PyReadonlyArray1<'_, i64>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let inner = &self.inner;
        group_predictions(py, inner.num_prompts(), &prompt_ids, &n_rollouts, |i, k| inner.predicted(i, k))
    }

    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("step", self.inner.step)?;
        d.set_item("a", PyArray1::from_slice(py, &self.inner.a))?;
        d.set_item("b", PyArray1::from_slice(py, &self.inner.b))?;
        d.set_item("capability", self.inner.capability)?;
        d.set_item("pending", pending_array(py, self.inner.pending.ids()))?;
        pool_state(&d, self.inner.pool.order())?;
        Ok(d)
    }

    #[allow(clippy::too_many_arguments)]
    fn load_state(
        &mut self,
        step: u64,
        a: PyReadonlyArray1<'_, f64>,
        b: PyReadonlyArray1<'_, f64>,
        capability: f64,
        pending: PyReadonlyArray1<'_, i64>,
        pool_epoch: u64,
        pool_cursor: u64,
        pool_order: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<()> {
        let n = self.inner.num_prompts();
        let cfg = self.inner.config().clone();
        let anchors = self.inner.anchors().to_vec();
        let pool = EpochOrder::restore(cfg.seed, n, pool_epoch, pool_cursor, pool_order.as_slice()?)?;
        self.inner = Bots::restore(n, cfg, anchors, a.as_slice()?, b.as_slice()?, capability, step, pending.as_slice()?, pool)?;
        Ok(())
    }
});

/// Dynamic sampling's admission mask: std > 0, or a mean inside [lo, hi].
#[pyfunction]
#[pyo3(signature = (n_correct, n_rollouts, band=None))]
fn admit_mask<'py>(
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
fn top_k<'py>(
    py: Python<'py>,
    scores: PyReadonlyArray1<'_, f32>,
    k: usize,
    seed: u64,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let s = scores.as_slice()?;
    if s.iter().any(|x| x.is_nan()) {
        return Err(PyValueError::new_err("scores hold NaN"));
    }
    let ids = py.detach(|| crate::topk::top_k(s, k, crate::rng::key(&[seed]), |_| false));
    Ok(ids_array(py, ids))
}

/// A rollout log's groups sorted by (prompt, step), with the log world's model over them
/// (rust/logworld.rs; python/dps/replay/logworld.py, `RowLog`).
#[pyclass(module = "dps._core", name = "LogRows")]
struct PyLogRows {
    inner: crate::logworld::LogRows,
}

fn i64_array<'py>(py: Python<'py>, v: &[i64]) -> Bound<'py, PyArray1<i64>> {
    PyArray1::from_slice(py, v)
}

/// An (n, len / n) array of `v` (n rows of a grid).
fn rows_array<T: numpy::Element>(
    py: Python<'_>,
    v: Vec<T>,
    n: usize,
) -> PyResult<Bound<'_, PyArray2<T>>> {
    let grid = v.len().checked_div(n).unwrap_or(0);
    let a =
        Array2::from_shape_vec((n, grid), v).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(a.into_pyarray(py))
}

type Ids<'py> = Bound<'py, PyArray1<i64>>;

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
        let (e, pr, g) = (
            emission.as_array().iter().copied().collect(),
            prior.as_array().iter().copied().collect(),
            p_grid.as_array().to_vec(),
        );
        let inner = &mut self.inner;
        Ok(py.detach(|| {
            inner.build(
                e,
                pr,
                prior_start,
                prior_scale,
                rate,
                floor,
                g,
                float16,
                every,
            )
        })?)
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

/// (len(ids), k) uniforms in [0, 1), a pure function of (seed, step, id, j) (dps.replay.worlds).
#[pyfunction]
fn hashed_uniforms<'py>(
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
fn draw_correct<'py>(
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

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDps>()?;
    m.add_class::<PyUniform>()?;
    m.add_class::<PyHistory>()?;
    m.add_class::<PyMopps>()?;
    m.add_class::<PyGreso>()?;
    m.add_class::<PyBots>()?;
    m.add_function(wrap_pyfunction!(admit_mask, m)?)?;
    m.add_function(wrap_pyfunction!(top_k, m)?)?;
    m.add_class::<PyLogRows>()?;
    m.add_function(wrap_pyfunction!(hashed_uniforms, m)?)?;
    m.add_function(wrap_pyfunction!(draw_correct, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
