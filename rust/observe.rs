//! The scored groups of one step, checked once before any policy sees them: counts of correct
//! responses, or graded rewards (a group's mean and spread).

use crate::error::{invalid, Result};

/// One rolled-out prompt: k responses, observed as a count of correct ones or as rewards.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Group {
    pub id: u32,
    pub n_rollouts: u32,
    /// What the Beta policies count as successes: the correct responses, or a graded group's
    /// reward sum (n_rollouts x its mean reward).
    pub successes: f64,
    state: usize,
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

/// How a graded group maps to the states the policies model (docs/method.md#graded-rewards),
/// given by the caller (dps.outcomes defines the defaults once).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradedRule {
    /// A group is effective (partially solved) when its rewards' population standard deviation
    /// exceeds this.
    pub spread_tol: f64,
    /// A group that is not effective is solved when its reward is at least this, else unsolved.
    pub success_at: f64,
}

impl GradedRule {
    fn check(&self) -> Result<()> {
        if !(self.spread_tol.is_finite() && self.spread_tol >= 0.0) {
            return invalid(format!(
                "spread_tol must be a finite number >= 0, got {}",
                self.spread_tol
            ));
        }
        if !self.success_at.is_finite() {
            return invalid(format!(
                "success_at must be finite, got {}",
                self.success_at
            ));
        }
        Ok(())
    }

    /// The state of a group with this mean reward and spread.
    pub fn state(&self, mean: f64, std: f64) -> usize {
        if std > self.spread_tol {
            PARTIAL
        } else if mean >= self.success_at {
            SOLVED
        } else {
            UNSOLVED
        }
    }
}

impl Group {
    /// A group of `n_correct` correct responses out of `n_rollouts`.
    pub fn counted(id: u32, n_correct: u32, n_rollouts: u32) -> Self {
        let (c, n) = (n_correct as u64, n_rollouts as u64);
        let state = if partially_solved(c, n) {
            PARTIAL
        } else if c == 0 {
            UNSOLVED
        } else {
            SOLVED
        };
        Group {
            id,
            n_rollouts,
            successes: n_correct as f64,
            state,
        }
    }

    /// Unsolved, partially solved or solved (see `GradedRule` for a graded group).
    pub fn state(&self) -> usize {
        self.state
    }

    /// The share of successes (a graded group's mean reward).
    pub fn rate(&self) -> f64 {
        self.successes / self.n_rollouts as f64
    }
}

/// A step's groups, validated, sorted by prompt id.
#[derive(Clone, Debug, Default)]
pub struct Observations {
    groups: Vec<Group>,
    graded: bool,
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
            check_id(i, id, num_prompts)?;
            if c < 0 {
                return invalid(format!("n_correct[{i}] = {c} is negative"));
            }
            check_size(i, n)?;
            if c > n {
                return invalid(format!(
                    "n_correct[{i}] = {c} exceeds n_rollouts[{i}] = {n}"
                ));
            }
            groups.push(Group::counted(id as u32, c as u32, n as u32));
        }
        Self::sorted(groups, false)
    }

    /// Graded groups: each prompt's number of responses, and the mean and population standard
    /// deviation of their rewards, mapped to states by `rule`. Rewards must be finite.
    pub fn graded(
        num_prompts: usize,
        ids: &[i64],
        n_rollouts: &[i64],
        reward_mean: &[f64],
        reward_std: &[f64],
        rule: GradedRule,
    ) -> Result<Self> {
        rule.check()?;
        if [n_rollouts.len(), reward_mean.len(), reward_std.len()] != [ids.len(); 3] {
            return invalid(format!(
                "lengths differ: prompt_ids has {}, n_rollouts {}, reward_mean {}, reward_std {}",
                ids.len(),
                n_rollouts.len(),
                reward_mean.len(),
                reward_std.len()
            ));
        }
        let mut groups = Vec::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            let (n, mean, std) = (n_rollouts[i], reward_mean[i], reward_std[i]);
            check_id(i, id, num_prompts)?;
            check_size(i, n)?;
            if !mean.is_finite() {
                return invalid(format!(
                    "reward_mean[{i}] = {mean} (prompt {id}): rewards must be finite"
                ));
            }
            if !(std.is_finite() && std >= 0.0) {
                return invalid(format!(
                    "reward_std[{i}] = {std} (prompt {id}): a standard deviation is finite and >= 0"
                ));
            }
            groups.push(Group {
                id: id as u32,
                n_rollouts: n as u32,
                successes: mean * n as f64,
                state: rule.state(mean, std),
            });
        }
        Self::sorted(groups, true)
    }

    fn sorted(mut groups: Vec<Group>, graded: bool) -> Result<Self> {
        groups.sort_unstable_by_key(|g| g.id);
        if let Some(w) = groups.windows(2).find(|w| w[0].id == w[1].id) {
            return invalid(format!(
                "prompt id {} appears more than once in one observe call",
                w[0].id
            ));
        }
        Ok(Observations { groups, graded })
    }

    /// Groups observed as rewards, not counts.
    pub fn is_graded(&self) -> bool {
        self.graded
    }

    /// Refuses a graded group whose mean reward is outside [0, 1]: what a policy that reads
    /// rewards as success rates (MoPPS, BOTS) accepts. `who` names the policy.
    pub fn check_unit_rewards(&self, who: &str) -> Result<()> {
        match self
            .groups
            .iter()
            .find(|g| !(0.0..=1.0).contains(&g.rate()))
        {
            Some(g) => invalid(format!(
                "prompt {}: mean reward {} is outside [0, 1]; {who} reads a graded group as \
                 n_rollouts x mean successes, so rewards must be scaled to [0, 1]",
                g.id,
                g.rate()
            )),
            None => Ok(()),
        }
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

    /// The share of the step's groups that are partially solved (effective).
    pub fn effective_ratio(&self) -> f64 {
        let partial = self.groups.iter().filter(|g| g.state == PARTIAL).count();
        if self.groups.is_empty() {
            0.0
        } else {
            partial as f64 / self.groups.len() as f64
        }
    }

    /// The groups whose ids fall in [start, end).
    pub fn in_range(&self, start: usize, end: usize) -> &[Group] {
        let lo = self.groups.partition_point(|g| (g.id as usize) < start);
        let hi = self.groups.partition_point(|g| (g.id as usize) < end);
        &self.groups[lo..hi]
    }
}

