//! The row store: a log's groups sorted by (prompt, step), each row's (n_rollouts, n_correct) an
//! index into the log's distinct pairs, and where a query's (step, prompt) falls among them.

use std::collections::HashMap;

use rayon::prelude::*;

use super::messages::{prefetch, prefetch_range};
use super::model::Fit;
use crate::error::{invalid, Result};

/// A log's groups sorted by (prompt, step), a repeated cell in the log's row order.
pub struct LogRows {
    /// Steps relative to `origin` (the log's first step).
    pub(super) step: Vec<i64>,
    /// Prompt i owns rows offsets[i]..offsets[i + 1] (ids up to the largest logged one).
    pub(super) offsets: Vec<i64>,
    /// The distinct (n_rollouts, n_correct) of the log, ascending, and each row's.
    pub(super) pairs: Vec<(i64, i64)>,
    pub(super) pair_index: Vec<u32>,
    pub(super) fit: Option<Fit>,
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

    pub(super) fn check_rows(&self, rows: &[i64]) -> Result<()> {
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
    pub(super) fn locate_all(&self, t: impl Fn(usize) -> i64, ids: &[i64]) -> Vec<Where> {
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
}

/// Where a query's step falls among its prompt's rows lo..hi: the first row at a step >= t
/// and the first at a step > t.
#[derive(Default, Clone, Copy)]
pub(super) struct Where {
    pub(super) lo: usize,
    pub(super) at_or_after: usize,
    pub(super) after: usize,
    pub(super) hi: usize,
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::small;
    use super::*;

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
    fn bad_input_is_an_error_not_a_panic() {
        assert!(LogRows::new(&[0], &[-1], &[0], &[8], 0).is_err());
        assert!(LogRows::new(&[0], &[0], &[9], &[8], 0).is_err());
        assert!(LogRows::new(&[0], &[0], &[0], &[0], 0).is_err());
        assert!(LogRows::new(&[0, 1], &[0], &[0], &[8], 0).is_err());
        let log = small();
        assert!(log.subset(&[2, 0]).is_err());
        assert!(log.row_info(&[4]).is_err());
        assert_eq!(log.subset(&[2]).unwrap().steps(), &[1]);
    }
}
