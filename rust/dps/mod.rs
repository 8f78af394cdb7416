//! DPS: a 3-state hidden Markov model per prompt, filtered online from observed groups
//! (docs/method.md#filter), and top-B selection on the predicted probability of "partially solved".
//!
//! Storage per prompt: alpha (3x3, f32) and the posterior (3, f32) in one record, the selection
//! score (f32) in a column (see `store`): 52 bytes, plus 4 for each prompt whose state may still
//! change (see `kernel`). Arithmetic is done in f64 from the stored values; the score is always a
//! pure function of the stored (alpha, posterior), so a saved state reloads to exactly the same
//! selections.

mod kernel;
mod store;

use store::Store;

use crate::error::{invalid, Result};
use crate::observe::{Observations, PARTIAL};
use crate::pending::{FlightState, Pending};
use crate::pool::{check_ratio, CandidatePool};
use crate::sampler::{EpochOrder, OrderState};
use crate::scoring::select_best;
use crate::selector::{Predictor, Selector};

pub const STATES: usize = 3;

/// Concentration matrices alpha0[to][from] (docs/method.md#dps-options).
pub const PRIOR_ONES: [[f64; 3]; 3] = [[1.0; 3]; 3];
pub const PRIOR_PROGRESS: [[f64; 3]; 3] = [[1.0, 0.5, 0.5], [1.0, 1.0, 0.5], [1.0, 1.0, 1.0]];
pub const PRIOR_STABILITY: [[f64; 3]; 3] = [[1.0, 0.5, 0.5], [0.5, 1.0, 0.5], [0.5, 0.5, 1.0]];
pub const PRIOR_LOCAL: [[f64; 3]; 3] = [[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0]];
/// The structured priors by name.
pub const PRIORS: [(&str, [[f64; 3]; 3]); 4] = [
    ("ones", PRIOR_ONES),
    ("progress", PRIOR_PROGRESS),
    ("stability", PRIOR_STABILITY),
    ("local", PRIOR_LOCAL),
];

/// lambda of the default configuration: the paper's released MATH setting.
pub const DEFAULT_DECAY: f64 = 0.7;

crate::record! {
    /// DPS's options (docs/method.md#dps-options).
    #[derive(Clone, Debug, PartialEq)]
    pub struct DpsConfig {
        /// lambda in (0, 1]: how much of the transition counts survives each step.
        pub decay: f64,
        /// alpha0[to][from], the transition counts' prior.
        pub prior_alpha: [[f64; 3]; 3],
        /// The initial state distribution pi0.
        pub prior_state: [f64; 3],
        /// w in score = P(partial) + w * entropy(prior); 0 is the paper's plain top-k.
        pub entropy_weight: f64,
        /// Score only a pool of floor(ratio x batch_size) prompts from an epoch-wise shuffled
        /// order (see `pool`); None scores the whole dataset (the paper's setting).
        pub candidate_ratio: Option<f64>,
        pub seed: u64,
    }
}

crate::record! {
    /// What DPS saves: enough to continue exactly.
    #[derive(Clone, Debug, PartialEq)]
    pub struct DpsState {
        /// Each prompt's transition counts alpha[to][from].
        pub alpha: Vec<f32> [N, 3, 3],
        /// Each prompt's posterior over (unsolved, partial, solved).
        pub post: Vec<f32> [N, 3],
        pub step: u64,
        /// The ids handed out: this step's, and earlier steps' still in flight.
        pub flight: FlightState as "",
        /// The last step's counts of [observed state][predicted state].
        pub confusion: Vec<i64> [3, 3],
        /// The candidate pool's epoch order (empty while the whole dataset is scored).
        pub pool: OrderState as "pool_",
    }
}

impl Default for DpsConfig {
    fn default() -> Self {
        DpsConfig {
            decay: DEFAULT_DECAY,
            prior_alpha: PRIOR_ONES,
            prior_state: [1.0 / 3.0; 3],
            entropy_weight: 0.0,
            candidate_ratio: None,
            seed: 0,
        }
    }
}

