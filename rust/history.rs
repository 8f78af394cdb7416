//! HR, history resampling (SRPO): uniform epochs, but a prompt whose group was all correct the
//! last time it was seen is left out of the following epochs (all-wrong prompts stay).
//!
//! When the prompts left cannot fill a batch, the exclusions are reset (counted in `resets`).

use crate::error::{invalid, Result};
use crate::observe::{Observations, SOLVED};
use crate::pending::{FlightState, Pending};
use crate::sampler::{EpochOrder, OrderState};
use crate::selector::Selector;
use crate::uniform::SeedConfig;

crate::record! {
    /// What HR saves.
    #[derive(Clone, Debug, PartialEq)]
    pub struct HistoryState {
        pub step: u64,
        /// Times the exclusions were reset because too few prompts were left.
        pub resets: u64,
        /// 1 where the prompt's last group was all correct.
        pub excluded: Vec<u8> [N],
        /// The ids handed out: this step's, and earlier steps' still in flight.
        pub flight: FlightState as "",
        pub order: OrderState as "",
    }
}

#[derive(Clone, Debug)]
pub struct HistoryResampling {
    cfg: SeedConfig,
    num_prompts: usize,
    pub(crate) excluded: Vec<bool>,
    pub(crate) order: EpochOrder,
    pub(crate) pending: Pending,
    pub(crate) step: u64,
    pub(crate) resets: u64,
}

impl HistoryResampling {
    pub fn new(num_prompts: usize, seed: u64) -> Result<Self> {
        crate::error::check_num_prompts(num_prompts)?;
        Ok(HistoryResampling {
            cfg: SeedConfig { seed },
            num_prompts,
            excluded: vec![false; num_prompts],
            order: EpochOrder::new(seed),
            pending: Pending::new(num_prompts),
            step: 0,
            resets: 0,
        })
    }

    pub fn excluded_count(&self) -> usize {
        self.excluded.iter().filter(|&&e| e).count()
    }

    pub fn resets(&self) -> u64 {
        self.resets
    }

    fn next_pool(&mut self, still_needed: usize) -> Vec<u32> {
        let pool: Vec<u32> = (0..self.num_prompts as u32)
            .filter(|&i| !self.excluded[i as usize])
            .collect();
        let fresh = pool.iter().filter(|&&i| !self.pending.contains(i)).count();
        if fresh >= still_needed {
            return pool;
        }
        self.excluded.fill(false);
        self.resets += 1;
        (0..self.num_prompts as u32).collect()
    }
}

impl Selector for HistoryResampling {
    type Config = SeedConfig;
    type State = HistoryState;

    fn config(&self) -> &SeedConfig {
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
        let mut out = Vec::with_capacity(batch_size);
        while out.len() < batch_size {
            match self.order.next_id() {
                Some(id) if !self.pending.contains(id) && !self.excluded[id as usize] => {
                    self.pending.insert(id);
                    out.push(id);
                }
                Some(_) => {}
                None => {
                    let pool = self.next_pool(batch_size - out.len());
                    self.order.start_epoch(pool);
                }
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

    fn update(&mut self, groups: &Observations) {
        for g in groups.groups() {
            self.excluded[g.id as usize] = g.state() == SOLVED;
        }
        self.step += 1;
    }

    fn state(&self) -> HistoryState {
        HistoryState {
            step: self.step,
            resets: self.resets,
            excluded: self.excluded.iter().map(|&e| u8::from(e)).collect(),
            flight: self.pending.state(),
            order: self.order.state(),
        }
    }

    fn restore(&self, state: HistoryState) -> Result<Self> {
        let (n, seed) = (self.num_prompts, self.cfg.seed);
        let mut h = HistoryResampling::new(n, seed)?;
        if state.excluded.len() != n {
            return invalid(format!(
                "excluded holds {} flags, expected {n}",
                state.excluded.len()
            ));
        }
        if state.excluded.iter().any(|&f| f > 1) {
            return invalid("excluded must hold 0/1 flags");
        }
        h.excluded = state.excluded.iter().map(|&f| f == 1).collect();
        h.pending = Pending::restore(n, &state.flight)?;
        h.order = EpochOrder::restore(seed, n, &state.order)?;
        h.step = state.step;
        h.resets = state.resets;
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solved_prompts_leave_the_following_epochs() {
        let n = 20;
        let mut h = HistoryResampling::new(n, 1).unwrap();
        // Epoch 1: everything is seen; even ids come back all correct.
        let ids = h.select(n).unwrap();
        let ids64: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let correct: Vec<i64> = ids
            .iter()
            .map(|&i| if i % 2 == 0 { 8 } else { 3 })
            .collect();
        h.observe(&Observations::new(n, &ids64, &correct, &vec![8; n]).unwrap())
            .unwrap();
        let next = h.select(10).unwrap();
        assert!(next.iter().all(|&i| i % 2 == 1), "{next:?}");
        assert_eq!(h.resets(), 0);
        // Asking for more than the 10 that remain resets the history instead of failing.
        h.observe(&Observations::default()).unwrap();
        let more = h.select(15).unwrap();
        assert_eq!(more.len(), 15);
        assert_eq!(h.resets(), 1);
    }

    #[test]
    fn state_round_trip() {
        crate::selector::contract::holds(HistoryResampling::new(30, 2).unwrap());
    }
}
