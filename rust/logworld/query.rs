//! The query engine: what a replay asks of a fitted log at a step. The logged group where the log
//! holds the cell; else the posterior of the prompt's success rate there (from the kept messages
//! before and after it), a rate drawn from it, and a group drawn with common random numbers.

use rayon::prelude::*;

use super::dice::Dice;
use super::messages::{Checkpoints, Message, Pass, Switching};
use super::model::Model;
use super::pairwise::pairwise_sum;
use super::rows::{LogRows, Where};
use crate::error::{invalid, Result};

impl LogRows {
    /// Posterior weights over the grid of p at relative step t[i] of prompt ids[i] (n x grid),
    /// the cell (t, id) itself included as evidence or not.
    pub fn posterior(&self, t: &[i64], ids: &[i64], include_cell: bool) -> Result<Vec<f64>> {
        if t.len() != ids.len() {
            return invalid(format!("{} steps but {} prompt ids", t.len(), ids.len()));
        }
        let fit = self.fitted()?;
        let grid = fit.model.grid();
        let mut out = vec![0.0f64; ids.len() * grid];
        fit.with(self, |q| {
            out.par_chunks_mut(grid * CHUNK)
                .enumerate()
                .for_each(|(c, part)| {
                    let lo = c * CHUNK;
                    let n = part.len() / grid;
                    let at = self.locate_all(|i| t[lo + i], &ids[lo..lo + n]);
                    q.posteriors(&|i| t[lo + i], &at, include_cell, part);
                });
        });
        Ok(out)
    }

    /// Each of `rows`' posterior without its own (step, prompt) cell, as `posterior` (held-out checks).
    pub fn held_out_posterior(&self, rows: &[i64]) -> Result<Vec<f64>> {
        self.check_rows(rows)?;
        let t: Vec<i64> = rows.iter().map(|&r| self.step[r as usize]).collect();
        let ids: Vec<i64> = rows
            .iter()
            .map(|&r| self.prompt_of(r as usize) as i64)
            .collect();
        self.posterior(&t, &ids, false)
    }

    /// (found, n_correct, n_rollouts) of the logged group of each id at relative step t; a cell
    /// logged more than once gives its group number seed mod count, in the log's row order.
    pub fn lookup(&self, t: i64, ids: &[i64], seed: u64) -> (Vec<bool>, Vec<i64>, Vec<i64>) {
        let at = self.locate_all(|_| t, ids);
        let mut found = Vec::with_capacity(ids.len());
        let (mut nc, mut nr) = (Vec::with_capacity(ids.len()), Vec::with_capacity(ids.len()));
        for w in &at {
            let (n, c) = self.logged(w, seed).unwrap_or((0, 0));
            found.push(w.after > w.at_or_after);
            nc.push(c);
            nr.push(n);
        }
        (found, nc, nr)
    }

    fn logged(&self, w: &Where, seed: u64) -> Option<(i64, i64)> {
        let count = (w.after - w.at_or_after) as u64;
        (count > 0).then(|| self.group(w.at_or_after + (seed % count) as usize))
    }

    /// A success rate per id at relative step t: the posterior's u-quantile, u from the dice of
    /// (draw_seed, 0, id) (fixed per prompt for a replay), or the posterior mean.
    pub fn draw(&self, t: i64, ids: &[i64], draw_seed: u64, mean: bool) -> Result<Vec<f64>> {
        let fit = self.fitted()?;
        let grid = fit.model.grid();
        let mut out = Vec::with_capacity(ids.len());
        let mut post = vec![0.0f64; CHUNK * grid];
        fit.with(self, |q| {
            for chunk in ids.chunks(CHUNK) {
                let at = self.locate_all(|_| t, chunk);
                let post = &mut post[..chunk.len() * grid];
                q.posteriors(&|_| t, &at, true, post);
                for (w, &id) in post.chunks_exact(grid).zip(chunk) {
                    out.push(fit.model.pick(w, id, draw_seed, mean));
                }
            }
        });
        Ok(out)
    }

