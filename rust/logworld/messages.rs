//! The log world's per-prompt messages (python/dps/replay/logworld.py): one forward and one
//! backward pass over each prompt's logged rows, on a grid of success rates, under switching
//! dynamics (a prompt's rate stays, or with probability `rate` per step is redrawn from the
//! population prior at that step).
//!
//! forward[j] is proportional to P(rate at row j, the prompt's rows up to j); backward[j] to
//! P(the prompt's rows from j on | rate at row j). Each is computed from its neighbour's stored
//! (rounded) value, scaled to a maximum of 1 and floored, so that rows the dynamics cannot
//! reconcile still leave a defined posterior. Prompts are independent and run in parallel.
//!
//! Only the messages of every `every`-th row of the log are kept (checkpoints: the forward
//! message of rows every - 1, 2 every - 1, ..., the backward one of rows 0, every, 2 every, ...);
//! a query recomputes the at most every - 1 rows between the row it needs and the nearest
//! checkpoint of the same prompt (or the prompt's end), rounding each to the stored precision as
//! the pass did, so what it gets is bit for bit what a pass that kept every row would have stored.

use rayon::prelude::*;

use half::slice::HalfFloatSliceExt;

use crate::error::{invalid, Result};

/// A stored message value: f32, or f16 where memory matters more than the fourth digit.
/// Whole rows are converted at once (f16 by the CPU's conversion instructions where it has them).
pub trait Message: Copy + Default + Send + Sync {
    fn load(src: &[Self], dst: &mut [f32]);
    fn store(src: &[f32], dst: &mut [Self]);
    /// Round `m` to the stored precision in place (what storing and loading it back gives).
    fn round(m: &mut [f32]);
}

impl Message for f32 {
    fn load(src: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    fn store(src: &[f32], dst: &mut [Self]) {
        dst.copy_from_slice(src);
    }
    fn round(_: &mut [f32]) {}
}

impl Message for half::f16 {
    fn load(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }
    fn store(src: &[f32], dst: &mut [Self]) {
        dst.convert_from_f32_slice(src);
    }
    fn round(m: &mut [f32]) {
        let mut buf = [half::f16::ZERO; 64];
        for chunk in m.chunks_mut(64) {
            let b = &mut buf[..chunk.len()];
            b.convert_from_f32_slice(chunk);
            b.convert_to_f32_slice(chunk);
        }
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

impl PriorTable<'_> {
    /// g at step t (a fractional step is rounded to the nearest point, ties to even).
    pub fn at(&self, t: f64, grid: usize) -> &[f64] {
        let points = self.dense.len() / grid;
        let i = ((t - self.start) * self.scale)
            .round_ties_even()
            .clamp(0.0, (points - 1) as f64) as usize;
        &self.dense[i * grid..(i + 1) * grid]
    }
}

/// The dynamics between two rows of a prompt.
pub struct Switching<'a> {
    pub rate: f64,
    pub prior: PriorTable<'a>,
}

impl Switching<'_> {
    pub fn stay(&self, gap: f64) -> f64 {
        (1.0 - self.rate).powf(gap)
    }

