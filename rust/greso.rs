//! GRESO: skip, before rollout, prompts whose recent groups all had zero variance, with a
//! probability that adapts to how many zero-variance groups the last step produced.

use crate::error::{invalid, Result};
use crate::observe::{Observations, SOLVED, UNSOLVED};
use crate::pending::{FlightState, Pending};
use crate::rng::{key, stream, Rng};
use crate::sampler::{EpochOrder, OrderState};
use crate::selector::{Predictor, Selector};

crate::record! {
    /// GRESO's options (docs/method.md).
    #[derive(Clone, Debug, PartialEq)]
    pub struct GresoConfig {
        pub p_easy: f64,
        pub p_hard: f64,
        pub step_size: f64,
        pub p_min: f64,
        pub p_max: f64,
        /// The floor on a streaked prompt's chance to be kept.
        pub min_keep: f64,
        pub target_easy: f64,
        pub target_hard: f64,
        /// The first epoch (0-based) whose steps adapt p_easy and p_hard: 1 in the released
        /// trainer (`if epoch > 0`), 0 to adapt from the first step.
        pub adapt_from_epoch: u64,
        pub seed: u64,
    }
}

crate::record! {
    /// What GRESO saves.
    #[derive(Clone, Debug, PartialEq)]
    pub struct GresoState {
        pub step: u64,
        /// select calls so far in the current step.
        pub calls: u64,
        /// Prompts skipped since the last observe.
        pub skipped: u64,
        pub p_easy_now: f64,
        pub p_hard_now: f64,
        /// Each prompt's streak of all-correct (easy) and all-wrong (hard) groups.
        pub easy: Vec<u16> [N],
        pub hard: Vec<u16> [N],
        /// The ids handed out: this step's, and earlier steps' still in flight.
        pub flight: FlightState as "",
        pub order: OrderState as "",
    }
}

impl Default for GresoConfig {
    fn default() -> Self {
        GresoConfig {
            p_easy: 0.5,
            p_hard: 0.5,
            step_size: 0.01,
            p_min: 0.05,
            p_max: 0.95,
            min_keep: 0.01,
            target_easy: 0.25 / 3.0,
            target_hard: 0.25 * 2.0 / 3.0,
            adapt_from_epoch: 1,
            seed: 0,
        }
    }
}

