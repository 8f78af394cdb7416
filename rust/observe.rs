//! The scored groups of one step, checked once before any policy sees them.

use crate::error::{invalid, Result};

/// One rolled-out prompt: k responses, of which `n_correct` were right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group {
    pub id: u32,
    pub n_correct: u32,
    pub n_rollouts: u32,
}

/// 0 = unsolved (none right), 1 = partially solved, 2 = solved (all right).
pub const UNSOLVED: usize = 0;
pub const PARTIAL: usize = 1;
pub const SOLVED: usize = 2;

/// Some but not all of a group's responses correct (0 < n_correct < n_rollouts): the group's
/// rewards vary, so it carries a learning signal. The one place the core writes this rule.
#[inline]
pub fn partially_solved(n_correct: u64, n_rollouts: u64) -> bool {
    n_correct > 0 && n_correct < n_rollouts
}

/// The share of groups (n_correct, n_rollouts) that are partially solved; 0 without groups.
pub fn effective_ratio(groups: impl IntoIterator<Item = (u64, u64)>) -> f64 {
    let (mut partial, mut total) = (0usize, 0usize);
    for (c, n) in groups {
        partial += usize::from(partially_solved(c, n));
        total += 1;
    }
    if total == 0 {
        0.0
    } else {
        partial as f64 / total as f64
    }
}

impl Group {
    pub fn state(&self) -> usize {
        let (c, n) = (self.n_correct as u64, self.n_rollouts as u64);
        if partially_solved(c, n) {
            PARTIAL
        } else if c == 0 {
            UNSOLVED
        } else {
            SOLVED
        }
    }
}

/// A step's groups, validated, sorted by prompt id.
#[derive(Clone, Debug, Default)]
pub struct Observations {
    groups: Vec<Group>,
}

impl Observations {
    pub fn new(
        num_prompts: usize,
        ids: &[i64],
        n_correct: &[i64],
        n_rollouts: &[i64],
    ) -> Result<Self> {
        if ids.len() != n_correct.len() || ids.len() != n_rollouts.len() {
            return invalid(format!(
                "lengths differ: prompt_ids has {}, n_correct {}, n_rollouts {}",
                ids.len(),
                n_correct.len(),
                n_rollouts.len()
            ));
        }
        let mut groups = Vec::with_capacity(ids.len());
        for (i, ((&id, &c), &n)) in ids.iter().zip(n_correct).zip(n_rollouts).enumerate() {
            if id < 0 || id as u64 >= num_prompts as u64 {
                return invalid(format!(
                    "prompt_ids[{i}] = {id} is outside [0, {num_prompts})"
                ));
            }
            if c < 0 {
                return invalid(format!("n_correct[{i}] = {c} is negative"));
            }
            if n <= 0 {
                return invalid(format!(
                    "n_rollouts[{i}] = {n}: a group needs at least one rollout"
                ));
            }
            if n > u32::MAX as i64 {
                return invalid(format!("n_rollouts[{i}] = {n} is too large"));
            }
            if c > n {
                return invalid(format!(
                    "n_correct[{i}] = {c} exceeds n_rollouts[{i}] = {n}"
                ));
            }
            groups.push(Group {
                id: id as u32,
                n_correct: c as u32,
                n_rollouts: n as u32,
            });
        }
        groups.sort_unstable_by_key(|g| g.id);
        if let Some(w) = groups.windows(2).find(|w| w[0].id == w[1].id) {
            return invalid(format!(
                "prompt id {} appears more than once in one observe call",
                w[0].id
            ));
        }
        Ok(Observations { groups })
    }

    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The share of the step's groups that are partially solved.
    pub fn effective_ratio(&self) -> f64 {
        effective_ratio(
            self.groups
                .iter()
                .map(|g| (g.n_correct as u64, g.n_rollouts as u64)),
        )
    }

    /// The groups whose ids fall in [start, end).
    pub fn in_range(&self, start: usize, end: usize) -> &[Group] {
        let lo = self.groups.partition_point(|g| (g.id as usize) < start);
        let hi = self.groups.partition_point(|g| (g.id as usize) < end);
        &self.groups[lo..hi]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_groups() {
        let err = |ids: &[i64], c: &[i64], n: &[i64]| {
            Observations::new(10, ids, c, n).unwrap_err().to_string()
        };
        assert!(err(&[10], &[0], &[8]).contains("outside [0, 10)"));
        assert!(err(&[-1], &[0], &[8]).contains("outside"));
        assert!(err(&[1, 1], &[0, 0], &[8, 8]).contains("more than once"));
        assert!(err(&[1], &[9], &[8]).contains("exceeds"));
        assert!(err(&[1], &[-1], &[8]).contains("negative"));
        assert!(err(&[1], &[0], &[0]).contains("at least one rollout"));
        assert!(err(&[1, 2], &[0], &[8, 8]).contains("lengths differ"));
    }

    #[test]
    fn states_and_ranges() {
        let obs = Observations::new(10, &[5, 1, 7], &[0, 8, 3], &[8, 8, 8]).unwrap();
        let states: Vec<_> = obs.groups().iter().map(|g| (g.id, g.state())).collect();
        assert_eq!(states, vec![(1, SOLVED), (5, UNSOLVED), (7, PARTIAL)]);
        assert_eq!(obs.in_range(2, 8).len(), 2);
        assert_eq!(obs.in_range(8, 10).len(), 0);
        assert!((obs.effective_ratio() - 1.0 / 3.0).abs() < 1e-15);
        assert_eq!(Observations::default().effective_ratio(), 0.0);
    }

    #[test]
    fn partially_solved_is_some_but_not_all_correct() {
        assert!(!partially_solved(0, 8) && partially_solved(1, 8) && partially_solved(7, 8));
        assert!(!partially_solved(8, 8) && !partially_solved(1, 1));
        assert_eq!(effective_ratio([(0, 4), (2, 4), (4, 4), (1, 4)]), 0.5);
    }
}
