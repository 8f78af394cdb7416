//! The log world's rows and its queries (python/dps/replay/logworld.py): a rollout log's groups
//! sorted by (prompt, step), the per-prompt messages of rust/messages.rs over them, and what a
//! replay asks at each step: the logged group where the log holds the cell, else the posterior
//! of the prompt's success rate there, a draw from it, and a group drawn with common random
//! numbers.
//!
//! The floating-point operations follow the numpy implementation they replaced in the same
//! order (sums of a grid row pairwise in blocks of eight, as numpy sums), so a replay's outcomes
//! are the ones the numpy code drew.

use std::collections::HashMap;

use std::io::{Read, Write};
use std::path::Path;

use rayon::prelude::*;

use crate::error::{invalid, Result};
use crate::messages::{
    checkpoints, prefetch, prefetch_range, Checkpoints, Message, Pass, PriorTable, Rows, Switching,
};

// --------------------------------------------------------------------------------------------
// Common random numbers

const M1: u64 = 0xBF58_476D_1CE4_E5B9;
const M2: u64 = 0x94D0_49BB_1331_11EB;
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 finaliser (without its increment).
#[inline]
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(M1);
    x = (x ^ (x >> 27)).wrapping_mul(M2);
    x ^ (x >> 31)
}

/// Uniforms in [0, 1) that are a pure function of (seed, step, prompt id, j), j = 1..: the j-th
/// response of a prompt at a step, for every policy alike (dps.replay.worlds.hashed_uniforms).
#[derive(Clone, Copy)]
pub struct Dice {
    prompt_hash: u64,
}

impl Dice {
    #[inline]
    pub fn new(seed: u64, step: u64, id: i64) -> Self {
        let s = mix(seed.wrapping_add(GOLDEN));
        let s = mix(s ^ step.wrapping_mul(GOLDEN).wrapping_add(1));
        Dice {
            prompt_hash: mix(s ^ (id as u64).wrapping_mul(M1).wrapping_add(GOLDEN)),
        }
    }

    /// The j-th uniform (j >= 1).
    #[inline]
    pub fn uniform(&self, j: u64) -> f64 {
        let u = mix(self.prompt_hash.wrapping_add(j.wrapping_mul(M2)));
        (u >> 11) as f64 * (1.0 / 9007199254740992.0)
    }

    /// Correct responses among k, each correct with probability p.
    #[inline]
    pub fn correct(&self, p: f64, k: u64) -> i64 {
        (1..=k).filter(|&j| self.uniform(j) < p).count() as i64
    }
}

/// Binomial(k, p[i]) for each ids[i], with the dice of (seed, step, ids[i]).
pub fn draw_correct(seed: u64, step: u64, ids: &[i64], p: &[f64], k: u64) -> Result<Vec<i64>> {
    if ids.len() != p.len() {
        return invalid(format!("{} ids but {} success rates", ids.len(), p.len()));
    }
    Ok(ids
        .iter()
        .zip(p)
        .map(|(&id, &q)| Dice::new(seed, step, id).correct(q, k))
        .collect())
}

// --------------------------------------------------------------------------------------------
// Sums as numpy sums a contiguous row

/// numpy's pairwise summation: blocks of up to 128 summed in eight interleaved lanes.
fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        return a.iter().fold(0.0, |s, &x| s + x);
    }
    if n > 128 {
        let half = n / 2;
        let half = half - half % 8;
        return pairwise_sum(&a[..half]) + pairwise_sum(&a[half..]);
    }
    let mut r = [0.0f64; 8];
    r.copy_from_slice(&a[..8]);
    let whole = n - n % 8;
    for chunk in a[8..whole].chunks_exact(8) {
        for (x, &y) in r.iter_mut().zip(chunk) {
            *x += y;
        }
    }
    let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for &x in &a[whole..] {
        res += x;
    }
    res
}

// --------------------------------------------------------------------------------------------
// The rows