impl DpsConfig {
    fn validate(&self) -> Result<()> {
        if !(self.decay > 0.0 && self.decay <= 1.0) {
            return invalid(format!("decay must be in (0, 1], got {}", self.decay));
        }
        let alpha0 = self.alpha0();
        if alpha0.iter().any(|a| !a.is_finite() || *a < 0.0) {
            return invalid("prior_alpha must be finite and non-negative");
        }
        if column_sums(&alpha0).iter().any(|s| *s <= 0.0) {
            return invalid("every column of prior_alpha needs a positive sum");
        }
        let pi0 = &self.prior_state;
        if pi0.iter().any(|p| !p.is_finite() || *p < 0.0) || pi0.iter().sum::<f64>() <= 0.0 {
            return invalid("prior_state must be finite, non-negative and not all zero");
        }
        if !self.entropy_weight.is_finite() {
            return invalid("entropy_weight must be finite");
        }
        check_ratio(self.candidate_ratio)
    }

    /// alpha0 flattened: alpha0[to * 3 + from].
    pub fn alpha0(&self) -> [f64; 9] {
        std::array::from_fn(|k| self.prior_alpha[k / 3][k % 3])
    }
}

#[inline(always)]
fn column_sums(a: &[f64; 9]) -> [f64; 3] {
    [a[0] + a[3] + a[6], a[1] + a[4] + a[7], a[2] + a[5] + a[8]]
}

#[inline(always)]
pub(crate) fn widen9(a: &[f32; 9]) -> [f64; 9] {
    a.map(|x| x as f64)
}

#[inline(always)]
pub(crate) fn widen3(p: &[f32; 3]) -> [f64; 3] {
    p.map(|x| x as f64)
}

/// P(alpha) @ post, renormalised: the predicted distribution of the next state.
/// Written with two divisions, as the per-step loop over every prompt is bound by them.
#[inline(always)]
pub fn predict(a: &[f64; 9], post: &[f64; 3]) -> [f64; 3] {
    let cs = column_sums(a);
    let inv = 1.0 / (cs[0] * cs[1] * cs[2]);
    let w = [
        post[0] * (cs[1] * cs[2] * inv),
        post[1] * (cs[0] * cs[2] * inv),
        post[2] * (cs[0] * cs[1] * inv),
    ];
    let p: [f64; 3] =
        std::array::from_fn(|i| a[3 * i] * w[0] + a[3 * i + 1] * w[1] + a[3 * i + 2] * w[2]);
    let total = p[0] + p[1] + p[2];
    if total > 0.0 && total.is_finite() {
        let inv_total = 1.0 / total;
        p.map(|x| x * inv_total)
    } else {
        [1.0 / 3.0; 3]
    }
}

#[inline(always)]
pub(crate) fn entropy(p: &[f64; 3]) -> f64 {
    -p.iter()
        .filter(|&&x| x > 0.0)
        .map(|&x| x * x.ln())
        .sum::<f64>()
}

#[inline]
fn argmax(p: &[f64; 3]) -> usize {
    let mut best = 0;
    for i in 1..STATES {
        if p[i] > p[best] {
            best = i;
        }
    }
    best
}

impl DpsConfig {
    #[inline]
    fn score(&self, a: &[f32; 9], post: &[f32; 3]) -> f32 {
        self.score_of(&predict(&widen9(a), &widen3(post)))
    }

    #[inline]
    fn score_of(&self, prior: &[f64; 3]) -> f32 {
        let mut s = prior[PARTIAL];
        if self.entropy_weight != 0.0 {
            s += self.entropy_weight * entropy(prior);
        }
        s as f32
    }

    #[inline]
    fn decayed(&self, a: &[f64; 9]) -> [f64; 9] {
        let (lam, alpha0) = (self.decay, self.alpha0());
        let mut out = [0.0; 9];
        for i in 0..9 {
            out[i] = lam * a[i] + (1.0 - lam) * alpha0[i];
        }
        out
    }

    /// The initial state distribution, normalised.
    fn initial(&self) -> [f64; 3] {
        let total: f64 = self.prior_state.iter().sum();
        self.prior_state.map(|p| p / total)
    }

