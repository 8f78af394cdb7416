//! MoPPS: a Beta posterior of each prompt's success rate; selection draws one sample per prompt
//! and takes those closest to the target rate (0.5).

use crate::beta::Beliefs;
use crate::error::{invalid, Result};
use crate::observe::Observations;
use crate::pending::{FlightState, Pending};
use crate::pool::{check_ratio, CandidatePool};
use crate::rng::stream;
use crate::sampler::{EpochOrder, OrderState};
use crate::scoring::{draw_scores, select_best, StepScores};
use crate::selector::{Predictor, Selector};

crate::record! {
    /// MoPPS's options (docs/method.md).
    #[derive(Clone, Debug, PartialEq)]
    pub struct MoppsConfig {
        pub decay: f64,
        pub prior_a: f64,
        pub prior_b: f64,
        pub target: f64,
        /// The threshold variant's band [lo, hi]: draws inside it are taken first, in random order.
        pub threshold: Option<(f64, f64)>,
        /// Draw only for a pool of floor(ratio x batch_size) prompts (see `pool`); None: all.
        pub candidate_ratio: Option<f64>,
        pub seed: u64,
    }
}

crate::record! {
    /// What MoPPS saves.
    #[derive(Clone, Debug, PartialEq)]
    pub struct MoppsState {
        pub step: u64,
        /// Each prompt's Beta(a, b).
        pub a: Vec<f64> [N],
        pub b: Vec<f64> [N],
        /// The ids handed out: this step's, and earlier steps' still in flight.
        pub flight: FlightState as "",
        /// The candidate pool's epoch order (empty while the whole dataset is scored).
        pub pool: OrderState as "pool_",
    }
}

impl Default for MoppsConfig {
    fn default() -> Self {
        MoppsConfig {
            decay: 1.0,
            prior_a: 1.0,
            prior_b: 1.0,
            target: 0.5,
            threshold: None,
            candidate_ratio: None,
            seed: 0,
        }
    }
}

impl MoppsConfig {
    fn validate(&self) -> Result<()> {
        if !(self.decay > 0.0 && self.decay <= 1.0) {
            return invalid(format!("decay must be in (0, 1], got {}", self.decay));
        }
        if !(self.prior_a > 0.0
            && self.prior_b > 0.0
            && self.prior_a.is_finite()
            && self.prior_b.is_finite())
        {
            return invalid("prior_a and prior_b must be positive and finite");
        }
        if !(0.0..=1.0).contains(&self.target) {
            return invalid("target must lie in [0, 1]");
        }
        if let Some((lo, hi)) = self.threshold {
            if !(0.0 <= lo && lo <= hi && hi <= 1.0) {
                return invalid(format!(
                    "threshold [{lo}, {hi}] must satisfy 0 <= lo <= hi <= 1"
                ));
            }
        }
        check_ratio(self.candidate_ratio)
    }
}

/// The threshold variant's score of a draw g: draws inside [lo, hi] first (their order is the
/// random tie-break); the rest by their distance to the nearest edge of the band, as the
/// released sampler ranks them when fewer than B draws fall inside.
pub(crate) fn band_score(g: f64, (lo, hi): (f64, f64)) -> f32 {
    if g < lo {
        -((lo - g) as f32)
    } else if g > hi {
        -((g - hi) as f32)
    } else {
        1.0
    }
}

#[derive(Clone, Debug)]
pub struct Mopps {
    cfg: MoppsConfig,
    pub(crate) beliefs: Beliefs,
    pub(crate) pending: Pending,
    pub(crate) step: u64,
    pub(crate) pool: CandidatePool,
    scores: StepScores,
}

impl Mopps {
    pub fn new(num_prompts: usize, cfg: MoppsConfig) -> Result<Self> {
        crate::error::check_num_prompts(num_prompts)?;
        cfg.validate()?;
        Ok(Mopps {
            beliefs: Beliefs::new(num_prompts, cfg.prior_a, cfg.prior_b),
            pending: Pending::new(num_prompts),
            step: 0,
            scores: StepScores::default(),
            pool: CandidatePool::new(cfg.candidate_ratio, cfg.seed)?,
            cfg,
        })
    }