/// A log's groups sorted by (prompt, step), a repeated cell in the log's row order.
pub struct LogRows {
    /// Steps relative to `origin` (the log's first step).
    step: Vec<i64>,
    /// Prompt i owns rows offsets[i]..offsets[i + 1] (ids up to the largest logged one).
    offsets: Vec<i64>,
    /// The distinct (n_rollouts, n_correct) of the log, ascending, and each row's.
    pairs: Vec<(i64, i64)>,
    pair_index: Vec<u32>,
    fit: Option<Fit>,
}

/// Distinct (n, c) pairs in ascending order, and the index of each row's, for rows given by `order`.
fn index_pairs(order: &[u32], nc: &[i64], nr: &[i64]) -> (Vec<(i64, i64)>, Vec<u32>) {
    let top = nr.iter().copied().max().unwrap_or(0);
    if top < 1024 {
        // A table over (n, c): mark the pairs seen, number them in order, look each row up.
        let width = (top + 1) as usize;
        let cell = |r: usize| nr[r] as usize * width + nc[r] as usize;
        let mut table = vec![u32::MAX; width * width];
        for r in 0..nr.len() {
            table[cell(r)] = 0;
        }
        let mut pairs = Vec::new();
        for (k, slot) in table.iter_mut().enumerate() {
            if *slot == 0 {
                *slot = pairs.len() as u32;
                pairs.push(((k / width) as i64, (k % width) as i64));
            }
        }
        let index = order.par_iter().map(|&r| table[cell(r as usize)]).collect();
        return (pairs, index);
    }
    let mut pairs: Vec<(i64, i64)> = nr
        .iter()
        .zip(nc)
        .map(|(&n, &c)| (n, c))
        .collect::<std::collections::HashSet<_>>()
        .into_iter()
        .collect();
    pairs.sort_unstable();
    let rank: HashMap<(i64, i64), u32> = pairs
        .iter()
        .enumerate()
        .map(|(i, &p)| (p, i as u32))
        .collect();
    let index = order
        .par_iter()
        .map(|&r| rank[&(nr[r as usize], nc[r as usize])])
        .collect();
    (pairs, index)
}

impl LogRows {
    /// The groups (step, prompt_id, n_correct, n_rollouts) in any order, steps kept relative to
    /// `origin`; prompt ids >= 0.
    pub fn new(step: &[i64], pid: &[i64], nc: &[i64], nr: &[i64], origin: i64) -> Result<LogRows> {
        let n = step.len();
        if pid.len() != n || nc.len() != n || nr.len() != n {
            return invalid(format!(
                "the log's columns differ in length: {n} steps, {} prompt ids, {} n_correct, {} n_rollouts",
                pid.len(),
                nc.len(),
                nr.len()
            ));
        }
        if n >= u32::MAX as usize {
            return invalid(format!("{n} rows: at most 2^32 - 1 groups"));
        }
        if let Some(&p) = pid.iter().find(|&&p| p < 0) {
            return invalid(format!("prompt ids must be >= 0, found {p}"));
        }
        if let Some(i) = (0..n).find(|&i| nr[i] < 1 || nc[i] < 0 || nc[i] > nr[i]) {
            return invalid(format!(
                "a group needs n_rollouts >= 1 and 0 <= n_correct <= n_rollouts, found {} of {}",
                nc[i], nr[i]
            ));
        }
        let prompts = pid.iter().copied().max().map_or(0, |p| p as usize + 1);
        // Counting sort by prompt (stable: the log's row order within a prompt) ...
        let mut offsets = vec![0i64; prompts + 1];
        for &p in pid {
            offsets[p as usize + 1] += 1;
        }
        for i in 0..prompts {
            offsets[i + 1] += offsets[i];
        }
        let mut cursor: Vec<usize> = offsets[..prompts].iter().map(|&o| o as usize).collect();
        let mut order = vec![0u32; n];
        for (row, &p) in pid.iter().enumerate() {
            order[cursor[p as usize]] = row as u32;
            cursor[p as usize] += 1;
        }
        drop(cursor);
        // ... then by step within each prompt where the log was not in step order.
        let relative = |r: u32| step[r as usize] - origin;
        let mut sorted_step: Vec<i64> = order.par_iter().map(|&r| relative(r)).collect();
        for w in offsets.windows(2) {
            let (a, b) = (w[0] as usize, w[1] as usize);
            if sorted_step[a..b].windows(2).any(|x| x[0] > x[1]) {
                order[a..b].sort_by_key(|&r| step[r as usize]); // stable
                for (s, &r) in sorted_step[a..b].iter_mut().zip(&order[a..b]) {
                    *s = relative(r);
                }
            }
        }
        let (pairs, pair_index) = index_pairs(&order, nc, nr);
        Ok(LogRows {
            step: sorted_step,
            offsets,
            pairs,
            pair_index,
            fit: None,
        })
    }

