//! The candidate pool of the scoring policies (DPS, MoPPS): the released sampler's
//! `candidate_ratio`. Each selection scores only a pool of floor(candidate_ratio x batch_size)
//! prompts, the next slice of an epoch-wise shuffled order, and takes the best `batch_size`
//! of it. As in the released loader (`drop_last`), a pool never spans two epochs: when the
//! epoch has fewer prompts left than a pool needs, they are skipped and a new epoch begins.
//!
//! No ratio, or a pool that would hold every prompt still selectable in the step, means the
//! whole dataset is scored and the order is not touched (the paper's setting).

use crate::error::{invalid, Result};
use crate::pending::Pending;
use crate::sampler::EpochOrder;

#[derive(Clone, Debug)]
pub struct CandidatePool {
    ratio: Option<f64>,
    pub(crate) order: EpochOrder,
}

pub(crate) fn check_ratio(ratio: Option<f64>) -> Result<()> {
    match ratio {
        Some(r) if !(r.is_finite() && r >= 1.0) => invalid(format!(
            "candidate_ratio must be a finite number >= 1 (the pool holds candidate_ratio x \
             batch_size prompts), got {r}"
        )),
        _ => Ok(()),
    }
}

impl CandidatePool {
    pub fn new(ratio: Option<f64>, seed: u64) -> Result<Self> {
        check_ratio(ratio)?;
        Ok(CandidatePool {
            ratio,
            order: EpochOrder::new(seed),
        })
    }

    /// A pool continued from a saved order, which must be empty or a permutation of every prompt.
    pub fn restore(ratio: Option<f64>, num_prompts: usize, order: EpochOrder) -> Result<Self> {
        check_ratio(ratio)?;
        if !order.order.is_empty() && order.order.len() != num_prompts {
            return invalid(format!(
                "the candidate pool's order holds {} ids, expected 0 or {num_prompts}",
                order.order.len()
            ));
        }
        Ok(CandidatePool { ratio, order })
    }

    pub fn ratio(&self) -> Option<f64> {
        self.ratio
    }

    pub fn order(&self) -> &EpochOrder {
        &self.order
    }

    /// The prompts a selection of `batch_size` may choose from, none of them pending; None
    /// when that is every prompt not yet handed out in this step.
    pub fn draw(
        &mut self,
        num_prompts: usize,
        batch_size: usize,
        pending: &Pending,
    ) -> Option<Vec<u32>> {
        let ratio = self.ratio?;
        let size = (ratio * batch_size as f64).floor() as usize;
        if size >= num_prompts - pending.len() {
            return None;
        }
        let mut pool = Vec::with_capacity(size);
        while pool.len() < size {
            match self.order.next_id() {
                Some(id) if !pending.contains(id) => pool.push(id),
                Some(_) => {}
                None => {
                    // The epoch's rest cannot fill a pool: dropped, as the released loader does.
                    pool.clear();
                    self.order.start_epoch((0..num_prompts as u32).collect());
                }
            }
        }
        Some(pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(pool: &mut CandidatePool, n: usize, batch: usize, count: usize) -> Vec<Vec<u32>> {
        let none = Pending::new(n);
        (0..count)
            .map(|_| pool.draw(n, batch, &none).unwrap())
            .collect()
    }

    #[test]
    fn pools_have_the_ratio_size_and_cover_each_epoch_once() {
        // 100 prompts, pools of floor(2.5 x 8) = 20: five pools per epoch, nothing dropped.
        let mut pool = CandidatePool::new(Some(2.5), 7).unwrap();
        let all = draws(&mut pool, 100, 8, 10);
        assert!(all.iter().all(|p| p.len() == 20));
        for epoch in all.chunks(5) {
            let mut ids: Vec<u32> = epoch.concat();
            ids.sort();
            assert_eq!(ids, (0..100).collect::<Vec<_>>());
        }
        assert_ne!(
            all[0..5].concat(),
            all[5..10].concat(),
            "each epoch is shuffled afresh"
        );
    }

    #[test]
    fn the_epoch_rest_that_cannot_fill_a_pool_is_dropped() {
        // 50 prompts, pools of 3 x 4 = 12: four pools per epoch, the last 2 prompts dropped.
        let mut pool = CandidatePool::new(Some(3.0), 1).unwrap();
        let all = draws(&mut pool, 50, 4, 8);
        for epoch in all.chunks(4) {
            let ids: Vec<u32> = epoch.concat();
            let mut unique = ids.clone();
            unique.sort();
            unique.dedup();
            assert_eq!((ids.len(), unique.len()), (48, 48));
        }
        assert_eq!(pool.order().epoch, 2);
    }

    #[test]
    fn a_pool_as_large_as_the_selectable_prompts_is_the_whole_dataset() {
        let mut pool = CandidatePool::new(Some(4.0), 0).unwrap();
        assert_eq!(pool.draw(32, 8, &Pending::new(32)), None);
        assert_eq!(pool.order().epoch, 0, "the order is not touched");
        let mut pending = Pending::new(40);
        for id in 0..9 {
            pending.insert(id);
        }
        assert_eq!(pool.draw(40, 8, &pending), None); // 32 >= 40 - 9
        assert!(CandidatePool::new(None, 0)
            .unwrap()
            .draw(40, 1, &Pending::new(40))
            .is_none());
    }

    #[test]
    fn pending_prompts_never_enter_a_pool() {
        let mut pool = CandidatePool::new(Some(2.0), 3).unwrap();
        let mut pending = Pending::new(30);
        for id in (0..30).step_by(3) {
            pending.insert(id);
        }
        for _ in 0..6 {
            let drawn = pool.draw(30, 4, &pending).unwrap();
            assert_eq!(drawn.len(), 8);
            assert!(drawn.iter().all(|&id| !pending.contains(id)));
        }
    }

    #[test]
    fn bad_ratios_are_refused() {
        for r in [0.5, 0.999, f64::NAN, f64::INFINITY, -2.0] {
            let err = CandidatePool::new(Some(r), 0).unwrap_err();
            assert!(err.to_string().contains("candidate_ratio"), "{err}");
        }
        assert!(CandidatePool::new(Some(1.0), 0).is_ok());
    }
}