    /// One replay step's groups: the logged group where the log holds (t, id), else k responses
    /// drawn with the dice of (seed, t, id) at a success rate drawn as by `draw`.
    pub fn rollout(
        &self,
        t: i64,
        ids: &[i64],
        seed: u64,
        k: u64,
        draw_seed: u64,
        mean: bool,
    ) -> Result<(Vec<i64>, Vec<i64>)> {
        if t < 0 {
            return invalid(format!("step {t} is before the log's first"));
        }
        let fit = self.fitted()?;
        let grid = fit.model.grid();
        let (mut nc, mut nr) = (vec![0i64; ids.len()], vec![k as i64; ids.len()]);
        let mut post = vec![0.0f64; CHUNK * grid];
        fit.with(self, |q| {
            for (c, chunk) in ids.chunks(CHUNK).enumerate() {
                let mut at = self.locate_all(|_| t, chunk);
                let mut unlogged = Vec::with_capacity(chunk.len());
                for (i, w) in at.iter().enumerate() {
                    match self.logged(w, seed) {
                        Some((n, correct)) => (nr[c * CHUNK + i], nc[c * CHUNK + i]) = (n, correct),
                        None => unlogged.push(i),
                    }
                }
                at = unlogged.iter().map(|&i| at[i]).collect();
                let post = &mut post[..at.len() * grid];
                q.posteriors(&|_| t, &at, true, post);
                for (w, &i) in post.chunks_exact(grid).zip(&unlogged) {
                    let id = chunk[i];
                    let p = fit.model.pick(w, id, draw_seed, mean);
                    nc[c * CHUNK + i] = Dice::new(seed, t as u64, id).correct(p, k);
                }
            }
        });
        Ok((nc, nr))
    }
}

/// Queries handled together (their memory asked for at once, their recomputation interleaved).
const CHUNK: usize = 512;

impl Model {
    /// The posterior's u-quantile on the grid (numpy: the count of cumulative sums below u), or its mean.
    fn pick(&self, w: &[f64], id: i64, draw_seed: u64, mean: bool) -> f64 {
        if mean {
            return w.iter().zip(&self.p_grid).map(|(a, b)| a * b).sum();
        }
        let u = Dice::new(draw_seed, 0, id).uniform(1);
        let mut total = 0.0;
        let mut below = 0;
        for &x in w {
            total += x;
            below += usize::from(total < u);
        }
        self.p_grid[below.min(self.grid() - 1)]
    }
}

pub(super) struct Query<'a, M> {
    pub(super) model: &'a Model,
    pub(super) pass: &'a Pass<'a>,
    pub(super) kept: &'a Checkpoints<M>,
}

/// Work space of one posterior.
struct Scratch {
    x: Vec<f64>,
    y: Vec<f64>,
}

pub(super) trait Queries: Sync {
    fn forward_at(&self, row: usize, lo: usize, m: &mut [f32]);
    fn backward_at(&self, row: usize, hi: usize, m: &mut [f32]);
    /// The posteriors of the queries located by `at` (at relative steps t(i)) into `out` (n x grid).
    fn posteriors(
        &self,
        t: &dyn Fn(usize) -> i64,
        at: &[Where],
        include_cell: bool,
        out: &mut [f64],
    );
}

impl<M: Message> Query<'_, M> {
    /// The posterior of p at relative step t from the prompt's forward message before it (`fwd`:
    /// its row and message) and backward message after it (`bwd`), in numpy's order of operations.
    fn combine(
        &self,
        t: i64,
        fwd: Option<(usize, &[f32])>,
        bwd: Option<(usize, &[f32])>,
        out: &mut [f64],
        scratch: &mut Scratch,
    ) {
        let (grid, dynamics) = (self.model.grid(), self.model.dynamics());
        out.copy_from_slice(dynamics.prior.at(t as f64, grid));
        let Scratch { x, y } = scratch;
        if let Some((row, m)) = fwd {
            for (a, &b) in x.iter_mut().zip(m) {
                *a = b as f64;
            }
            let total = pairwise_sum(x);
            if dynamics.rate == 0.0 {
                for (o, &a) in out.iter_mut().zip(x.iter()) {
                    *o = a / total;
                }
            } else {
                let s = self.pass.rows.step[row];
                let stay = dynamics.stay((t - s) as f64);
                let (redraw, g) = redraw(&dynamics, s, t, grid);
                for ((o, &a), &g) in out.iter_mut().zip(x.iter()).zip(g) {
                    *o = stay * (a / total) + redraw * g;
                }
            }
        }
        if let Some((row, m)) = bwd {
            for (a, &b) in x.iter_mut().zip(m) {
                *a = b as f64;
            }
            if dynamics.rate != 0.0 {
                let s = self.pass.rows.step[row];
                let stay = dynamics.stay((s - t) as f64);
                let (redraw, g) = redraw(&dynamics, t, s, grid);
                for ((v, &a), &g) in y.iter_mut().zip(x.iter()).zip(g) {
                    *v = redraw * g * a;
                }
                let carried = pairwise_sum(y);
                for a in x.iter_mut() {
                    *a = stay * *a + carried;
                }
            }
            for (o, &b) in out.iter_mut().zip(x.iter()) {
                *o *= b;
            }
        }
        let total = pairwise_sum(out);
        for o in out.iter_mut() {
            *o /= total;
        }
    }
}