    pub fn rows(&self) -> usize {
        self.step.len()
    }

    /// Prompt ids covered by `offsets` (the largest logged id + 1).
    pub fn prompts(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn steps(&self) -> &[i64] {
        &self.step
    }

    pub fn offsets(&self) -> &[i64] {
        &self.offsets
    }

    pub fn pairs(&self) -> &[(i64, i64)] {
        &self.pairs
    }

    pub fn pair_index(&self) -> &[u32] {
        &self.pair_index
    }

    pub fn group(&self, row: usize) -> (i64, i64) {
        self.pairs[self.pair_index[row] as usize]
    }

    /// The prompt owning `row`.
    pub fn prompt_of(&self, row: usize) -> usize {
        self.offsets.partition_point(|&o| o <= row as i64) - 1
    }

    /// (relative step, prompt id, n_rollouts, n_correct) of each of `rows`.
    #[allow(clippy::type_complexity)]
    pub fn row_info(&self, rows: &[i64]) -> Result<(Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>)> {
        self.check_rows(rows)?;
        let mut out = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for &r in rows {
            let r = r as usize;
            let (n, c) = self.group(r);
            out.0.push(self.step[r]);
            out.1.push(self.prompt_of(r) as i64);
            out.2.push(n);
            out.3.push(c);
        }
        Ok(out)
    }

    fn check_rows(&self, rows: &[i64]) -> Result<()> {
        match rows.iter().find(|&&r| r < 0 || r as usize >= self.rows()) {
            Some(r) => invalid(format!("row {r} is outside [0, {})", self.rows())),
            None => Ok(()),
        }
    }

    /// The rows of `prompts` (ascending, distinct ids), as a log of their own (same ids, same pairs).
    pub fn subset(&self, prompts: &[i64]) -> Result<LogRows> {
        if prompts.windows(2).any(|w| w[0] >= w[1]) {
            return invalid("subset: prompt ids must be ascending and distinct");
        }
        if let Some(&p) = prompts
            .iter()
            .find(|&&p| p < 0 || p as usize >= self.prompts())
        {
            return invalid(format!(
                "subset: prompt id {p} is outside [0, {})",
                self.prompts()
            ));
        }
        let top = prompts.last().map_or(0, |&p| p as usize + 1);
        let mut offsets = vec![0i64; top + 1];
        let (mut step, mut pair_index) = (Vec::new(), Vec::new());
        let mut next = prompts.iter().peekable();
        for (i, slot) in offsets[1..].iter_mut().enumerate() {
            if next.peek() == Some(&&(i as i64)) {
                next.next();
                let (a, b) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
                step.extend_from_slice(&self.step[a..b]);
                pair_index.extend_from_slice(&self.pair_index[a..b]);
            }
            *slot = step.len() as i64;
        }
        Ok(LogRows {
            step,
            offsets,
            pairs: self.pairs.clone(),
            pair_index,
            fit: None,
        })
    }

    /// Per query (t[i], ids[i]): the prompt's rows lo..hi and within them the first row at a
    /// step >= t and the first at a step > t. Ids outside the log own no rows. Memory is asked for
    /// in stages over the whole batch (offsets, then rows), so that the cache misses of different
    /// queries overlap.
    fn locate_all(&self, t: impl Fn(usize) -> i64, ids: &[i64]) -> Vec<Where> {
        let prompts = self.prompts() as i64;
        let inside = |id: i64| (0..prompts).contains(&id);
        for &id in ids.iter().filter(|&&id| inside(id)) {
            prefetch(&self.offsets[id as usize]);
        }
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let mut w = Where::default();
            if inside(id) {
                let p = id as usize;
                (w.lo, w.hi) = (self.offsets[p] as usize, self.offsets[p + 1] as usize);
                if w.hi > w.lo {
                    prefetch_range(&self.step[w.lo..w.hi]);
                    prefetch(&self.pair_index[w.lo]);
                }
            }
            out.push(w);
        }
        for (i, w) in out.iter_mut().enumerate() {
            let (t, steps) = (t(i), &self.step[w.lo..w.hi]);
            w.at_or_after = w.lo + steps.partition_point(|&s| s < t);
            w.after = w.at_or_after + self.step[w.at_or_after..w.hi].partition_point(|&s| s <= t);
        }
        out
    }

