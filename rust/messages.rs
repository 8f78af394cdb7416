//! The log world's per-prompt messages (python/dps/replay/logworld.py, `RowLog`): one forward and
//! one backward pass over each prompt's logged rows, on a grid of success rates, under switching
//! dynamics (a prompt's rate stays, or with probability `rate` per step is redrawn from the
//! population prior at that step).
//!
//! forward[j] is proportional to P(rate at row j, the prompt's rows up to j); backward[j] to
//! P(the prompt's rows from j on | rate at row j). Each is computed from its neighbour's stored
//! (rounded) value, scaled to a maximum of 1 and floored, so that rows the dynamics cannot
//! reconcile still leave a defined posterior. Prompts are independent and run in parallel.

use rayon::prelude::*;

use half::slice::HalfFloatSliceExt;

use crate::error::{invalid, Result};

/// A stored message value: f32, or f16 where memory matters more than the fourth digit.
/// Whole rows are converted at once (f16 by the CPU's conversion instructions where it has them).
pub trait Message: Copy + Send + Sync {
    fn load(src: &[Self], dst: &mut [f32]);
    fn store(src: &[f32], dst: &mut [Self]);
}

impl Message for f32 {
    fn load(src: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    fn store(src: &[f32], dst: &mut [Self]) {
        dst.copy_from_slice(src);
    }
}

impl Message for half::f16 {
    fn load(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }
    fn store(src: &[f32], dst: &mut [Self]) {
        dst.convert_from_f32_slice(src);
    }
}

/// The population prior tabulated at evenly spaced steps; a query takes the nearest point.
pub struct PriorTable<'a> {
    /// The step of the first point, and points per step.
    pub start: f64,
    pub scale: f64,
    /// points x grid, row-major.
    pub dense: &'a [f64],
}

/// The dynamics between two rows of a prompt.
pub struct Switching<'a> {
    pub rate: f64,
    pub prior: PriorTable<'a>,
}

impl Switching<'_> {
    fn stay(&self, gap: f64) -> f64 {
        (1.0 - self.rate).powf(gap)
    }

    /// The prior row a prompt redrawn between steps s < t is drawn from: g at the expected step
    /// of its last redraw (the middle of a short gap; 1 / rate - 1 back from t in a long one).
    fn redraw_prior(&self, s: f64, t: f64, grid: usize) -> &[f64] {
        let back = ((t - s - 1.0) / 2.0).min((1.0 - self.rate) / self.rate);
        let points = self.prior.dense.len() / grid;
        let i = ((t - back - self.prior.start) * self.prior.scale)
            .round_ties_even()
            .clamp(0.0, (points - 1) as f64) as usize;
        &self.prior.dense[i * grid..(i + 1) * grid]
    }

    fn prior_at(&self, t: f64, grid: usize) -> &[f64] {
        self.redraw_prior(t - 1.0, t, grid) // gap 1: no step back
    }
}

/// A log's rows, sorted by (prompt, step).
pub struct Rows<'a> {
    pub step: &'a [i64],
    /// Row ranges per prompt: prompt i owns rows offsets[i]..offsets[i + 1].
    pub offsets: &'a [i64],
    /// Distinct emissions x grid: the likelihood of each (n, c) on the grid, scaled to a maximum of 1.
    pub emission: &'a [f32],
    /// Each row's emission.
    pub emission_index: &'a [i64],
}

impl Rows<'_> {
    fn check(&self, grid: usize, prior_len: usize, out_len: usize) -> Result<()> {
        let n = self.step.len();
        if grid == 0
            || !self.emission.len().is_multiple_of(grid)
            || prior_len == 0
            || !prior_len.is_multiple_of(grid)
        {
            return invalid("the emission and prior tables need whole rows of the grid");
        }
        if self.emission_index.len() != n || out_len != n * grid {
            return invalid(format!(
                "{n} rows, but {} emission indices and {} message values for a grid of {grid}",
                self.emission_index.len(),
                out_len
            ));
        }
        let emissions = (self.emission.len() / grid) as i64;
        if self.emission_index.iter().any(|&e| e < 0 || e >= emissions) {
            return invalid(format!("an emission index is outside [0, {emissions})"));
        }
        let ok = self.offsets.first() == Some(&0)
            && self.offsets.last() == Some(&(n as i64))
            && self.offsets.windows(2).all(|w| w[0] <= w[1]);
        if !ok {
            return invalid("offsets must rise from 0 to the number of rows");
        }
        Ok(())
    }

    fn emission_of(&self, row: usize, grid: usize) -> &[f32] {
        let e = self.emission_index[row] as usize;
        &self.emission[e * grid..(e + 1) * grid]
    }
}