    pub fn posterior(&self, id: u32) -> (f64, f64) {
        self.beliefs.posterior(id)
    }
}

/// One Beta draw per prompt, turned into a score where higher is better.
fn draw(cfg: &MoppsConfig, Beliefs { a, b }: &Beliefs, step: u64) -> Vec<f32> {
    draw_scores(a.len(), (cfg.seed, stream::MOPPS, step), |rng, i| {
        let g = rng.beta(a[i], b[i]);
        match cfg.threshold {
            Some(band) => band_score(g, band),
            None => -((g - cfg.target) * (g - cfg.target)) as f32,
        }
    })
}

impl Selector for Mopps {
    type Config = MoppsConfig;
    type State = MoppsState;

    fn config(&self) -> &MoppsConfig {
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
        groups.check_unit_rewards("MoPPS")
    }

    fn update(&mut self, groups: &Observations) {
        let lam = self.cfg.decay;
        let Beliefs { a, b } = &mut self.beliefs;
        for g in groups.groups() {
            let i = g.id as usize;
            let s = g.successes;
            let f = g.n_rollouts as f64 - g.successes;
            a[i] = lam * a[i] + (1.0 - lam) * self.cfg.prior_a + s;
            b[i] = lam * b[i] + (1.0 - lam) * self.cfg.prior_b + f;
        }
        self.step += 1;
    }

    fn state(&self) -> MoppsState {
        MoppsState {
            step: self.step,
            a: self.beliefs.a.clone(),
            b: self.beliefs.b.clone(),
            flight: self.pending.state(),
            pool: self.pool.order().state(),
        }
    }

    fn restore(&self, state: MoppsState) -> Result<Self> {
        let (n, cfg) = (self.num_prompts(), &self.cfg);
        let mut m = Mopps::new(n, cfg.clone())?;
        let order = EpochOrder::restore(cfg.seed, n, &state.pool)?;
        m.pool = CandidatePool::restore(cfg.candidate_ratio, n, order)?;
        m.beliefs = Beliefs::restore(n, state.a, state.b)?;
        m.pending = Pending::restore(n, &state.flight)?;
        m.step = state.step;
        Ok(m)
    }
}