    /// Fit the model: keep the messages (float16 or float32) at every `every`-th row.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        &mut self,
        emission: Vec<f32>,
        prior: Vec<f64>,
        prior_start: f64,
        prior_scale: f64,
        rate: f64,
        floor: f32,
        p_grid: Vec<f64>,
        float16: bool,
        every: usize,
    ) -> Result<()> {
        let grid = p_grid.len();
        if grid == 0 || emission.len() != self.pairs.len() * grid {
            return invalid(format!(
                "the emission table needs {} rows (one per distinct (n_rollouts, n_correct)) of the grid of {grid}",
                self.pairs.len()
            ));
        }
        if prior.is_empty() || !prior.len().is_multiple_of(grid) {
            return invalid(format!(
                "the prior table needs whole rows of the grid of {grid}"
            ));
        }
        let model = Model {
            grid,
            rate,
            prior,
            prior_start,
            prior_scale,
            floor,
            emission,
            p_grid,
        };
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

    fn fitted(&self) -> Result<&Fit> {
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
        let grid = fit.model.grid;
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

    /// Posterior weights over the grid of p at relative step t[i] of prompt ids[i] (n x grid),
    /// the cell (t, id) itself included as evidence or not.
    pub fn posterior(&self, t: &[i64], ids: &[i64], include_cell: bool) -> Result<Vec<f64>> {
        if t.len() != ids.len() {
            return invalid(format!("{} steps but {} prompt ids", t.len(), ids.len()));
        }
        let fit = self.fitted()?;
        let grid = fit.model.grid;
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
        let grid = fit.model.grid;
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
        let grid = fit.model.grid;
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

#[derive(Default, Clone, Copy)]
struct Where {
    lo: usize,
    at_or_after: usize,
    after: usize,
    hi: usize,
}

/// The fitted model: the dynamics, the emission table and the grid.
struct Model {
    grid: usize,
    rate: f64,
    prior: Vec<f64>,
    prior_start: f64,
    prior_scale: f64,
    floor: f32,
    emission: Vec<f32>,
    p_grid: Vec<f64>,
}

impl Model {
    fn rows<'a>(&'a self, log: &'a LogRows) -> Rows<'a> {
        Rows {
            step: &log.step,
            offsets: &log.offsets,
            emission: &self.emission,
            emission_index: &log.pair_index,
        }
    }

    fn dynamics(&self) -> Switching<'_> {
        Switching {
            rate: self.rate,
            prior: PriorTable {
                start: self.prior_start,
                scale: self.prior_scale,
                dense: &self.prior,
            },
        }
    }

    fn pass<'a>(&'a self, rows: &'a Rows<'a>, dynamics: &'a Switching<'a>) -> Pass<'a> {
        Pass {
            rows,
            dynamics,
            grid: self.grid,
            floor: self.floor,
        }
    }

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
        self.p_grid[below.min(self.grid - 1)]
    }
}

enum Stored {
    F16(Checkpoints<half::f16>),
    F32(Checkpoints<f32>),
}

struct Fit {
    model: Model,
    stored: Stored,
}