    /// A prompt rolled out this step, in state y, given the prior its selection used.
    /// Returns the state that prior predicted.
    #[inline]
    fn update_observed(
        &self,
        alpha: &mut [f32; 9],
        post: &mut [f32; 3],
        prior: &[f64; 3],
        y: usize,
    ) -> usize {
        let a = widen9(alpha);
        let p = widen3(post);
        let predicted = argmax(prior);
        let cs = column_sums(&a);
        let xi: [f64; 3] = std::array::from_fn(|j| p[j] * a[3 * y + j] / cs[j]);
        let z = xi[0] + xi[1] + xi[2];
        let mut new = self.decayed(&a);
        // z = 0 happens when the model gives the observed transition no mass (the 'local'
        // prior's unsolved <-> solved jump): then no count is added, and no NaN appears.
        if z > 0.0 && z.is_finite() {
            for j in 0..3 {
                new[3 * y + j] += xi[j] / z;
            }
        }
        *alpha = new.map(|x| x as f32);
        *post = [0.0; 3];
        post[y] = 1.0;
        predicted
    }
}

#[derive(Clone, Debug)]
pub struct Dps {
    cfg: DpsConfig,
    cols: Store,
    /// The prompts the unobserved update may still change, sorted; None: all of them.
    unsettled: Option<Vec<u32>>,
    step: u64,
    pending: Pending,
    confusion: [[u64; 3]; 3],
    pool: CandidatePool,
}

impl Dps {
    pub fn new(num_prompts: usize, cfg: DpsConfig) -> Result<Self> {
        cfg.validate()?;
        crate::error::check_num_prompts(num_prompts)?;
        let initial = cfg.initial();
        let cols = Store::filled(
            num_prompts,
            cfg.alpha0().map(|a| a as f32),
            initial.map(|p| p as f32),
            cfg.score_of(&initial),
        );
        Ok(Dps {
            cols,
            unsettled: None,
            step: 0,
            pending: Pending::new(num_prompts),
            confusion: [[0; 3]; 3],
            pool: CandidatePool::new(cfg.candidate_ratio, cfg.seed)?,
            cfg,
        })
    }

    /// The last step's confusion counts, [observed state][predicted state].
    pub fn confusion(&self) -> [[u64; 3]; 3] {
        self.confusion
    }

    /// Bytes held per prompt by the filter and the selection.
    pub fn bytes_per_prompt(&self) -> f64 {
        let n = self.num_prompts() as f64;
        let unsettled = self.unsettled.as_ref().map_or(0, |v| v.capacity());
        ((self.cols.bytes() + 4 * unsettled) as f64 + n / 8.0) / n
    }

    pub fn scores(&self) -> &[f32] {
        &self.cols.score
    }

    /// The prior the last selection used for prompt i.
    fn prior_of(&self, i: usize) -> [f64; 3] {
        if self.step == 0 {
            // Before the first step the prior is pi0 itself, not P(alpha0) @ pi0 (docs/method.md#filter:
            // "post = prior = pi0"); from then on it is always P(alpha) @ post.
            return self.cfg.initial();
        }
        predict(
            &widen9(&self.cols.alpha_of(i)),
            &widen3(&self.cols.post_of(i)),
        )
    }
}

impl Selector for Dps {
    type Config = DpsConfig;
    type State = DpsState;

    fn config(&self) -> &DpsConfig {
        &self.cfg
    }

    fn num_prompts(&self) -> usize {
        self.cols.len()
    }

    fn step(&self) -> u64 {
        self.step
    }