/// Multiply by the row's emission, scale to a maximum of 1, floor, store.
fn finish<M: Message>(m: &mut [f32], emission: &[f32], floor: f32, out: &mut [M]) {
    for (x, &e) in m.iter_mut().zip(emission) {
        *x *= e;
    }
    let top = m.iter().fold(0.0f32, |a, &b| a.max(b));
    let top = if top > 0.0 { top } else { f32::INFINITY };
    for x in m.iter_mut() {
        *x = (*x / top).max(floor);
    }
    M::store(m, out);
}

fn forward_prompt<M: Message>(
    rows: &Rows,
    first: usize,
    dyn_: &Switching,
    floor: f32,
    grid: usize,
    out: &mut [M],
) {
    let mut m = vec![0.0f32; grid];
    for r in 0..out.len() / grid {
        let row = first + r;
        let t = rows.step[row] as f64;
        if r == 0 {
            for (x, &g) in m.iter_mut().zip(dyn_.prior_at(t, grid)) {
                *x = g as f32;
            }
        } else {
            M::load(&out[(r - 1) * grid..r * grid], &mut m);
            let inv_total = 1.0 / m.iter().sum::<f32>();
            if dyn_.rate > 0.0 {
                let s = rows.step[row - 1] as f64;
                let stay = dyn_.stay(t - s);
                for (x, &g) in m.iter_mut().zip(dyn_.redraw_prior(s, t, grid)) {
                    *x = (stay * (*x * inv_total) as f64 + (1.0 - stay) * g) as f32;
                }
            } else {
                for x in m.iter_mut() {
                    *x *= inv_total;
                }
            }
        }
        finish(
            &mut m,
            rows.emission_of(row, grid),
            floor,
            &mut out[r * grid..(r + 1) * grid],
        );
    }
}

fn backward_prompt<M: Message>(
    rows: &Rows,
    first: usize,
    dyn_: &Switching,
    floor: f32,
    grid: usize,
    out: &mut [M],
) {
    let mut m = vec![0.0f32; grid];
    let n = out.len() / grid;
    for r in (0..n).rev() {
        let row = first + r;
        if r == n - 1 {
            m.fill(1.0);
        } else {
            M::load(&out[(r + 1) * grid..(r + 2) * grid], &mut m);
            if dyn_.rate > 0.0 {
                let (s, t) = (rows.step[row] as f64, rows.step[row + 1] as f64);
                let stay = dyn_.stay(t - s);
                let g = dyn_.redraw_prior(s, t, grid);
                let redrawn =
                    (1.0 - stay) * g.iter().zip(&m).map(|(a, &b)| a * b as f64).sum::<f64>();
                for x in m.iter_mut() {
                    *x = (stay * *x as f64 + redrawn) as f32;
                }
            }
        }
        finish(
            &mut m,
            rows.emission_of(row, grid),
            floor,
            &mut out[r * grid..(r + 1) * grid],
        );
    }
}

/// Rows per task handed to a thread (whole prompts).
const TASK_ROWS: usize = 1 << 16;