impl Fit {
    /// Run `f` with a query object over the stored messages, whichever their precision.
    fn with<R>(&self, log: &LogRows, f: impl FnOnce(&dyn Queries) -> R) -> R {
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

struct Query<'a, M> {
    model: &'a Model,
    pass: &'a Pass<'a>,
    kept: &'a Checkpoints<M>,
}

/// Work space of one posterior.
struct Scratch {
    x: Vec<f64>,
    y: Vec<f64>,
}

trait Queries: Sync {
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
        let (grid, dynamics) = (self.model.grid, self.model.dynamics());
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
        let grid = self.model.grid;
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

// --------------------------------------------------------------------------------------------
// A fitted log saved to a file and loaded back (a sweep hands its world to worker processes)

const MAGIC: &[u8; 8] = b"DPSLOGW1";

/// Plain numbers as little-endian bytes.
trait Word: Copy + Default {
    const SIZE: usize;
    fn put(self, out: &mut Vec<u8>);
    fn get(bytes: &[u8]) -> Self;
}

macro_rules! word {
    ($($t:ty),*) => {$(
        impl Word for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("a whole word"))
            }
        }
    )*};
}
word!(i64, u64, u32, u16, f64, f32);

impl Word for half::f16 {
    const SIZE: usize = 2;
    fn put(self, out: &mut Vec<u8>) {
        self.to_bits().put(out);
    }
    fn get(bytes: &[u8]) -> Self {
        half::f16::from_bits(u16::get(bytes))
    }
}

