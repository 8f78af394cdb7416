//! BOTS (Bayesian Online Task Selection, Shen et al., arXiv 2510.26374): a Beta belief about
//! each prompt's success rate, with forgetting, fed by explicit evidence (the counts of the
//! prompts rolled out) and implicit evidence (a predicted success rate for every other prompt);
//! selection takes the B prompts whose Thompson draw lies closest to a target success rate.
//!
//! After each step, for every prompt k (lambda: forgetting, rho: weight of implicit evidence):
//!
//!   a_k <- (1 - lambda) a_k + lambda a0 + e_k,   b_k likewise with b0 and f_k, where
//!   e_k = s_k (its successes) when k was rolled out, else rho * p~_k * m;
//!   f_k = (n_k - s_k), else rho * (1 - p~_k) * m.
//!
//! An observed prompt takes its counts in full: the paper's (1 - rho) s + rho s~ with the
//! plug-in's estimate s~ of an evaluated prompt being its own result (the released estimator
//! overwrites p~ with the observed pass rate). p~ is the interpolation plug-in: each prompt
//! carries two anchor pass rates (r0, r1) (the paper: two reference models'), and
//!
//!   p~_k = clip(r0_k + c (r1_k - r0_k), 0, 1),
//!   c <- smoothing * c + (1 - smoothing) * (mean pass rate of the step's groups - mean r0 over
//!        them) / (mean r1 over them - mean r0 over them + 1e-6),
//!
//! c taken as its first estimate on the first step. The plug-in needs anchors: without them
//! there is no implicit evidence (anchors of (0, 1) for every prompt make p~ the smoothed pass
//! rate of the rolled-out groups, a population-level guess the Python layer offers as
//! `anchors="population"`).

use rayon::prelude::*;

use crate::beta::Beliefs;
use crate::error::{invalid, Result};
use crate::observe::{Group, Observations};
use crate::pending::{FlightState, Pending};
use crate::pool::{check_ratio, CandidatePool};
use crate::rng::stream;
use crate::sampler::{EpochOrder, OrderState};
use crate::scoring::{draw_scores, select_best, StepScores};
use crate::selector::{Predictor, Selector};

/// Prompts per task of the belief update.
const CHUNK: usize = 1 << 14;
/// The interpolation's guard against equal anchor means (as released).
const ANCHOR_EPS: f64 = 1e-6;

crate::record! {
    /// BOTS's options (docs/method.md); its anchors are data given beside them.
    #[derive(Clone, Debug, PartialEq)]
    pub struct BotsConfig {
        /// lambda: the share of the belief forgotten (pulled back to the prior) each step.
        pub forgetting: f64,
        /// rho: the weight of implicit evidence.
        pub implicit_weight: f64,
        pub prior_a: f64,
        pub prior_b: f64,
        pub target: f64,
        /// m: the pseudo-rollouts implicit evidence counts for; None: the step's mean group size.
        pub pseudo_count: Option<f64>,
        /// How much of the capability estimate c each step keeps.
        pub smoothing: f64,
        /// Thompson draws (the paper); false ranks by the posterior mean.
        pub thompson: bool,
        pub candidate_ratio: Option<f64>,
        pub seed: u64,
    }
}

crate::record! {
    /// What BOTS saves.
    #[derive(Clone, Debug, PartialEq)]
    pub struct BotsState {
        pub step: u64,
        /// Each prompt's Beta(a, b).
        pub a: Vec<f64> [N],
        pub b: Vec<f64> [N],
        /// The capability estimate c; None before the first estimate (or without anchors).
        pub capability: Option<f64>,
        /// The ids handed out: this step's, and earlier steps' still in flight.
        pub flight: FlightState as "",
        pub pool: OrderState as "pool_",
    }
}

impl Default for BotsConfig {
    fn default() -> Self {
        BotsConfig {
            forgetting: 0.1,
            implicit_weight: 0.1,
            prior_a: 1.0,
            prior_b: 1.0,
            target: 0.5,
            pseudo_count: None,
            smoothing: 0.9,
            thompson: true,
            candidate_ratio: None,
            seed: 0,
        }
    }
}