/// (1 - stay over the gap, g at the expected step of the last redraw) between steps s < t.
fn redraw<'a>(dynamics: &'a Switching<'a>, s: i64, t: i64, grid: usize) -> (f64, &'a [f64]) {
    let gap = (t - s) as f64;
    (
        1.0 - dynamics.stay(gap),
        dynamics.redraw_prior(s as f64, t as f64, grid),
    )
}

impl<M: Message> Queries for Query<'_, M> {
    fn forward_at(&self, row: usize, lo: usize, m: &mut [f32]) {
        self.kept.forward_at(self.pass, row, lo, m);
    }

    fn backward_at(&self, row: usize, hi: usize, m: &mut [f32]) {
        self.kept.backward_at(self.pass, row, hi, m);
    }

    fn posteriors(
        &self,
        t: &dyn Fn(usize) -> i64,
        at: &[Where],
        include_cell: bool,
        out: &mut [f64],
    ) {
        let grid = self.model.grid();
        let forward: Vec<Option<(usize, usize)>> = at
            .iter()
            .map(|w| {
                let prev = if include_cell { w.after } else { w.at_or_after };
                (prev > w.lo).then(|| (prev - 1, w.lo))
            })
            .collect();
        let backward: Vec<Option<(usize, usize)>> = at
            .iter()
            .map(|w| (w.after < w.hi).then_some((w.after, w.hi)))
            .collect();
        for (f, b) in forward.iter().zip(&backward) {
            let f = f.and_then(|(row, lo)| self.kept.forward_slot(row, lo));
            let b = b.and_then(|(row, hi)| self.kept.backward_slot(row, hi));
            self.kept.prefetch(f, b, grid);
        }
        let (mut mf, mut mb) = (vec![0.0f32; at.len() * grid], vec![0.0f32; at.len() * grid]);
        self.kept
            .messages_at(self.pass, &forward, &backward, &mut mf, &mut mb);
        let mut scratch = Scratch {
            x: vec![0.0; grid],
            y: vec![0.0; grid],
        };
        for (i, w) in out.chunks_exact_mut(grid).enumerate() {
            let f = forward[i].map(|(row, _)| (row, &mf[i * grid..(i + 1) * grid]));
            let b = backward[i].map(|(row, _)| (row, &mb[i * grid..(i + 1) * grid]));
            self.combine(t(i), f, b, w, &mut scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{built, small};
    use super::*;

    #[test]
    fn lookups_return_the_logged_group_and_a_repeated_cell_by_seed() {
        let mut log = small();
        built(&mut log, 0.0, 2);
        let (found, nc, nr) = log.lookup(2, &[0, 1, 2, 9], 1);
        assert_eq!(found, [true, false, false, false]);
        assert_eq!((nc[0], nr[0]), (0, 8)); // seed 1: the second group at step 5
        assert_eq!(log.lookup(2, &[0], 2).1[0], 1);
        let (c, n) = log.rollout(2, &[0, 1, 2], 0, 8, 0, false).unwrap();
        assert_eq!((c[0], n[0]), (1, 8));
        assert!(n[1] == 8 && n[2] == 8 && c[1] <= 8);
    }

    #[test]
    fn posteriors_are_distributions_and_follow_the_evidence() {
        let mut log = small();
        built(&mut log, 0.05, 1);
        let post = log.posterior(&[1, 1, 1], &[0, 1, 2], true).unwrap();
        for w in post.chunks(4) {
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        assert_eq!(&post[4..8], &[0.25; 4]); // no rows: the prior
        assert!(post[11] > 0.9); // prompt 2 solved 8 of 8 at this step
        let held = log.held_out_posterior(&[3]).unwrap();
        assert_eq!(held, &post[4..8]); // without its only cell, prompt 2 is the prior again
    }

    #[test]
    fn draws_follow_the_dice_and_checkpoints_change_nothing() {
        let mut log = small();
        built(&mut log, 0.05, 1);
        let ids: Vec<i64> = (0..3).collect();
        let one = log.rollout(7, &ids, 3, 16, 11, false).unwrap();
        let p1 = log.draw(7, &ids, 11, false).unwrap();
        built(&mut log, 0.05, 2);
        assert_eq!(log.rollout(7, &ids, 3, 16, 11, false).unwrap(), one);
        assert_eq!(log.draw(7, &ids, 11, false).unwrap(), p1);
        let d = Dice::new(3, 7, 2);
        let want = (1..=16).filter(|&j| d.uniform(j) < p1[2]).count() as i64;
        assert_eq!(one.0[2], want);
    }

    #[test]
    fn a_log_without_its_model_is_refused() {
        assert!(small().rollout(0, &[0], 0, 8, 0, false).is_err());
    }
}