    /// The `batch_size` prompts most likely to be partially solved, excluding those already
    /// selected in this step; among the candidate pool when there is one.
    fn select(&mut self, batch_size: usize) -> Result<Vec<u32>> {
        select_best(
            &self.cols.score,
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

    /// One filter step for every prompt: the observed ones take their evidence, the rest decay.
    /// A group that arrives late is evidence of the prompt's state now.
    fn update(&mut self, obs: &Observations) {
        // The observed prompts first, from their old values; then every prompt as if unobserved;
        // then the observed ones are written back over that.
        let mut confusion = [[0u64; 3]; 3];
        let observed: Vec<(usize, [f32; 9], [f32; 3])> = obs
            .groups()
            .iter()
            .map(|g| {
                let i = g.id as usize;
                let (mut a, mut p) = (self.cols.alpha_of(i), self.cols.post_of(i));
                let y = g.state();
                let predicted = self
                    .cfg
                    .update_observed(&mut a, &mut p, &self.prior_of(i), y);
                confusion[y][predicted] += 1;
                (i, a, p)
            })
            .collect();
        let dense = kernel::Dense {
            lam: self.cfg.decay,
            offset: self.cfg.alpha0().map(|a| (1.0 - self.cfg.decay) * a),
            fresh: (self.step == 0).then(|| self.cfg.initial()),
            entropy_weight: self.cfg.entropy_weight,
        };
        let ids = self
            .unsettled
            .take()
            .unwrap_or_else(|| (0..self.num_prompts() as u32).collect());
        let changed = kernel::update(&mut self.cols, &ids, &dense);
        let observed_ids: Vec<u32> = observed.iter().map(|o| o.0 as u32).collect();
        for (i, a, p) in observed {
            let s = self.cfg.score(&a, &p);
            self.cols.set(i, &a, &p, s);
        }
        self.unsettled = (self.step > 0).then(|| merge_sorted(&changed, &observed_ids));
        self.confusion = confusion;
        self.step += 1;
    }

    fn state(&self) -> DpsState {
        let n = self.num_prompts();
        DpsState {
            alpha: (0..n).flat_map(|i| self.cols.alpha_of(i)).collect(),
            post: (0..n).flat_map(|i| self.cols.post_of(i)).collect(),
            step: self.step,
            flight: self.pending.state(),
            confusion: self.confusion.iter().flatten().map(|&c| c as i64).collect(),
            pool: self.pool.order().state(),
        }
    }

    /// A filter with these options continued from `state`; refuses a state that does not fit.
    fn restore(&self, state: DpsState) -> Result<Self> {
        let (num_prompts, cfg) = (self.num_prompts(), &self.cfg);
        let mut dps = Dps::new(num_prompts, cfg.clone())?;
        if state.alpha.len() != num_prompts * 9 {
            return invalid(format!(
                "alpha holds {} values, expected {} x 3 x 3",
                state.alpha.len(),
                num_prompts
            ));
        }
        if state.post.len() != num_prompts * 3 {
            return invalid(format!(
                "post holds {} values, expected {} x 3",
                state.post.len(),
                num_prompts
            ));
        }
        if state.confusion.len() != 9 || state.confusion.iter().any(|&x| x < 0) {
            return invalid("confusion must hold 9 non-negative counts");
        }
        for (i, (a, p)) in state
            .alpha
            .chunks_exact(9)
            .zip(state.post.chunks_exact(3))
            .enumerate()
        {
            let a: [f32; 9] = a.try_into().unwrap();
            let p: [f32; 3] = p.try_into().unwrap();
            if a.iter().any(|x| !x.is_finite() || *x < 0.0)
                || column_sums(&widen9(&a)).iter().any(|s| *s <= 0.0)
            {
                return invalid(format!(
                    "alpha of prompt {i} is not a valid concentration matrix"
                ));
            }
            let total: f32 = p.iter().sum();
            if p.iter().any(|x| !x.is_finite() || *x < 0.0) || (total - 1.0).abs() > 1e-3 {
                return invalid(format!("post of prompt {i} is not a distribution"));
            }
            let score = if state.step > 0 {
                dps.cfg.score(&a, &p)
            } else {
                dps.cols.score[i]
            };
            dps.cols.set(i, &a, &p, score);
        }
        let order = EpochOrder::restore(cfg.seed, num_prompts, &state.pool)?;
        dps.pool = CandidatePool::restore(cfg.candidate_ratio, num_prompts, order)?;
        dps.pending = Pending::restore(num_prompts, &state.flight)?;
        dps.step = state.step;
        let c = &state.confusion;
        dps.confusion = std::array::from_fn(|i| std::array::from_fn(|j| c[3 * i + j] as u64));
        Ok(dps)
    }
}

impl Predictor for Dps {
    /// The predicted distribution over (unsolved, partial, solved) that the next selection
    /// uses (the same for any group size).
    fn predicted(&self, id: u32, _n_rollouts: u32) -> [f64; 3] {
        self.prior_of(id as usize)
    }
}

/// The union of two sorted lists of distinct ids, sorted.
fn merge_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        out.push(x.min(y));
        i += (x <= y) as usize;
        j += (y <= x) as usize;
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{key, stream};
    use crate::topk::top_k_among;

    fn obs(n: usize, ids: &[i64], c: &[i64], k: i64) -> Observations {
        Observations::new(n, ids, c, &vec![k; ids.len()]).unwrap()
    }

    #[test]
    fn first_step_matches_hand_computation() {
        // alpha0 = ones, post = uniform; observe partial (y = 1).
        let mut d = Dps::new(
            2,
            DpsConfig {
                decay: 0.5,
                ..Default::default()
            },
        )
        .unwrap();
        d.observe(&obs(2, &[0], &[3], 8)).unwrap();
        // xi row 1 = post[j] * P[1][j] / z = (1/3 * 1/3) / (1/3) each -> 1/3 per column.
        // alpha = 0.5 * 1 + 0.5 * 1 + xi -> row 1 = 4/3, others 1; column sums 10/3.
        let p = d.predicted(0, 8);
        assert!((p[1] - 0.4).abs() < 1e-6, "{p:?}");
        assert!((p[0] - 0.3).abs() < 1e-6);
        // The unobserved prompt stays uniform under the all-ones prior.
        let q = d.predicted(1, 8);
        assert!(q.iter().all(|x| (x - 1.0 / 3.0).abs() < 1e-6));
        assert_eq!(d.select(1).unwrap(), vec![0]);
    }

    #[test]
    fn local_prior_jump_adds_no_count_and_no_nan() {
        let cfg = DpsConfig {
            decay: 1.0,
            prior_alpha: PRIOR_LOCAL,
            ..Default::default()
        };
        let mut d = Dps::new(1, cfg).unwrap();
        d.observe(&obs(1, &[0], &[0], 8)).unwrap(); // unsolved
        d.observe(&obs(1, &[0], &[8], 8)).unwrap(); // solved: the local prior forbids 0 -> 2
        let p = d.predicted(0, 8);
        assert!(p.iter().all(|x| x.is_finite()) && (p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(d.scores().iter().all(|s| s.is_finite()));
    }

    #[test]
    fn unobserved_prompt_drifts_back_to_uniform() {
        let mut d = Dps::new(
            2,
            DpsConfig {
                decay: 0.5,
                ..Default::default()
            },
        )
        .unwrap();
        for _ in 0..5 {
            d.observe(&obs(2, &[0], &[8], 8)).unwrap();
        }
        assert!(d.predicted(0, 8)[2] > 0.5);
        for _ in 0..60 {
            d.observe(&obs(2, &[1], &[0], 8)).unwrap();
        }
        assert!(d
            .predicted(0, 8)
            .iter()
            .all(|x| (x - 1.0 / 3.0).abs() < 1e-4));
    }

    /// Settled prompts are skipped: the same run with every prompt updated every step must give
    /// the same bits, for every prior, several decays and the entropy bonus.
    #[test]
    fn skipping_settled_prompts_changes_no_bit() {
        let priors = [PRIOR_ONES, PRIOR_PROGRESS, PRIOR_STABILITY, PRIOR_LOCAL];
        for (case, (&prior_alpha, decay, w)) in priors
            .iter()
            .flat_map(|a| [(a, 0.7, 0.0), (a, 0.3, 0.0), (a, 1.0, 0.0), (a, 0.9, 0.5)])
            .enumerate()
        {
            let cfg = DpsConfig {
                decay,
                prior_alpha,
                prior_state: [0.2, 0.5, 0.3],
                entropy_weight: w,
                ..Default::default()
            };
            let n = 3000;
            let (mut fast, mut full) =
                (Dps::new(n, cfg.clone()).unwrap(), Dps::new(n, cfg).unwrap());
            let mut rng = crate::rng::Rng::new(case as u64);
            let mut smallest = usize::MAX;
            for step in 0..200 {
                let b = if step % 50 == 7 {
                    0
                } else {
                    1 + rng.below(40) as usize
                };
                let ids: Vec<i64> = fast.select(b).unwrap().iter().map(|&i| i as i64).collect();
                assert_eq!(
                    full.select(b)
                        .unwrap()
                        .iter()
                        .map(|&i| i as i64)
                        .collect::<Vec<_>>(),
                    ids
                );
                let correct: Vec<i64> = ids.iter().map(|_| rng.below(9) as i64).collect();
                fast.observe(&obs(n, &ids, &correct, 8)).unwrap();
                full.observe(&obs(n, &ids, &correct, 8)).unwrap();
                full.unsettled = None;
                assert_eq!(
                    bits(fast.scores()),
                    bits(full.scores()),
                    "case {case} step {step}"
                );
                smallest = smallest.min(fast.unsettled.as_ref().map_or(n, |v| v.len()));
            }
            assert_eq!(fast.state(), full.state(), "case {case}");
            assert!(
                smallest < n / 2,
                "case {case}: {smallest} of {n} prompts never settled"
            );
        }
    }

    fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn selections_in_one_step_are_disjoint() {
        let mut d = Dps::new(100, DpsConfig::default()).unwrap();
        let mut a = d.select(40).unwrap();
        let b = d.select(40).unwrap();
        assert!(d.select(21).is_err());
        a.extend(b);
        a.sort();
        a.dedup();
        assert_eq!(a.len(), 80);
    }

    #[test]
    fn restore_round_trips_and_rejects_bad_state() {
        let mut d = Dps::new(50, DpsConfig::default()).unwrap();
        d.observe(&obs(50, &[1, 2, 3], &[0, 4, 8], 8)).unwrap();
        let s = d.state();
        let mut e = d.restore(s.clone()).unwrap();
        assert_eq!(e.state(), s);
        assert_eq!(e.select(10).unwrap(), d.select(10).unwrap());
        let mut bad = s.clone();
        bad.alpha[4] = f32::NAN;
        assert!(d.restore(bad).is_err());
        let smaller = Dps::new(49, DpsConfig::default()).unwrap();
        assert!(smaller.restore(s.clone()).is_err());
        let mut bad = s;
        bad.confusion[0] = -1;
        assert!(d
            .restore(bad)
            .unwrap_err()
            .to_string()
            .contains("confusion"));
    }

    #[test]
    fn a_pool_selects_the_top_scores_within_it() {
        let cfg = DpsConfig {
            candidate_ratio: Some(3.0),
            seed: 4,
            ..Default::default()
        };
        let mut d = Dps::new(90, cfg).unwrap();
        let mut order = EpochOrder::new(4);
        let mut rng = crate::rng::Rng::new(2);
        for step in 0..12u64 {
            // The pool is the next 15 prompts of the same seeded epoch order.
            let pool: Vec<u32> = (0..15)
                .map(|_| {
                    order.next_id().unwrap_or_else(|| {
                        order.start_epoch((0..90).collect());
                        order.next_id().unwrap()
                    })
                })
                .collect();
            let picked = d.select(5).unwrap();
            let tie_seed = key(&[4, stream::TIE_BREAK, step]);
            assert_eq!(picked, top_k_among(d.scores(), &pool, 5, tie_seed));
            let worst = picked
                .iter()
                .map(|&i| d.scores()[i as usize])
                .fold(f32::MAX, f32::min);
            assert!(pool
                .iter()
                .filter(|id| !picked.contains(id))
                .all(|&i| d.scores()[i as usize] <= worst));
            let ids: Vec<i64> = picked.iter().map(|&i| i as i64).collect();
            let correct: Vec<i64> = ids.iter().map(|_| rng.below(9) as i64).collect();
            d.observe(&obs(90, &ids, &correct, 8)).unwrap();
        }
    }

    #[test]
    fn ratio_one_is_the_uniform_loader() {
        let cfg = DpsConfig {
            candidate_ratio: Some(1.0),
            seed: 9,
            ..Default::default()
        };
        let mut d = Dps::new(64, cfg).unwrap();
        let mut u = crate::uniform::Uniform::new(64, 9).unwrap();
        for _ in 0..20 {
            let mut a = d.select(8).unwrap();
            let mut b = u.select(8).unwrap();
            let ids: Vec<i64> = a.iter().map(|&i| i as i64).collect();
            d.observe(&obs(64, &ids, &vec![4; 8], 8)).unwrap();
            u.observe(&Observations::default()).unwrap();
            a.sort();
            b.sort();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn without_a_pool_the_order_is_never_used() {
        let mut d = Dps::new(64, DpsConfig::default()).unwrap();
        for _ in 0..5 {
            let ids: Vec<i64> = d.select(8).unwrap().iter().map(|&i| i as i64).collect();
            d.observe(&obs(64, &ids, &vec![4; 8], 8)).unwrap();
        }
        assert_eq!(d.state().pool, EpochOrder::new(0).state());
    }

    #[test]
    fn restore_continues_the_pool_exactly() {
        let cfg = DpsConfig {
            candidate_ratio: Some(2.5),
            ..Default::default()
        };
        let mut d = Dps::new(50, cfg.clone()).unwrap();
        for step in 0..7 {
            let ids: Vec<i64> = d.select(4).unwrap().iter().map(|&i| i as i64).collect();
            d.observe(&obs(50, &ids, &vec![step % 9; 4], 8)).unwrap();
        }
        let mut e = d.restore(d.state()).unwrap();
        for _ in 0..10 {
            let a = d.select(4).unwrap();
            assert_eq!(a, e.select(4).unwrap());
            let ids: Vec<i64> = a.iter().map(|&i| i as i64).collect();
            d.observe(&obs(50, &ids, &[1, 2, 8, 0], 8)).unwrap();
            e.observe(&obs(50, &ids, &[1, 2, 8, 0], 8)).unwrap();
        }
        assert_eq!(d.state(), e.state());
        let mut bad = d.state();
        bad.pool.order.truncate(10);
        bad.pool.cursor = 0;
        let err = d.restore(bad).unwrap_err();
        assert!(err.to_string().contains("candidate pool"), "{err}");
    }

    #[test]
    fn rejects_bad_config() {
        for ratio in [0.5, f64::NAN, f64::INFINITY] {
            let cfg = DpsConfig {
                candidate_ratio: Some(ratio),
                ..Default::default()
            };
            assert!(Dps::new(10, cfg).is_err());
        }
        assert!(Dps::new(
            10,
            DpsConfig {
                decay: 0.0,
                ..Default::default()
            }
        )
        .is_err());
        assert!(Dps::new(
            10,
            DpsConfig {
                decay: 1.5,
                ..Default::default()
            }
        )
        .is_err());
        let mut a0 = PRIOR_ONES;
        a0[0][0] = -1.0;
        assert!(Dps::new(
            10,
            DpsConfig {
                prior_alpha: a0,
                ..Default::default()
            }
        )
        .is_err());
        assert!(Dps::new(0, DpsConfig::default()).is_err());
    }

    #[test]
    fn state_round_trip() {
        for candidate_ratio in [None, Some(2.0)] {
            let cfg = DpsConfig {
                candidate_ratio,
                ..Default::default()
            };
            crate::selector::contract::holds(Dps::new(30, cfg).unwrap());
        }
    }

    #[test]
    fn binary_rewards_observed_graded_give_the_counts_state() {
        use crate::observe::GradedRule;
        let rule = GradedRule {
            spread_tol: 1e-8,
            success_at: 0.5,
        };
        let (mut counted, mut graded) = (
            Dps::new(12, DpsConfig::default()).unwrap(),
            Dps::new(12, DpsConfig::default()).unwrap(),
        );
        for step in 0..6i64 {
            let ids: Vec<i64> = (0..12).filter(|i| (i + step) % 3 != 0).collect();
            let correct: Vec<i64> = ids.iter().map(|i| (i * step) % 9).collect();
            let mean: Vec<f64> = correct.iter().map(|&c| c as f64 / 8.0).collect();
            let std: Vec<f64> = mean.iter().map(|p| (p * (1.0 - p)).sqrt()).collect();
            counted.observe(&obs(12, &ids, &correct, 8)).unwrap();
            let n = vec![8; ids.len()];
            graded
                .observe(&Observations::graded(12, &ids, &n, &mean, &std, rule).unwrap())
                .unwrap();
            assert_eq!(counted.state(), graded.state());
        }
    }
}