impl Predictor for Mopps {
    fn predicted(&self, id: u32, n_rollouts: u32) -> [f64; 3] {
        self.beliefs.predicted(id, n_rollouts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::key;
    use crate::topk::top_k_among;

    #[test]
    fn prefers_prompts_near_half() {
        let n = 300;
        let mut m = Mopps::new(n, MoppsConfig::default()).unwrap();
        // Prompts 0..100 always solved, 100..200 never, 200..300 half the time.
        let ids: Vec<i64> = (0..n as i64).collect();
        let correct: Vec<i64> = ids
            .iter()
            .map(|&i| {
                if i < 100 {
                    8
                } else if i < 200 {
                    0
                } else {
                    4
                }
            })
            .collect();
        for _ in 0..5 {
            m.observe(&Observations::new(n, &ids, &correct, &vec![8; n]).unwrap())
                .unwrap();
        }
        let picked = m.select(50).unwrap();
        assert!(picked.iter().all(|&i| i >= 200), "{picked:?}");
        let (a, b) = m.posterior(0);
        assert_eq!((a, b), (41.0, 1.0));
    }

    #[test]
    fn out_of_band_draws_rank_by_distance_to_the_nearest_edge() {
        // An off-centre band [0.6, 0.9] with target 0.5: 0.55 is 0.05 from the band's edge and
        // 0.95 is 0.05 too, while 0.3 is 0.3 away; ranking by the target would put 0.3 (0.2
        // away from 0.5) before 0.95 (0.45 away).
        let band = (0.6, 0.9);
        let s: Vec<f32> = [0.7, 0.55, 0.95, 0.3]
            .iter()
            .map(|&g| band_score(g, band))
            .collect();
        assert_eq!(s[0], 1.0);
        assert!((s[1] - s[2]).abs() < 1e-6 && s[2] > s[3], "{s:?}");
        // Selection follows: with B = 3 out of draws forced by a sharp posterior.
        let cfg = MoppsConfig {
            threshold: Some(band),
            ..Default::default()
        };
        let mut m = Mopps::new(3, cfg).unwrap();
        // Posteriors sharply at 0.3, 0.95 and 0.58.
        m.beliefs.a = vec![3e5, 9.5e5, 5.8e5];
        m.beliefs.b = vec![7e5, 0.5e5, 4.2e5];
        let picked = m.select(2).unwrap();
        assert_eq!(
            picked,
            vec![2, 1],
            "the nearest-edge order: 0.58 (0.02), 0.95 (0.05), not 0.3"
        );
    }

    #[test]
    fn a_pool_takes_the_best_draws_within_it_and_restores_exactly() {
        let cfg = MoppsConfig {
            decay: 0.5,
            candidate_ratio: Some(4.0),
            seed: 3,
            ..Default::default()
        };
        let n = 80;
        let mut m = Mopps::new(n, cfg).unwrap();
        let mut seen = Vec::new();
        for step in 0..5 {
            let all = draw(&m.cfg, &m.beliefs, m.step);
            let picked = m.select(4).unwrap();
            let pool = &m.pool.order().order[m.pool.order().cursor - 16..m.pool.order().cursor];
            let tie_seed = key(&[3, stream::TIE_BREAK, step]);
            assert_eq!(picked, top_k_among(&all, pool, 4, tie_seed));
            seen.extend_from_slice(pool);
            let ids: Vec<i64> = picked.iter().map(|&i| i as i64).collect();
            m.observe(&Observations::new(n, &ids, &[0, 3, 5, 8], &[8; 4]).unwrap())
                .unwrap();
        }
        seen.sort();
        assert_eq!(
            seen,
            (0..80).collect::<Vec<_>>(),
            "five pools of 16 cover the epoch"
        );
        let mut r = m.restore(m.state()).unwrap();
        for _ in 0..8 {
            let x = m.select(4).unwrap();
            assert_eq!(x, r.select(4).unwrap());
            let ids: Vec<i64> = x.iter().map(|&i| i as i64).collect();
            let obs = Observations::new(n, &ids, &[1, 1, 7, 8], &[8; 4]).unwrap();
            m.observe(&obs).unwrap();
            r.observe(&obs).unwrap();
        }
        assert_eq!(m.pool.order(), r.pool.order());
    }

    #[test]
    fn state_round_trip() {
        for candidate_ratio in [None, Some(2.0)] {
            let cfg = MoppsConfig {
                decay: 0.6,
                candidate_ratio,
                ..Default::default()
            };
            crate::selector::contract::holds(Mopps::new(30, cfg).unwrap());
        }
    }

    #[test]
    fn graded_groups_count_their_reward_sum_and_must_lie_in_the_unit_interval() {
        use crate::observe::GradedRule;
        let rule = GradedRule {
            spread_tol: 1e-8,
            success_at: 0.5,
        };
        let mut m = Mopps::new(4, MoppsConfig::default()).unwrap();
        let graded = Observations::graded(4, &[1], &[4], &[0.375], &[0.2], rule).unwrap();
        m.observe(&graded).unwrap();
        assert_eq!(m.posterior(1), (2.5, 3.5));
        let before = m.state();
        let outside = Observations::graded(4, &[2], &[4], &[1.25], &[0.2], rule).unwrap();
        let err = m.observe(&outside).unwrap_err().to_string();
        assert!(err.contains("MoPPS") && err.contains("[0, 1]"), "{err}");
        assert_eq!(m.state(), before, "a refused group changes nothing");
    }
}