impl GresoConfig {
    fn validate(&self) -> Result<()> {
        let unit = |x: f64| (0.0..=1.0).contains(&x);
        if !(unit(self.p_min) && unit(self.p_max) && self.p_min <= self.p_max) {
            return invalid("GRESO needs 0 <= p_min <= p_max <= 1");
        }
        if !(unit(self.p_easy) && unit(self.p_hard) && unit(self.min_keep) && unit(self.step_size))
        {
            return invalid("GRESO's p_easy, p_hard, min_keep and step_size must lie in [0, 1]");
        }
        if !(unit(self.target_easy) && unit(self.target_hard)) {
            return invalid("GRESO's targets must lie in [0, 1]");
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct Greso {
    cfg: GresoConfig,
    num_prompts: usize,
    /// Consecutive all-correct (easy) and all-wrong (hard) groups of each prompt.
    pub(crate) easy: Vec<u16>,
    pub(crate) hard: Vec<u16>,
    pub(crate) p_easy: f64,
    pub(crate) p_hard: f64,
    pub(crate) order: EpochOrder,
    pub(crate) pending: Pending,
    pub(crate) step: u64,
    /// select calls so far in this step: each draws from its own generator.
    pub(crate) calls: u64,
    pub(crate) skipped: u64,
}

impl Greso {
    pub fn new(num_prompts: usize, cfg: GresoConfig) -> Result<Self> {
        crate::error::check_num_prompts(num_prompts)?;
        cfg.validate()?;
        Ok(Greso {
            num_prompts,
            easy: vec![0; num_prompts],
            hard: vec![0; num_prompts],
            p_easy: cfg.p_easy,
            p_hard: cfg.p_hard,
            order: EpochOrder::new(cfg.seed),
            pending: Pending::new(num_prompts),
            step: 0,
            calls: 0,
            skipped: 0,
            cfg,
        })
    }

    pub fn probabilities(&self) -> (f64, f64) {
        (self.p_easy, self.p_hard)
    }

    /// Prompts skipped by the pre-rollout filter since the last observe.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    fn keep_probability(&self, id: u32) -> f64 {
        let (e, h) = (self.easy[id as usize], self.hard[id as usize]);
        if e > 0 {
            self.p_easy.powi(e as i32).max(self.cfg.min_keep)
        } else if h > 0 {
            self.p_hard.powi(h as i32).max(self.cfg.min_keep)
        } else {
            1.0
        }
    }

    /// The 0-based epoch of the prompts handed out last (0 before any).
    pub fn epoch_index(&self) -> u64 {
        self.order.epoch.saturating_sub(1)
    }

    /// Too many zero-variance groups of a kind (a share at or above its target, as released):
    /// keep fewer such prompts next time.
    fn adapt(&self, p: f64, share: f64, target: f64) -> f64 {
        let moved = if share >= target {
            p - self.cfg.step_size
        } else {
            p + self.cfg.step_size
        };
        moved.clamp(self.cfg.p_min, self.cfg.p_max)
    }
}

impl Selector for Greso {
    type Config = GresoConfig;
    type State = GresoState;

    fn config(&self) -> &GresoConfig {
        &self.cfg
    }

    fn num_prompts(&self) -> usize {
        self.num_prompts
    }

    fn step(&self) -> u64 {
        self.step
    }

    fn select(&mut self, batch_size: usize) -> Result<Vec<u32>> {
        self.pending.check_room(self.num_prompts, batch_size)?;
        let mut rng = Rng::new(key(&[
            self.cfg.seed,
            stream::GRESO_SKIP,
            self.step,
            self.calls,
        ]));
        self.calls += 1;
        let mut out = Vec::with_capacity(batch_size);
        while out.len() < batch_size {
            let Some(id) = self.order.next_id() else {
                self.order
                    .start_epoch((0..self.num_prompts as u32).collect());
                continue;
            };
            if self.pending.contains(id) {
                continue;
            }
            if rng.uniform() < self.keep_probability(id) {
                self.pending.insert(id);
                out.push(id);
            } else {
                self.skipped += 1;
            }
        }
        Ok(out)
    }

    fn pending(&self) -> &Pending {
        &self.pending
    }

    fn pending_mut(&mut self) -> &mut Pending {
        &mut self.pending
    }

    fn update(&mut self, obs: &Observations) {
        let (mut n_easy, mut n_hard) = (0usize, 0usize);
        for g in obs.groups() {
            let i = g.id as usize;
            match g.state() {
                SOLVED => {
                    self.easy[i] = self.easy[i].saturating_add(1);
                    self.hard[i] = 0;
                    n_easy += 1;
                }
                UNSOLVED => {
                    self.hard[i] = self.hard[i].saturating_add(1);
                    self.easy[i] = 0;
                    n_hard += 1;
                }
                _ => {
                    self.easy[i] = 0;
                    self.hard[i] = 0;
                }
            }
        }
        if !obs.is_empty() && self.epoch_index() >= self.cfg.adapt_from_epoch {
            let total = obs.len() as f64;
            self.p_easy = self.adapt(self.p_easy, n_easy as f64 / total, self.cfg.target_easy);
            self.p_hard = self.adapt(self.p_hard, n_hard as f64 / total, self.cfg.target_hard);
        }
        self.step += 1;
        self.calls = 0;
        self.skipped = 0;
    }

    fn state(&self) -> GresoState {
        GresoState {
            step: self.step,
            calls: self.calls,
            skipped: self.skipped,
            p_easy_now: self.p_easy,
            p_hard_now: self.p_hard,
            easy: self.easy.clone(),
            hard: self.hard.clone(),
            flight: self.pending.state(),
            order: self.order.state(),
        }
    }

    fn restore(&self, state: GresoState) -> Result<Self> {
        let n = self.num_prompts;
        let mut g = Greso::new(n, self.cfg.clone())?;
        if state.easy.len() != n || state.hard.len() != n {
            return invalid(format!(
                "streaks hold {} and {} values, expected {n}",
                state.easy.len(),
                state.hard.len()
            ));
        }
        let unit = 0.0..=1.0;
        if !(unit.contains(&state.p_easy_now) && unit.contains(&state.p_hard_now)) {
            return invalid("p_easy and p_hard must lie in [0, 1]");
        }
        g.order = EpochOrder::restore(self.cfg.seed, n, &state.order)?;
        g.pending = Pending::restore(n, &state.flight)?;
        g.easy = state.easy;
        g.hard = state.hard;
        g.p_easy = state.p_easy_now;
        g.p_hard = state.p_hard_now;
        g.step = state.step;
        g.calls = state.calls;
        g.skipped = state.skipped;
        Ok(g)
    }
}

impl Predictor for Greso {
    /// What the skip filter implies about prompt `id`'s next group: with an easy (hard) streak,
    /// kept with chance q it is read as partial with chance q and solved (unsolved) otherwise;
    /// without a streak, partial.
    fn predicted(&self, id: u32, _n_rollouts: u32) -> [f64; 3] {
        let keep = self.keep_probability(id);
        if self.easy[id as usize] > 0 {
            [0.0, keep, 1.0 - keep]
        } else if self.hard[id as usize] > 0 {
            [1.0 - keep, keep, 0.0]
        } else {
            [0.0, 1.0, 0.0]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trip() {
        let cfg = GresoConfig {
            adapt_from_epoch: 0,
            ..Default::default()
        };
        crate::selector::contract::holds(Greso::new(30, cfg).unwrap());
    }

    #[test]
    fn streaked_prompts_are_skipped_and_p_adapts() {
        let n = 1000;
        let cfg = GresoConfig {
            adapt_from_epoch: 0,
            ..Default::default()
        };
        let mut g = Greso::new(n, cfg).unwrap();
        let ids: Vec<i64> = (0..n as i64).collect();
        // Every prompt all correct, three times: p_easy falls, easy prompts are mostly skipped.
        for _ in 0..3 {
            g.observe(&Observations::new(n, &ids, &vec![8; n], &vec![8; n]).unwrap())
                .unwrap();
        }
        assert!((g.probabilities().0 - 0.47).abs() < 1e-12);
        assert!((g.probabilities().1 - 0.53).abs() < 1e-12);
        g.select(50).unwrap();
        // keep chance 0.47^3 ~ 0.10: about 450 skipped for 50 kept.
        assert!(g.skipped() > 200, "skipped {}", g.skipped());
    }

    fn all_groups(g: &mut Greso, n: usize, correct: &[i64]) {
        let ids: Vec<i64> = (0..n as i64).collect();
        g.observe(&Observations::new(n, &ids, correct, &vec![8; n]).unwrap())
            .unwrap();
    }

    #[test]
    fn released_default_adapts_only_from_the_second_epoch() {
        // 40 prompts, 10 per select: an epoch is four steps. Every group all correct.
        let n = 40;
        let mut g = Greso::new(n, GresoConfig::default()).unwrap();
        all_groups(&mut g, n, &[8; 40]);
        assert_eq!(g.probabilities(), (0.5, 0.5), "no select yet: epoch 0");
        for _ in 0..4 {
            g.select(1).unwrap();
            all_groups(&mut g, n, &[8; 40]);
            assert_eq!(g.epoch_index(), 0);
            assert_eq!(g.probabilities(), (0.5, 0.5), "epoch 0 never adapts");
        }
        // Skips can make the first epoch end early; select until the second epoch starts.
        while g.epoch_index() == 0 {
            g.select(1).unwrap();
        }
        all_groups(&mut g, n, &[8; 40]);
        assert!(
            (g.probabilities().0 - 0.49).abs() < 1e-12,
            "{:?}",
            g.probabilities()
        );
    }

    #[test]
    fn a_share_equal_to_its_target_lowers_p() {
        let cfg = GresoConfig {
            adapt_from_epoch: 0,
            target_easy: 0.25,
            target_hard: 0.5,
            ..Default::default()
        };
        let mut g = Greso::new(4, cfg).unwrap();
        // One easy group in four (share 0.25 = target) and two hard (0.5 = target): both fall.
        all_groups(&mut g, 4, &[8, 0, 0, 3]);
        assert!((g.probabilities().0 - 0.49).abs() < 1e-12);
        assert!((g.probabilities().1 - 0.49).abs() < 1e-12);
    }
}