struct Writer<W: Write> {
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> Writer<W> {
    /// The length, then the values.
    fn words<T: Word>(&mut self, xs: &[T]) -> std::io::Result<()> {
        (xs.len() as u64).put(&mut self.buf);
        for chunk in xs.chunks(1 << 14) {
            for &x in chunk {
                x.put(&mut self.buf);
            }
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

struct Reader<R: Read> {
    input: R,
    buf: Vec<u8>,
}

impl<R: Read> Reader<R> {
    /// What `Writer::words` wrote: at most `at_most` values (a bound from the file's size).
    fn words<T: Word>(&mut self, at_most: usize) -> std::io::Result<Vec<T>> {
        let n = self.one::<u64>()? as usize;
        if n > at_most {
            return Err(std::io::Error::other(format!(
                "an array of {n} values where at most {at_most} fit"
            )));
        }
        let mut out = Vec::with_capacity(n);
        let mut left = n;
        while left > 0 {
            let take = left.min(1 << 14);
            self.buf.resize(take * T::SIZE, 0);
            self.input.read_exact(&mut self.buf)?;
            out.extend(self.buf.chunks_exact(T::SIZE).map(T::get));
            left -= take;
        }
        Ok(out)
    }

    fn one<T: Word>(&mut self) -> std::io::Result<T> {
        self.buf.resize(T::SIZE, 0);
        self.input.read_exact(&mut self.buf)?;
        Ok(T::get(&self.buf))
    }
}

impl LogRows {
    /// Write the rows and, when built, the model and its kept messages to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.write(path)
            .or_else(|e| invalid(format!("{}: {e}", path.display())))
    }

    fn write(&self, path: &Path) -> std::io::Result<()> {
        let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
        let mut w = Writer {
            out: file,
            buf: Vec::new(),
        };
        w.out.write_all(MAGIC)?;
        w.words(&self.step)?;
        w.words(&self.offsets)?;
        let flat: Vec<i64> = self.pairs.iter().flat_map(|&(n, c)| [n, c]).collect();
        w.words(&flat)?;
        w.words(&self.pair_index)?;
        match &self.fit {
            Some(fit) => {
                let m = &fit.model;
                let head = [
                    m.grid as u64,
                    m.rate.to_bits(),
                    m.prior_start.to_bits(),
                    m.prior_scale.to_bits(),
                ];
                w.words(&head)?;
                w.words(&[m.floor])?;
                w.words(&m.prior)?;
                w.words(&m.emission)?;
                w.words(&m.p_grid)?;
                match &fit.stored {
                    Stored::F16(c) => {
                        w.words(&[16u64, c.every as u64])?;
                        w.words(&c.forward)?;
                        w.words(&c.backward)?;
                    }
                    Stored::F32(c) => {
                        w.words(&[32u64, c.every as u64])?;
                        w.words(&c.forward)?;
                        w.words(&c.backward)?;
                    }
                }
            }
            None => w.words::<u64>(&[])?,
        }
        w.out.flush()
    }

    /// A log written by `save`, checked as `new` and `build` check theirs.
    pub fn load(path: &Path) -> Result<LogRows> {
        let log = Self::read(path).or_else(|e| invalid(format!("{}: {e}", path.display())))?;
        log.check_loaded()
            .or_else(|e| invalid(format!("{}: {e}", path.display())))?;
        Ok(log)
    }

    fn read(path: &Path) -> std::io::Result<LogRows> {
        let file = std::fs::File::open(path)?;
        let size = file.metadata()?.len() as usize;
        let mut r = Reader {
            input: std::io::BufReader::with_capacity(1 << 20, file),
            buf: Vec::new(),
        };
        let mut magic = [0u8; 8];
        r.input.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(std::io::Error::other(
                "not a saved log world (wrong header)",
            ));
        }
        let step = r.words::<i64>(size / 8)?;
        let offsets = r.words::<i64>(size / 8)?;
        let flat = r.words::<i64>(size / 8)?;
        let pairs = flat.chunks_exact(2).map(|p| (p[0], p[1])).collect();
        let pair_index = r.words::<u32>(size / 4)?;
        let head = r.words::<u64>(4)?;
        let mut log = LogRows {
            step,
            offsets,
            pairs,
            pair_index,
            fit: None,
        };
        if head.len() != 4 {
            return Ok(log);
        }
        let floor = r.words::<f32>(1)?;
        let model = Model {
            grid: head[0] as usize,
            rate: f64::from_bits(head[1]),
            prior_start: f64::from_bits(head[2]),
            prior_scale: f64::from_bits(head[3]),
            floor: floor.first().copied().unwrap_or(0.0),
            prior: r.words(size / 8)?,
            emission: r.words(size / 4)?,
            p_grid: r.words(size / 8)?,
        };
        let kind = r.words::<u64>(2)?;
        let every = kind.get(1).copied().unwrap_or(0) as usize;
        let stored = match kind.first() {
            Some(16) => Stored::F16(Checkpoints {
                every,
                forward: r.words(size / 2)?,
                backward: r.words(size / 2)?,
            }),
            Some(32) => Stored::F32(Checkpoints {
                every,
                forward: r.words(size / 4)?,
                backward: r.words(size / 4)?,
            }),
            _ => return Err(std::io::Error::other("unknown message precision")),
        };
        log.fit = Some(Fit { model, stored });
        Ok(log)
    }

    /// The invariants `new` and `build` establish, for a log read from a file.
    fn check_loaded(&self) -> Result<()> {
        let n = self.rows();
        let ok = self.offsets.first() == Some(&0)
            && self.offsets.last() == Some(&(n as i64))
            && self.offsets.windows(2).all(|w| w[0] <= w[1]);
        if !ok {
            return invalid("offsets must rise from 0 to the number of rows");
        }
        if self.pair_index.len() != n
            || self
                .pair_index
                .iter()
                .any(|&i| i as usize >= self.pairs.len())
        {
            return invalid("a row's (n_rollouts, n_correct) index is missing or out of range");
        }
        let Some(fit) = &self.fit else {
            return Ok(());
        };
        let m = &fit.model;
        let grid = m.grid;
        let shapes = grid > 0
            && m.p_grid.len() == grid
            && m.emission.len() == self.pairs.len() * grid
            && !m.prior.is_empty()
            && m.prior.len().is_multiple_of(grid)
            && (0.0..1.0).contains(&m.rate);
        if !shapes {
            return invalid("the model's tables do not fit its grid");
        }
        let (every, f, b) = match &fit.stored {
            Stored::F16(c) => (c.every, c.forward.len(), c.backward.len()),
            Stored::F32(c) => (c.every, c.forward.len(), c.backward.len()),
        };
        if every == 0 || f != n / every * grid || b != n.div_ceil(every) * grid {
            return invalid("the kept messages do not fit the rows");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prompt 0: steps 5, 3 (out of order), 5 again; prompt 1 none; prompt 2: step 4.
    fn small() -> LogRows {
        LogRows::new(
            &[5, 3, 4, 5],
            &[0, 0, 2, 0],
            &[1, 2, 8, 0],
            &[8, 8, 8, 8],
            3,
        )
        .unwrap()
    }

    fn built(log: &mut LogRows, rate: f64, every: usize) {
        let grid = 4;
        let p_grid = vec![0.1, 0.4, 0.6, 0.9];
        let emission: Vec<f32> = log
            .pairs()
            .iter()
            .flat_map(|&(n, c)| {
                let l: Vec<f64> = p_grid
                    .iter()
                    .map(|p: &f64| p.powi(c as i32) * (1.0 - p).powi((n - c) as i32))
                    .collect();
                let top = l.iter().copied().fold(0.0, f64::max);
                l.into_iter().map(move |x| (x / top) as f32)
            })
            .collect();
        let prior = vec![0.25; grid * 2];
        log.build(emission, prior, 0.0, 0.1, rate, 1e-6, p_grid, false, every)
            .unwrap();
    }

    #[test]
    fn rows_sort_by_prompt_then_step_keeping_a_repeated_cell_in_log_order() {
        let log = small();
        assert_eq!(log.offsets(), &[0, 3, 3, 4]);
        assert_eq!(log.steps(), &[0, 2, 2, 1]); // relative to origin 3
        let groups: Vec<_> = (0..4).map(|r| log.group(r)).collect();
        assert_eq!(groups, [(8, 2), (8, 1), (8, 0), (8, 8)]);
        assert_eq!(log.pairs(), &[(8, 0), (8, 1), (8, 2), (8, 8)]);
        assert_eq!(log.prompt_of(3), 2);
        assert_eq!(log.prompt_of(0), 0);
    }

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
    fn pairwise_sum_is_numpys_order() {
        let a: Vec<f64> = (0..32).map(|i| 1.0 / (i as f64 + 1.0)).collect();
        let mut r = [0.0; 8];
        for (i, x) in a.iter().enumerate() {
            r[i % 8] += x;
        }
        let want = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        assert_eq!(pairwise_sum(&a), want);
        assert_eq!(pairwise_sum(&a[..5]), a[..5].iter().sum::<f64>());
    }

    #[test]
    fn a_saved_log_loads_back_and_a_damaged_one_is_an_error() {
        let mut log = small();
        built(&mut log, 0.05, 2);
        let dir = std::env::temp_dir().join(format!("dps-logworld-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rows.bin");
        log.save(&path).unwrap();
        let back = LogRows::load(&path).unwrap();
        let ids = [0, 1, 2];
        assert_eq!(
            back.rollout(4, &ids, 1, 8, 2, false).unwrap(),
            log.rollout(4, &ids, 1, 8, 2, false).unwrap()
        );
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(LogRows::load(&path).is_err());
        std::fs::write(&path, b"not a log").unwrap();
        assert!(LogRows::load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(LogRows::new(&[0], &[-1], &[0], &[8], 0).is_err());
        assert!(LogRows::new(&[0], &[0], &[9], &[8], 0).is_err());
        assert!(LogRows::new(&[0], &[0], &[0], &[0], 0).is_err());
        assert!(LogRows::new(&[0, 1], &[0], &[0], &[8], 0).is_err());
        let log = small();
        assert!(log.rollout(0, &[0], 0, 8, 0, false).is_err()); // not built
        assert!(log.subset(&[2, 0]).is_err());
        assert!(log.row_info(&[4]).is_err());
        assert_eq!(log.subset(&[2]).unwrap().steps(), &[1]);
    }
}