/// Writes every row's forward (or backward) message into `out` (rows x grid, row-major).
pub fn pass<M: Message>(
    rows: &Rows,
    dyn_: &Switching,
    grid: usize,
    forward: bool,
    floor: f32,
    out: &mut [M],
) -> Result<()> {
    rows.check(grid, dyn_.prior.dense.len(), out.len())?;
    if !(0.0..1.0).contains(&dyn_.rate) {
        return invalid(format!("switch rate must be in [0, 1), got {}", dyn_.rate));
    }
    // Split the prompts into tasks of about TASK_ROWS rows, each owning its rows' messages.
    let mut tasks: Vec<(&[i64], &mut [M])> = Vec::new();
    let (mut rest, mut p) = (out, 0usize);
    let offsets = rows.offsets;
    while p + 1 < offsets.len() {
        let lo = offsets[p];
        let mut q = p + 1;
        while q + 1 < offsets.len() && ((offsets[q] - lo) as usize) < TASK_ROWS {
            q += 1;
        }
        let (head, tail) =
            std::mem::take(&mut rest).split_at_mut((offsets[q] - lo) as usize * grid);
        tasks.push((&offsets[p..=q], head));
        rest = tail;
        p = q;
    }
    tasks.into_par_iter().for_each(|(bounds, part)| {
        let base = bounds[0] as usize;
        for w in bounds.windows(2) {
            let (a, b) = (w[0] as usize, w[1] as usize);
            let own = &mut part[(a - base) * grid..(b - base) * grid];
            if forward {
                forward_prompt(rows, a, dyn_, floor, grid, own);
            } else {
                backward_prompt(rows, a, dyn_, floor, grid, own);
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two prior points (steps 0 and 10) on a grid of two rates.
    const PRIOR: [f64; 4] = [0.1, 0.2, 0.3, 0.4];
    const EMISSION: [f32; 4] = [1.0, 0.5, 0.25, 1.0];

    fn run(
        rate: f64,
        forward: bool,
        step: &[i64],
        offsets: &[i64],
        index: &[i64],
    ) -> Result<Vec<f32>> {
        let rows = Rows {
            step,
            offsets,
            emission: &EMISSION,
            emission_index: index,
        };
        let dyn_ = Switching {
            rate,
            prior: PriorTable {
                start: 0.0,
                scale: 0.1,
                dense: &PRIOR,
            },
        };
        let mut out = vec![0.0f32; step.len() * 2];
        pass(&rows, &dyn_, 2, forward, 1e-6, &mut out)?;
        Ok(out)
    }

    #[test]
    fn a_stationary_prompt_multiplies_its_evidence() {
        // Prompt 0: rows at steps 0 and 3 with emissions 0 and 1; prompt 1 has none; prompt 2 one row.
        let out = run(0.0, true, &[0, 3, 7], &[0, 2, 2, 3], &[0, 1, 1]).unwrap();
        // Row 0: prior (0.1, 0.2) x (1, 0.5) = (0.1, 0.1) -> (1, 1). Row 1: (0.5, 0.5) x (0.25, 1) -> (0.25, 1).
        assert_eq!(out[..4], [1.0, 1.0, 0.25, 1.0]);
        // Step 7 is nearest point 1 of the prior: (0.3, 0.4) x (0.25, 1) -> (0.1875, 1).
        assert_eq!(out[4..], [0.1875, 1.0]);
        let back = run(0.0, false, &[0, 3, 7], &[0, 2, 2, 3], &[0, 1, 1]).unwrap();
        // Backward: row 1 = e1 = (0.25, 1); row 0 = (0.25, 1) x (1, 0.5) -> (0.5, 1).
        assert_eq!(back[..4], [0.5, 1.0, 0.25, 1.0]);
    }

    #[test]
    fn switching_pulls_toward_the_prior() {
        let still = run(0.0, true, &[0, 50], &[0, 2], &[1, 0]).unwrap();
        let moving = run(0.3, true, &[0, 50], &[0, 2], &[1, 0]).unwrap();
        // Row 0 favours the second rate; after 50 steps at rate 0.3 the prompt was surely redrawn.
        assert!(moving[2] > still[2]);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(run(0.0, true, &[0, 1], &[0, 1], &[0, 0]).is_err()); // offsets end short
        assert!(run(0.0, true, &[0, 1], &[0, 2], &[0, 2]).is_err()); // emission index out of range
        assert!(run(0.0, true, &[0, 1], &[1, 2], &[0, 0]).is_err()); // offsets start past 0
        assert!(run(1.0, true, &[0, 1], &[0, 2], &[0, 0]).is_err()); // rate 1
    }
}