fn check_id(i: usize, id: i64, num_prompts: usize) -> Result<()> {
    if id < 0 || id as u64 >= num_prompts as u64 {
        return invalid(format!(
            "prompt_ids[{i}] = {id} is outside [0, {num_prompts})"
        ));
    }
    Ok(())
}

fn check_size(i: usize, n: i64) -> Result<()> {
    if n <= 0 {
        return invalid(format!(
            "n_rollouts[{i}] = {n}: a group needs at least one rollout"
        ));
    }
    if n > u32::MAX as i64 {
        return invalid(format!("n_rollouts[{i}] = {n} is too large"));
    }
    Ok(())
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

    const RULE: GradedRule = GradedRule {
        spread_tol: 1e-8,
        success_at: 0.5,
    };

    #[test]
    fn graded_groups_are_effective_by_spread_and_solved_by_threshold() {
        let obs = Observations::graded(
            10,
            &[3, 1, 2, 4],
            &[4, 4, 4, 1],
            &[0.7, 0.3, 0.25, 1.0],
            &[0.0, 0.0, 0.1, 0.0],
            RULE,
        )
        .unwrap();
        let states: Vec<_> = obs.groups().iter().map(|g| (g.id, g.state())).collect();
        assert_eq!(
            states,
            vec![(1, UNSOLVED), (2, PARTIAL), (3, SOLVED), (4, SOLVED)]
        );
        assert!(obs.is_graded());
        assert_eq!(obs.groups()[0].successes, 0.3 * 4.0);
        assert!((obs.effective_ratio() - 0.25).abs() < 1e-15);
        let tight = GradedRule {
            spread_tol: 0.1,
            ..RULE
        };
        let obs = Observations::graded(10, &[2], &[4], &[0.25], &[0.1], tight).unwrap();
        assert_eq!(
            obs.groups()[0].state(),
            UNSOLVED,
            "a spread at the tolerance is no spread"
        );
    }

    #[test]
    fn binary_rewards_give_the_states_of_their_counts() {
        // Rewards 0/1: mean c/n, population std sqrt(p (1 - p)).
        for n in 1..=9i64 {
            for c in 0..=n {
                let p = c as f64 / n as f64;
                let graded =
                    Observations::graded(1, &[0], &[n], &[p], &[(p * (1.0 - p)).sqrt()], RULE)
                        .unwrap();
                let counted = Observations::new(1, &[0], &[c], &[n]).unwrap();
                assert_eq!(graded.groups()[0].state(), counted.groups()[0].state());
            }
        }
    }

    #[test]
    fn rejects_bad_graded_groups() {
        let err = |mean: f64, std: f64, rule: GradedRule| {
            Observations::graded(10, &[1], &[4], &[mean], &[std], rule)
                .unwrap_err()
                .to_string()
        };
        assert!(err(f64::NAN, 0.0, RULE).contains("reward_mean[0] = NaN (prompt 1)"));
        assert!(err(f64::INFINITY, 0.0, RULE).contains("must be finite"));
        assert!(err(0.5, -0.1, RULE).contains("reward_std[0]"));
        assert!(err(0.5, f64::NAN, RULE).contains("reward_std[0]"));
        let bad_tol = GradedRule {
            spread_tol: -1.0,
            ..RULE
        };
        assert!(err(0.5, 0.0, bad_tol).contains("spread_tol"));
        let bad_at = GradedRule {
            success_at: f64::NAN,
            ..RULE
        };
        assert!(err(0.5, 0.0, bad_at).contains("success_at"));
        let lengths = Observations::graded(10, &[1, 2], &[4], &[0.5], &[0.1], RULE);
        assert!(lengths.unwrap_err().to_string().contains("lengths differ"));
        let unit = Observations::graded(10, &[1], &[4], &[1.5], &[0.1], RULE).unwrap();
        let err = unit.check_unit_rewards("MoPPS").unwrap_err().to_string();
        assert!(
            err.contains("prompt 1: mean reward 1.5 is outside [0, 1]"),
            "{err}"
        );
    }
}