    /// The prior row a prompt redrawn between steps s < t is drawn from: g at the expected step
    /// of its last redraw (the middle of a short gap; 1 / rate - 1 back from t in a long one).
    pub fn redraw_prior(&self, s: f64, t: f64, grid: usize) -> &[f64] {
        let back = ((t - s - 1.0) / 2.0).min((1.0 - self.rate) / self.rate);
        self.prior.at(t - back, grid)
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
    pub emission_index: &'a [u32],
}

impl Rows<'_> {
    fn check(&self, grid: usize, prior_len: usize) -> Result<()> {
        let n = self.step.len();
        if grid == 0
            || !self.emission.len().is_multiple_of(grid)
            || prior_len == 0
            || !prior_len.is_multiple_of(grid)
        {
            return invalid("the emission and prior tables need whole rows of the grid");
        }
        if self.emission_index.len() != n {
            return invalid(format!(
                "{n} rows, but {} emission indices",
                self.emission_index.len()
            ));
        }
        let emissions = (self.emission.len() / grid) as u32;
        if self.emission_index.iter().any(|&e| e >= emissions) {
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

/// The larger of a and b (b where either is NaN: the messages hold none).
#[inline(always)]
fn larger(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// The largest of `m` and 0, in eight lanes (the maximum is exact in any order, so this is the
/// sequential fold's value, found without its chain of dependent steps).
fn max_of(m: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = m.chunks_exact(8);
    for chunk in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(chunk) {
            *l = larger(x, *l);
        }
    }
    let tail = chunks.remainder().iter().fold(0.0f32, |a, &b| larger(b, a));
    lanes.iter().fold(tail, |a, &b| larger(b, a))
}

/// Multiply by the row's emission, scale to a maximum of 1, floor, and round to the stored
/// precision: `m` ends as what is stored (read back as f32).
fn finish<M: Message>(m: &mut [f32], emission: &[f32], floor: f32) {
    for (x, &e) in m.iter_mut().zip(emission) {
        *x *= e;
    }
    let top = max_of(m);
    let top = if top > 0.0 { top } else { f32::INFINITY };
    for x in m.iter_mut() {
        *x = larger(*x / top, floor);
    }
    M::round(m);
}

/// One pass's settings.
pub struct Pass<'a> {
    pub rows: &'a Rows<'a>,
    pub dynamics: &'a Switching<'a>,
    pub grid: usize,
    pub floor: f32,
}

impl Pass<'_> {
    /// Row `row`'s forward message from the previous row's stored one (`m`, replaced), or from
    /// the prior when it is the prompt's first (`first`).
    fn forward_row<M: Message>(&self, row: usize, first: bool, m: &mut [f32]) {
        let (grid, dyn_) = (self.grid, self.dynamics);
        let t = self.rows.step[row] as f64;
        if first {
            for (x, &g) in m.iter_mut().zip(dyn_.prior_at(t, grid)) {
                *x = g as f32;
            }
        } else {
            let inv_total = 1.0 / m.iter().sum::<f32>();
            if dyn_.rate > 0.0 {
                let s = self.rows.step[row - 1] as f64;
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
        finish::<M>(m, self.rows.emission_of(row, grid), self.floor);
    }

    /// Row `row`'s backward message from the next row's stored one (`m`, replaced), or ones when
    /// it is the prompt's last (`last`).
    fn backward_row<M: Message>(&self, row: usize, last: bool, m: &mut [f32]) {
        let (grid, dyn_) = (self.grid, self.dynamics);
        if last {
            m.fill(1.0);
        } else if dyn_.rate > 0.0 {
            let (s, t) = (self.rows.step[row] as f64, self.rows.step[row + 1] as f64);
            let stay = dyn_.stay(t - s);
            let g = dyn_.redraw_prior(s, t, grid);
            let redrawn = (1.0 - stay) * g.iter().zip(&*m).map(|(a, &b)| a * b as f64).sum::<f64>();
            for x in m.iter_mut() {
                *x = (stay * *x as f64 + redrawn) as f32;
            }
        }
        finish::<M>(m, self.rows.emission_of(row, grid), self.floor);
    }
}

/// The kept messages (see the module docs): forward slot s holds row s every + every - 1's,
/// backward slot s row s every's; `grid` values each.
pub struct Checkpoints<M> {
    pub every: usize,
    pub forward: Vec<M>,
    pub backward: Vec<M>,
}

impl<M: Message> Checkpoints<M> {
    pub fn bytes(&self) -> usize {
        (self.forward.len() + self.backward.len()) * std::mem::size_of::<M>()
    }

    /// The forward checkpoint nearest before `row` in the same prompt (rows from `lo`): (its row, slot).
    #[inline]
    pub fn forward_slot(&self, row: usize, lo: usize) -> Option<(usize, usize)> {
        let slot = (row + 1) / self.every;
        (slot > 0 && slot * self.every > lo).then(|| (slot * self.every - 1, slot - 1))
    }

    /// The backward checkpoint nearest after `row` in the same prompt (rows before `hi`): (its row, slot).
    #[inline]
    pub fn backward_slot(&self, row: usize, hi: usize) -> Option<(usize, usize)> {
        let slot = row.div_ceil(self.every);
        (slot * self.every < hi).then(|| (slot * self.every, slot))
    }

    /// The forward message of `row` (its prompt's rows start at `lo`), into `m`.
    pub fn forward_at(&self, pass: &Pass, row: usize, lo: usize, m: &mut [f32]) {
        let grid = pass.grid;
        let from = match self.forward_slot(row, lo) {
            Some((kept, slot)) => {
                M::load(&self.forward[slot * grid..(slot + 1) * grid], m);
                kept + 1
            }
            None => {
                pass.forward_row::<M>(lo, true, m);
                lo + 1
            }
        };
        for r in from..=row {
            pass.forward_row::<M>(r, false, m);
        }
    }

    /// The backward message of `row` (its prompt's rows end before `hi`), into `m`.
    pub fn backward_at(&self, pass: &Pass, row: usize, hi: usize, m: &mut [f32]) {
        let grid = pass.grid;
        let from = match self.backward_slot(row, hi) {
            Some((kept, slot)) => {
                M::load(&self.backward[slot * grid..(slot + 1) * grid], m);
                kept
            }
            None => {
                pass.backward_row::<M>(hi - 1, true, m);
                hi - 1
            }
        };
        for r in (row..from).rev() {
            pass.backward_row::<M>(r, false, m);
        }
    }

    /// The forward messages of rows `forward[i] = Some((row, lo))` and the backward messages of rows
    /// `backward[i] = Some((row, hi))` (`lo`, `hi`: their prompt's rows), into `out_f` and `out_b`
    /// (n x grid; untouched where None). The rows to recompute are taken in turns across the
    /// queries, so that the CPU overlaps their chains of dependent operations.
    pub fn messages_at(
        &self,
        pass: &Pass,
        forward: &[Option<(usize, usize)>],
        backward: &[Option<(usize, usize)>],
        out_f: &mut [f32],
        out_b: &mut [f32],
    ) {
        let grid = pass.grid;
        // Per query: the next row to compute and the last (forward: up; backward: down).
        let mut todo_f = vec![(1usize, 0usize); forward.len()];
        let mut todo_b = vec![(0usize, 0usize); backward.len()];
        for (i, q) in forward.iter().enumerate() {
            let Some((row, lo)) = *q else { continue };
            let m = &mut out_f[i * grid..(i + 1) * grid];
            todo_f[i] = match self.forward_slot(row, lo) {
                Some((kept, slot)) => {
                    M::load(&self.forward[slot * grid..(slot + 1) * grid], m);
                    (kept + 1, row)
                }
                None => {
                    pass.forward_row::<M>(lo, true, m);
                    (lo + 1, row)
                }
            };
        }
        for (i, q) in backward.iter().enumerate() {
            let Some((row, hi)) = *q else { continue };
            let m = &mut out_b[i * grid..(i + 1) * grid];
            todo_b[i] = match self.backward_slot(row, hi) {
                Some((kept, slot)) => {
                    M::load(&self.backward[slot * grid..(slot + 1) * grid], m);
                    (kept, row) // rows kept - 1 down to row remain
                }
                None => {
                    pass.backward_row::<M>(hi - 1, true, m);
                    (hi - 1, row)
                }
            };
        }
        loop {
            let mut busy = false;
            for (i, (f, b)) in todo_f.iter_mut().zip(todo_b.iter_mut()).enumerate() {
                if f.0 <= f.1 {
                    pass.forward_row::<M>(f.0, false, &mut out_f[i * grid..(i + 1) * grid]);
                    f.0 += 1;
                    busy = true;
                }
                if b.0 > b.1 {
                    b.0 -= 1;
                    pass.backward_row::<M>(b.0, false, &mut out_b[i * grid..(i + 1) * grid]);
                    busy = true;
                }
            }
            if !busy {
                return;
            }
        }
    }

    /// Ask the memory for the checkpoints `forward_at(row_f, ..)` and `backward_at(row_b, ..)` will read.
    #[inline]
    pub fn prefetch(
        &self,
        forward: Option<(usize, usize)>,
        backward: Option<(usize, usize)>,
        grid: usize,
    ) {
        if let Some((_, slot)) = forward {
            prefetch_range(&self.forward[slot * grid..(slot + 1) * grid]);
        }
        if let Some((_, slot)) = backward {
            prefetch_range(&self.backward[slot * grid..(slot + 1) * grid]);
        }
    }
}

/// A hint to bring `x` into the cache (nothing on targets without one).
#[inline(always)]
pub fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing into the program and cannot fault.
    #[allow(unused_unsafe)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            x as *const T as *const i8,
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

/// Prefetch the first and last cache line of a slice.
#[inline(always)]
pub fn prefetch_range<T>(x: &[T]) {
    if let (Some(a), Some(b)) = (x.first(), x.last()) {
        prefetch(a);
        prefetch(b);
    }
}

/// Rows per task handed to a thread (whole prompts).
const TASK_ROWS: usize = 1 << 16;

/// Both passes over every prompt, keeping every `every`-th row's messages (see the module docs).
pub fn checkpoints<M: Message>(pass: &Pass, every: usize) -> Result<Checkpoints<M>> {
    let (rows, grid) = (pass.rows, pass.grid);
    rows.check(grid, pass.dynamics.prior.dense.len())?;
    if !(0.0..1.0).contains(&pass.dynamics.rate) {
        return invalid(format!(
            "switch rate must be in [0, 1), got {}",
            pass.dynamics.rate
        ));
    }
    if every == 0 {
        return invalid("checkpoints need every >= 1");
    }
    let n = rows.step.len();
    let mut forward = vec![M::default(); n / every * grid];
    let mut backward = vec![M::default(); n.div_ceil(every) * grid];
    // Split the prompts into tasks of about TASK_ROWS rows; rows a..b own forward slots
    // a / every..b / every and backward slots ceil(a / every)..ceil(b / every).
    let mut tasks: Vec<(usize, usize, &mut [M], &mut [M])> = Vec::new();
    let (mut rest_f, mut rest_b, mut p) = (&mut forward[..], &mut backward[..], 0usize);
    let prompts = rows.offsets.len() - 1;
    while p < prompts {
        let lo = rows.offsets[p];
        let mut q = p + 1;
        while q < prompts && ((rows.offsets[q] - lo) as usize) < TASK_ROWS {
            q += 1;
        }
        let (a, b) = (lo as usize, rows.offsets[q] as usize);
        let (head_f, tail_f) =
            std::mem::take(&mut rest_f).split_at_mut((b / every - a / every) * grid);
        let (head_b, tail_b) = std::mem::take(&mut rest_b)
            .split_at_mut((b.div_ceil(every) - a.div_ceil(every)) * grid);
        tasks.push((p, q, head_f, head_b));
        (rest_f, rest_b) = (tail_f, tail_b);
        p = q;
    }
    tasks.into_par_iter().for_each(|(p, q, fwd, bwd)| {
        let first = rows.offsets[p] as usize;
        let (base_f, base_b) = (first / every, first.div_ceil(every));
        let (mut mf, mut mb) = (vec![0.0f32; grid], vec![0.0f32; grid]);
        for prompt in p..q {
            let (a, b) = (
                rows.offsets[prompt] as usize,
                rows.offsets[prompt + 1] as usize,
            );
            // The two passes in step (row a + i forward, row b - 1 - i backward): independent
            // chains of operations, which the CPU overlaps.
            for i in 0..b - a {
                let (rf, rb) = (a + i, b - 1 - i);
                pass.forward_row::<M>(rf, i == 0, &mut mf);
                pass.backward_row::<M>(rb, i == 0, &mut mb);
                if (rf + 1) % every == 0 {
                    let c = ((rf + 1) / every - 1 - base_f) * grid;
                    M::store(&mf, &mut fwd[c..c + grid]);
                }
                if rb % every == 0 {
                    let c = (rb / every - base_b) * grid;
                    M::store(&mb, &mut bwd[c..c + grid]);
                }
            }
        }
    });
    Ok(Checkpoints {
        every,
        forward,
        backward,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two prior points (steps 0 and 10) on a grid of two rates.
    const PRIOR: [f64; 4] = [0.1, 0.2, 0.3, 0.4];
    const EMISSION: [f32; 4] = [1.0, 0.5, 0.25, 1.0];

    fn run(
        rate: f64,
        every: usize,
        step: &[i64],
        offsets: &[i64],
        index: &[u32],
    ) -> Result<(Checkpoints<f32>, Vec<f32>, Vec<f32>)> {
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
        let pass = Pass {
            rows: &rows,
            dynamics: &dyn_,
            grid: 2,
            floor: 1e-6,
        };
        let ck = checkpoints::<f32>(&pass, every)?;
        // Every row's messages, as queries recompute them.
        let (mut fwd, mut bwd) = (vec![0.0f32; step.len() * 2], vec![0.0f32; step.len() * 2]);
        for p in 0..offsets.len() - 1 {
            let (a, b) = (offsets[p] as usize, offsets[p + 1] as usize);
            for row in a..b {
                ck.forward_at(&pass, row, a, &mut fwd[row * 2..(row + 1) * 2]);
                ck.backward_at(&pass, row, b, &mut bwd[row * 2..(row + 1) * 2]);
            }
        }
        Ok((ck, fwd, bwd))
    }

    #[test]
    fn a_stationary_prompt_multiplies_its_evidence() {
        // Prompt 0: rows at steps 0 and 3 with emissions 0 and 1; prompt 1 has none; prompt 2 one row.
        let (ck, fwd, bwd) = run(0.0, 1, &[0, 3, 7], &[0, 2, 2, 3], &[0, 1, 1]).unwrap();
        // Row 0: prior (0.1, 0.2) x (1, 0.5) = (0.1, 0.1) -> (1, 1). Row 1: (0.5, 0.5) x (0.25, 1) -> (0.25, 1).
        assert_eq!(fwd[..4], [1.0, 1.0, 0.25, 1.0]);
        // Step 7 is nearest point 1 of the prior: (0.3, 0.4) x (0.25, 1) -> (0.1875, 1).
        assert_eq!(fwd[4..], [0.1875, 1.0]);
        // Backward: row 1 = e1 = (0.25, 1); row 0 = (0.25, 1) x (1, 0.5) -> (0.5, 1).
        assert_eq!(bwd[..4], [0.5, 1.0, 0.25, 1.0]);
        assert_eq!(ck.forward, fwd); // every = 1 keeps every row
        assert_eq!(ck.backward, bwd);
    }

    #[test]
    fn switching_pulls_toward_the_prior() {
        let (_, still, _) = run(0.0, 1, &[0, 50], &[0, 2], &[1, 0]).unwrap();
        let (_, moving, _) = run(0.3, 1, &[0, 50], &[0, 2], &[1, 0]).unwrap();
        // Row 0 favours the second rate; after 50 steps at rate 0.3 the prompt was surely redrawn.
        assert!(moving[2] > still[2]);
    }

    #[test]
    fn checkpoints_recompute_every_row_exactly() {
        // Prompts of 0 to 9 rows, uneven gaps: queries from checkpoints every 1 to 4 rows agree bit for bit.
        let mut step = Vec::new();
        let mut offsets = vec![0i64];
        let mut index = Vec::new();
        for p in 0..10usize {
            for r in 0..p {
                step.push((r * r + p) as i64);
                index.push(((r + p) % 2) as u32);
            }
            offsets.push(step.len() as i64);
        }
        for rate in [0.0, 0.05] {
            let (_, fwd, bwd) = run(rate, 1, &step, &offsets, &index).unwrap();
            for every in 2..5 {
                let (ck, f, b) = run(rate, every, &step, &offsets, &index).unwrap();
                assert_eq!(
                    (f.as_slice(), b.as_slice()),
                    (fwd.as_slice(), bwd.as_slice()),
                    "every {every}"
                );
                assert_eq!(ck.forward.len(), step.len() / every * 2);
                assert_eq!(ck.backward.len(), step.len().div_ceil(every) * 2);
            }
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(run(0.0, 1, &[0, 1], &[0, 1], &[0, 0]).is_err()); // offsets end short
        assert!(run(0.0, 1, &[0, 1], &[0, 2], &[0, 2]).is_err()); // emission index out of range
        assert!(run(0.0, 1, &[0, 1], &[1, 2], &[0, 0]).is_err()); // offsets start past 0
        assert!(run(1.0, 1, &[0, 1], &[0, 2], &[0, 0]).is_err()); // rate 1
        assert!(run(0.0, 0, &[0, 1], &[0, 2], &[0, 0]).is_err()); // every 0
    }
}
