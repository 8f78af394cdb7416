//! The log world's model of a log: the dynamics, the emission table and the grid of success rates
//! (`build` fits it), with the messages kept at checkpoints (rust/logworld/messages.rs).

use super::messages::{checkpoints, Checkpoints, Pass, PriorTable, Rows, Switching};
use super::query::{Queries, Query};
use super::rows::LogRows;
use crate::error::{invalid, Result};

impl LogRows {
    /// Fit `model` to the rows: keep the messages (float16 or float32) at every `every`-th row.
    pub fn build(&mut self, model: Model, float16: bool, every: usize) -> Result<()> {
        let grid = model.grid();
        if grid == 0 || model.emission.len() != self.pairs.len() * grid {
            return invalid(format!(
                "the emission table needs {} rows (one per distinct (n_rollouts, n_correct)) of the grid of {grid}",
                self.pairs.len()
            ));
        }
        if model.prior.is_empty() || !model.prior.len().is_multiple_of(grid) {
            return invalid(format!(
                "the prior table needs whole rows of the grid of {grid}"
            ));
        }
        let stored = {
            let rows = model.rows(self);
            let dynamics = model.dynamics();
            let pass = model.pass(&rows, &dynamics);
            if float16 {
                Stored::F16(checkpoints::<half::f16>(&pass, every)?)
            } else {
                Stored::F32(checkpoints::<f32>(&pass, every)?)
            }
        };
        self.fit = Some(Fit { model, stored });
        Ok(())
    }

    pub(super) fn fitted(&self) -> Result<&Fit> {
        self.fit.as_ref().map_or_else(
            || invalid("the log's model is not built yet (call build)"),
            Ok,
        )
    }

    /// Bytes the kept messages take.
    pub fn message_bytes(&self) -> usize {
        match &self.fit {
            Some(Fit {
                stored: Stored::F16(c),
                ..
            }) => c.bytes(),
            Some(Fit {
                stored: Stored::F32(c),
                ..
            }) => c.bytes(),
            None => 0,
        }
    }

    /// Every row's forward (or backward) message as stored, rows x grid (a check; queries use few rows).
    pub fn messages(&self, forward: bool) -> Result<Vec<f32>> {
        let fit = self.fitted()?;
        let grid = fit.model.grid();
        let mut out = vec![0.0f32; self.rows() * grid];
        fit.with(self, |q| {
            for w in self.offsets.windows(2) {
                let (a, b) = (w[0] as usize, w[1] as usize);
                for row in a..b {
                    let m = &mut out[row * grid..(row + 1) * grid];
                    if forward {
                        q.forward_at(row, a, m);
                    } else {
                        q.backward_at(row, b, m);
                    }
                }
            }
        });
        Ok(out)
    }
}

/// The log world's model: a grid of success rates, the dynamics over it (a prompt's rate stays,
/// or with probability `rate` per step is redrawn from the population prior at that step), and
/// each distinct (n_rollouts, n_correct)'s likelihood on the grid.
pub struct Model {
    /// The switch rate, in [0, 1).
    pub rate: f64,
    /// The population prior tabulated at evenly spaced steps: points x grid, row-major.
    pub prior: Vec<f64>,
    /// The step of the prior's first point, and its points per step.
    pub prior_start: f64,
    pub prior_scale: f64,
    /// The messages' floor (rows the dynamics cannot reconcile still leave a posterior).
    pub floor: f32,
    /// Distinct (n_rollouts, n_correct) x grid, scaled to a maximum of 1, in the rows' pair order.
    pub emission: Vec<f32>,
    /// The success rates of the grid.
    pub p_grid: Vec<f64>,
}

impl Model {
    pub fn grid(&self) -> usize {
        self.p_grid.len()
    }

    pub(super) fn rows<'a>(&'a self, log: &'a LogRows) -> Rows<'a> {
        Rows {
            step: &log.step,
            offsets: &log.offsets,
            emission: &self.emission,
            emission_index: &log.pair_index,
        }
    }

    pub(super) fn dynamics(&self) -> Switching<'_> {
        Switching {
            rate: self.rate,
            prior: PriorTable {
                start: self.prior_start,
                scale: self.prior_scale,
                dense: &self.prior,
            },
        }
    }

    pub(super) fn pass<'a>(&'a self, rows: &'a Rows<'a>, dynamics: &'a Switching<'a>) -> Pass<'a> {
        Pass {
            rows,
            dynamics,
            grid: self.grid(),
            floor: self.floor,
        }
    }
}

pub(super) enum Stored {
    F16(Checkpoints<half::f16>),
    F32(Checkpoints<f32>),
}

pub(super) struct Fit {
    pub(super) model: Model,
    pub(super) stored: Stored,
}

impl Fit {
    /// Run `f` with a query object over the stored messages, whichever their precision.
    pub(super) fn with<R>(&self, log: &LogRows, f: impl FnOnce(&dyn Queries) -> R) -> R {
        let rows = self.model.rows(log);
        let dynamics = self.model.dynamics();
        let pass = self.model.pass(&rows, &dynamics);
        match &self.stored {
            Stored::F16(c) => f(&Query {
                model: &self.model,
                pass: &pass,
                kept: c,
            }),
            Stored::F32(c) => f(&Query {
                model: &self.model,
                pass: &pass,
                kept: c,
            }),
        }
    }
}
