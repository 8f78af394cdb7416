//! MoPPS: a Beta posterior of each prompt's success rate; selection draws one sample per prompt
//! and takes those closest to the target rate (0.5).

use rayon::prelude::*;

use crate::error::{invalid, Result};
use crate::observe::Observations;
use crate::pending::Pending;
use crate::pool::{check_ratio, CandidatePool};
use crate::rng::{key, stream, Rng};
use crate::sampler::EpochOrder;
use crate::topk::{top_k, top_k_among};

const CHUNK: usize = 1 << 14;

#[derive(Clone, Debug, PartialEq)]
pub struct MoppsConfig {
    pub decay: f64,
    pub prior_a: f64,
    pub prior_b: f64,
    pub target: f64,
    /// The threshold variant: draws inside [lo, hi] are taken first, in random order.
    pub band: Option<(f64, f64)>,
    /// Draw only for a pool of floor(ratio x batch_size) prompts (see `pool`); None: all.
    pub candidate_ratio: Option<f64>,
    pub seed: u64,
}

impl Default for MoppsConfig {
    fn default() -> Self {
        MoppsConfig {
            decay: 1.0,
            prior_a: 1.0,
            prior_b: 1.0,
            target: 0.5,
            band: None,
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
        if let Some((lo, hi)) = self.band {
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
    pub(crate) a: Vec<f64>,
    pub(crate) b: Vec<f64>,
    pub(crate) pending: Pending,
    pub(crate) step: u64,
    pub(crate) pool: CandidatePool,
    /// This step's selection scores; derived from (a, b, seed, step), so never saved.
    cache: Option<(u64, Vec<f32>)>,
}

impl Mopps {
    pub fn new(num_prompts: usize, cfg: MoppsConfig) -> Result<Self> {
        crate::error::check_num_prompts(num_prompts)?;
        cfg.validate()?;
        Ok(Mopps {
            a: vec![cfg.prior_a; num_prompts],
            b: vec![cfg.prior_b; num_prompts],
            pending: Pending::new(num_prompts),
            step: 0,
            cache: None,
            pool: CandidatePool::new(cfg.candidate_ratio, cfg.seed)?,
            cfg,
        })
    }

    pub fn config(&self) -> &MoppsConfig {
        &self.cfg
    }

    pub fn num_prompts(&self) -> usize {
        self.a.len()
    }

    pub fn step(&self) -> u64 {
        self.step
    }

    pub fn posterior(&self, id: u32) -> (f64, f64) {
        (self.a[id as usize], self.b[id as usize])
    }

    /// One Beta draw per prompt, turned into a score where higher is better.
    fn scores(&self) -> Vec<f32> {
        let cfg = &self.cfg;
        let mut scores = vec![0f32; self.a.len()];
        scores
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, out)| {
                let mut rng = Rng::new(key(&[cfg.seed, stream::MOPPS, self.step, c as u64]));
                for (i, s) in out.iter_mut().enumerate() {
                    let g = rng.beta(self.a[c * CHUNK + i], self.b[c * CHUNK + i]);
                    *s = match cfg.band {
                        Some(band) => band_score(g, band),
                        None => -((g - cfg.target) * (g - cfg.target)) as f32,
                    };
                }
            });
        scores
    }

    pub fn select(&mut self, batch_size: usize) -> Result<Vec<u32>> {
        self.pending.check_room(self.num_prompts(), batch_size)?;
        if self.cache.as_ref().map(|(step, _)| *step) != Some(self.step) {
            self.cache = Some((self.step, self.scores()));
        }
        let scores = &self.cache.as_ref().unwrap().1;
        let tie_seed = key(&[self.cfg.seed, stream::TIE_BREAK, self.step]);
        let pending = &self.pending;
        let ids = match self.pool.draw(self.a.len(), batch_size, pending) {
            Some(pool) => top_k_among(scores, &pool, batch_size, tie_seed),
            None => top_k(scores, batch_size, tie_seed, |id| pending.contains(id)),
        };
        for &id in &ids {
            self.pending.insert(id);
        }
        Ok(ids)
    }

    pub fn observe(&mut self, obs: &Observations) -> Result<()> {
        let lam = self.cfg.decay;
        for g in obs.groups() {
            let i = g.id as usize;
            let s = g.n_correct as f64;
            let f = (g.n_rollouts - g.n_correct) as f64;
            self.a[i] = lam * self.a[i] + (1.0 - lam) * self.cfg.prior_a + s;
            self.b[i] = lam * self.b[i] + (1.0 - lam) * self.cfg.prior_b + f;
        }
        self.step += 1;
        self.cache = None;
        self.pending.clear();
        Ok(())
    }

    /// The Beta-binomial predictive of prompt `id`'s next group of k rollouts.
    pub fn predicted(&self, id: u32, k: u32) -> [f64; 3] {
        crate::beta::state_probs(self.a[id as usize], self.b[id as usize], k)
    }

    pub fn restore(
        num_prompts: usize,
        cfg: MoppsConfig,
        a: &[f64],
        b: &[f64],
        step: u64,
        pending: &[i64],
        pool: EpochOrder,
    ) -> Result<Self> {
        let mut m = Mopps::new(num_prompts, cfg)?;
        if a.len() != num_prompts || b.len() != num_prompts {
            return invalid(format!(
                "a and b hold {} and {} values, expected {num_prompts}",
                a.len(),
                b.len()
            ));
        }
        if a.iter().chain(b).any(|x| !(x.is_finite() && *x > 0.0)) {
            return invalid("a and b must be positive and finite");
        }
        m.a = a.to_vec();
        m.b = b.to_vec();
        m.step = step;
        m.pending = Pending::from_ids(num_prompts, pending)?;
        m.pool = CandidatePool::restore(m.cfg.candidate_ratio, num_prompts, pool)?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            band: Some(band),
            ..Default::default()
        };
        let mut m = Mopps::new(3, cfg).unwrap();
        // Posteriors sharply at 0.3, 0.95 and 0.58.
        m.a = vec![3e5, 9.5e5, 5.8e5];
        m.b = vec![7e5, 0.5e5, 4.2e5];
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
        let mut m = Mopps::new(n, cfg.clone()).unwrap();
        let mut seen = Vec::new();
        for step in 0..5 {
            let all = m.scores();
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
        let (a, b) = (m.a.clone(), m.b.clone());
        let mut r = Mopps::restore(n, cfg, &a, &b, m.step, &[], m.pool.order().clone()).unwrap();
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
}