impl BotsConfig {
    fn validate(&self) -> Result<()> {
        let unit = |x: f64| (0.0..=1.0).contains(&x);
        if !unit(self.forgetting) {
            return invalid(format!(
                "forgetting must be in [0, 1], got {}",
                self.forgetting
            ));
        }
        if !unit(self.implicit_weight) {
            return invalid(format!(
                "implicit_weight must be in [0, 1], got {}",
                self.implicit_weight
            ));
        }
        if !(self.prior_a > 0.0
            && self.prior_b > 0.0
            && self.prior_a.is_finite()
            && self.prior_b.is_finite())
        {
            return invalid("prior_a and prior_b must be positive and finite");
        }
        if !unit(self.target) {
            return invalid(format!("target must lie in [0, 1], got {}", self.target));
        }
        if let Some(m) = self.pseudo_count {
            if !(m.is_finite() && m > 0.0) {
                return invalid(format!("pseudo_count must be positive and finite, got {m}"));
            }
        }
        if !unit(self.smoothing) {
            return invalid(format!(
                "smoothing must be in [0, 1], got {}",
                self.smoothing
            ));
        }
        check_ratio(self.candidate_ratio)
    }
}

fn check_anchors(anchors: &[[f64; 2]], num_prompts: usize) -> Result<()> {
    if !anchors.is_empty() && anchors.len() != num_prompts {
        return invalid(format!(
            "anchors hold {} prompts, expected {num_prompts}",
            anchors.len()
        ));
    }
    if let Some(i) = anchors
        .iter()
        .position(|r| !r.iter().all(|x| (0.0..=1.0).contains(x)))
    {
        return invalid(format!(
            "anchors[{i}] = {:?}: pass rates must lie in [0, 1]",
            anchors[i]
        ));
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub struct Bots {
    cfg: BotsConfig,
    /// (r0, r1) per prompt; empty: no implicit evidence.
    anchors: Vec<[f64; 2]>,
    pub(crate) beliefs: Beliefs,
    /// The capability estimate c; NaN until the first step with groups, and without anchors.
    pub(crate) capability: f64,
    pub(crate) pending: Pending,
    pub(crate) step: u64,
    pub(crate) pool: CandidatePool,
    scores: StepScores,
}

impl Bots {
    pub fn new(num_prompts: usize, cfg: BotsConfig, anchors: Vec<[f64; 2]>) -> Result<Self> {
        crate::error::check_num_prompts(num_prompts)?;
        cfg.validate()?;
        check_anchors(&anchors, num_prompts)?;
        Ok(Bots {
            beliefs: Beliefs::new(num_prompts, cfg.prior_a, cfg.prior_b),
            capability: f64::NAN,
            pending: Pending::new(num_prompts),
            step: 0,
            scores: StepScores::default(),
            pool: CandidatePool::new(cfg.candidate_ratio, cfg.seed)?,
            anchors,
            cfg,
        })
    }

    pub fn anchors(&self) -> &[[f64; 2]] {
        &self.anchors
    }

    pub fn posterior(&self, id: u32) -> (f64, f64) {
        self.beliefs.posterior(id)
    }

    pub fn capability(&self) -> Option<f64> {
        (!self.capability.is_nan()).then_some(self.capability)
    }

    /// The plug-in's success rate for prompt i (which must have anchors), given the capability c.
    pub fn implicit_rate(&self, i: usize, c: f64) -> f64 {
        let [r0, r1] = self.anchors[i];
        (r0 + c * (r1 - r0)).clamp(0.0, 1.0)
    }

    /// The capability estimate after a step with these groups (unchanged without groups or anchors).
    fn next_capability(&self, groups: &[Group]) -> f64 {
        if groups.is_empty() || self.anchors.is_empty() {
            return self.capability;
        }
        let n = groups.len() as f64;
        let (mut rate, mut r0, mut r1) = (0.0, 0.0, 0.0);
        for g in groups {
            let [lo, hi] = self.anchors[g.id as usize];
            rate += g.rate();
            r0 += lo;
            r1 += hi;
        }
        let (rate, r0, r1) = (rate / n, r0 / n, r1 / n);
        let estimate = (rate - r0) / (r1 - r0 + ANCHOR_EPS);
        if self.capability.is_nan() {
            estimate
        } else {
            self.cfg.smoothing * self.capability + (1.0 - self.cfg.smoothing) * estimate
        }
    }
}

impl Selector for Bots {
    type Config = BotsConfig;
    type State = BotsState;

    fn config(&self) -> &BotsConfig {
        &self.cfg
    }

    fn num_prompts(&self) -> usize {
        self.beliefs.len()
    }

    fn step(&self) -> u64 {
        self.step
    }

    fn select(&mut self, batch_size: usize) -> Result<Vec<u32>> {
        self.pending.check_room(self.beliefs.len(), batch_size)?;
        let (cfg, beliefs, step) = (&self.cfg, &self.beliefs, self.step);
        let scores = self.scores.of_step(step, || draw(cfg, beliefs, step));
        select_best(
            scores,
            batch_size,
            (self.cfg.seed, self.step),
            &mut self.pool,
            &mut self.pending,
        )
    }

    fn pending(&self) -> &Pending {
        &self.pending
    }

    fn pending_mut(&mut self) -> &mut Pending {
        &mut self.pending
    }

    /// A graded group counts n x mean successes (rewards in [0, 1]).
    fn accepts(&self, groups: &Observations) -> Result<()> {
        groups.check_unit_rewards("BOTS")
    }

    /// A prompt still in flight takes no implicit evidence: its own group is on the way.
    fn update(&mut self, obs: &Observations) {
        let groups = obs.groups();
        let capability = self.next_capability(groups);
        let m = self.cfg.pseudo_count.unwrap_or_else(|| {
            let total: u64 = groups.iter().map(|g| g.n_rollouts as u64).sum();
            total as f64 / groups.len().max(1) as f64
        });
        // No implicit evidence without anchors, before the first capability estimate, or
        // without a group size.
        let implicit = if self.anchors.is_empty() || capability.is_nan() || m == 0.0 {
            0.0
        } else {
            self.cfg.implicit_weight
        };
        let (keep, lam) = (1.0 - self.cfg.forgetting, self.cfg.forgetting);
        let (a0, b0) = (self.cfg.prior_a, self.cfg.prior_b);
        let Beliefs { mut a, mut b } = std::mem::take(&mut self.beliefs);
        let this = &*self;
        let update = |start: usize, a: &mut [f64], b: &mut [f64]| {
            let mut seen = obs.in_range(start, start + a.len()).iter().peekable();
            for j in 0..a.len() {
                let i = start + j;
                let (s, f) = match seen.peek() {
                    Some(g) if g.id as usize == i => {
                        let g = seen.next().unwrap();
                        (g.successes, g.n_rollouts as f64 - g.successes)
                    }
                    _ if implicit > 0.0 && !this.pending.contains(i as u32) => {
                        let p = this.implicit_rate(i, capability);
                        (implicit * p * m, implicit * (1.0 - p) * m)
                    }
                    _ => (0.0, 0.0),
                };
                a[j] = keep * a[j] + lam * a0 + s;
                b[j] = keep * b[j] + lam * b0 + f;
            }
        };
        a.par_chunks_mut(CHUNK)
            .zip(b.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(c, (a, b))| update(c * CHUNK, a, b));
        self.beliefs = Beliefs { a, b };
        self.capability = capability;
        self.step += 1;
    }

    fn state(&self) -> BotsState {
        BotsState {
            step: self.step,
            a: self.beliefs.a.clone(),
            b: self.beliefs.b.clone(),
            capability: self.capability(),
            flight: self.pending.state(),
            pool: self.pool.order().state(),
        }
    }

    fn restore(&self, state: BotsState) -> Result<Self> {
        let (n, cfg) = (self.num_prompts(), &self.cfg);
        let mut bots = Bots::new(n, cfg.clone(), self.anchors.clone())?;
        let order = EpochOrder::restore(cfg.seed, n, &state.pool)?;
        bots.pool = CandidatePool::restore(cfg.candidate_ratio, n, order)?;
        bots.beliefs = Beliefs::restore(n, state.a, state.b)?;
        bots.capability = match state.capability {
            None => f64::NAN,
            Some(c) if c.is_finite() => c,
            Some(c) => {
                return invalid(format!(
                    "capability must be a finite number, or None before the first step; got {c}"
                ))
            }
        };
        bots.pending = Pending::restore(n, &state.flight)?;
        bots.step = state.step;
        Ok(bots)
    }
}

impl Predictor for Bots {
    fn predicted(&self, id: u32, n_rollouts: u32) -> [f64; 3] {
        self.beliefs.predicted(id, n_rollouts)
    }
}

/// One draw (or the posterior mean) per prompt, turned into a score where higher is better.
fn draw(cfg: &BotsConfig, Beliefs { a, b }: &Beliefs, step: u64) -> Vec<f32> {
    draw_scores(a.len(), (cfg.seed, stream::BOTS, step), |rng, i| {
        let g = if cfg.thompson {
            rng.beta(a[i], b[i])
        } else {
            a[i] / (a[i] + b[i])
        };
        -((g - cfg.target).abs() as f32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(n: usize, ids: &[i64], c: &[i64], k: i64) -> Observations {
        Observations::new(n, ids, c, &vec![k; ids.len()]).unwrap()
    }

    #[test]
    fn first_step_matches_hand_computation() {
        let mut bots = Bots::new(3, BotsConfig::default(), vec![[0.0, 1.0]; 3]).unwrap();
        bots.observe(&obs(3, &[0], &[6], 8)).unwrap();
        // Observed: 0.9 * 1 + 0.1 * 1 + 6 = 7, 0.9 + 0.1 + 2 = 3.
        assert_eq!(bots.posterior(0), (7.0, 3.0));
        // c = 0.75 / (1 + 1e-6); unobserved: 1 + 0.1 * c * 8, 1 + 0.1 * (1 - c) * 8.
        let c = 0.75 / (1.0 + 1e-6);
        let (a, b) = bots.posterior(1);
        assert!((a - (1.0 + 0.8 * c)).abs() < 1e-12 && (b - (1.0 + 0.8 * (1.0 - c))).abs() < 1e-12);
        assert_eq!(bots.capability(), Some(c));
    }

    #[test]
    fn without_anchors_there_is_no_implicit_evidence() {
        let mut bots = Bots::new(3, BotsConfig::default(), Vec::new()).unwrap();
        bots.observe(&obs(3, &[0], &[6], 8)).unwrap();
        assert_eq!(bots.posterior(0), (7.0, 3.0));
        assert_eq!(
            bots.posterior(1),
            (1.0, 1.0),
            "forgetting toward the prior only"
        );
        assert_eq!(bots.capability(), None);
    }

    #[test]
    fn anchors_interpolate_and_capability_is_smoothed() {
        let anchors = vec![[0.1, 0.5], [0.2, 0.9], [0.0, 0.4]];
        let cfg = BotsConfig {
            forgetting: 0.0,
            implicit_weight: 0.5,
            pseudo_count: Some(4.0),
            ..Default::default()
        };
        let mut bots = Bots::new(3, cfg, anchors).unwrap();
        bots.observe(&obs(3, &[0], &[2], 8)).unwrap(); // rate 0.25: c1 = 0.15 / (0.4 + 1e-6)
        let c1 = 0.15 / (0.4 + 1e-6);
        bots.observe(&obs(3, &[1], &[8], 8)).unwrap(); // rate 1: estimate 0.8 / (0.7 + 1e-6)
        let c2 = 0.9 * c1 + 0.1 * (0.8 / (0.7 + 1e-6));
        assert!((bots.capability().unwrap() - c2).abs() < 1e-12);
        // Prompt 2 was never rolled out: two steps of implicit evidence, rho * p~ * m each.
        let p1 = (0.4 * c1).clamp(0.0, 1.0);
        let p2 = (0.4 * c2).clamp(0.0, 1.0);
        let (a, b) = bots.posterior(2);
        assert!((a - (1.0 + 2.0 * p1 + 2.0 * p2)).abs() < 1e-12);
        assert!((b - (1.0 + 2.0 * (1.0 - p1) + 2.0 * (1.0 - p2))).abs() < 1e-12);
    }

    #[test]
    fn prefers_prompts_near_the_target() {
        let n = 300;
        let cfg = BotsConfig {
            implicit_weight: 0.0,
            ..Default::default()
        };
        let mut bots = Bots::new(n, cfg, Vec::new()).unwrap();
        let ids: Vec<i64> = (0..n as i64).collect();
        let correct: Vec<i64> = ids.iter().map(|&i| [8, 0, 4][i as usize / 100]).collect();
        for _ in 0..5 {
            bots.observe(&obs(n, &ids, &correct, 8)).unwrap();
        }
        let picked = bots.select(50).unwrap();
        assert!(picked.iter().all(|&i| i >= 200), "{picked:?}");
    }

    #[test]
    fn restore_continues_exactly_and_rejects_bad_state() {
        let cfg = BotsConfig {
            seed: 4,
            candidate_ratio: Some(3.0),
            ..Default::default()
        };
        let n = 40;
        let mut bots = Bots::new(n, cfg, Vec::new()).unwrap();
        for step in 0..6 {
            let picked = bots.select(4).unwrap();
            let ids: Vec<i64> = picked.iter().map(|&i| i as i64).collect();
            let c: Vec<i64> = (0..4).map(|j| (j + step) % 9).collect();
            bots.observe(&obs(n, &ids, &c, 8)).unwrap();
        }
        let mut copy = bots.restore(bots.state()).unwrap();
        for _ in 0..5 {
            let x = bots.select(4).unwrap();
            assert_eq!(x, copy.select(4).unwrap());
            let ids: Vec<i64> = x.iter().map(|&i| i as i64).collect();
            let o = obs(n, &ids, &[1, 4, 7, 8], 8);
            bots.observe(&o).unwrap();
            copy.observe(&o).unwrap();
        }
        assert_eq!(bots.beliefs.a, copy.beliefs.a);
        let mut bad = bots.state();
        bad.a[3] = f64::NAN;
        let err = bots.restore(bad).unwrap_err();
        assert!(err.to_string().contains("positive and finite"), "{err}");
        let bad = BotsState {
            capability: Some(f64::INFINITY),
            ..bots.state()
        };
        let err = bots.restore(bad).unwrap_err();
        assert!(err.to_string().contains("capability"), "{err}");
    }

    #[test]
    fn state_round_trip() {
        let anchors: Vec<[f64; 2]> = (0..30).map(|i| [i as f64 / 60.0, 0.9]).collect();
        let cfg = BotsConfig {
            candidate_ratio: Some(2.5),
            ..Default::default()
        };
        crate::selector::contract::holds(Bots::new(30, cfg, anchors).unwrap());
    }

    #[test]
    fn rejects_bad_config_and_anchors() {
        let bad = |cfg: BotsConfig| Bots::new(4, cfg, Vec::new()).unwrap_err().to_string();
        assert!(bad(BotsConfig {
            forgetting: 1.5,
            ..Default::default()
        })
        .contains("forgetting"));
        assert!(bad(BotsConfig {
            implicit_weight: -0.1,
            ..Default::default()
        })
        .contains("implicit_weight"));
        assert!(bad(BotsConfig {
            prior_a: 0.0,
            ..Default::default()
        })
        .contains("prior_a"));
        assert!(bad(BotsConfig {
            target: f64::NAN,
            ..Default::default()
        })
        .contains("target"));
        assert!(bad(BotsConfig {
            pseudo_count: Some(0.0),
            ..Default::default()
        })
        .contains("pseudo_count"));
        assert!(bad(BotsConfig {
            smoothing: 2.0,
            ..Default::default()
        })
        .contains("smoothing"));
        let err = Bots::new(2, BotsConfig::default(), vec![[0.0, 1.0]]).unwrap_err();
        assert!(err.to_string().contains("expected 2"));
        let err = Bots::new(1, BotsConfig::default(), vec![[0.0, 1.5]]).unwrap_err();
        assert!(err.to_string().contains("[0, 1]"));
    }
}
