//! US: the ordinary shuffled dataloader, a fresh seeded permutation each epoch.

use crate::error::Result;
use crate::observe::Observations;
use crate::pending::{FlightState, Pending};
use crate::sampler::{EpochOrder, OrderState};
use crate::selector::Selector;

crate::record! {
    /// The options of the policies whose only option is their seed (US, HR).
    #[derive(Clone, Debug, PartialEq)]
    pub struct SeedConfig {
        pub seed: u64,
    }
}

crate::record! {
    /// What US saves.
    #[derive(Clone, Debug, PartialEq)]
    pub struct UniformState {
        pub step: u64,
        /// The ids handed out: this step's, and earlier steps' still in flight.
        pub flight: FlightState as "",
        pub order: OrderState as "",
    }
}

#[derive(Clone, Debug)]
pub struct Uniform {
    cfg: SeedConfig,
    num_prompts: usize,
    pub(crate) order: EpochOrder,
    pub(crate) pending: Pending,
    pub(crate) step: u64,
}

impl Uniform {
    pub fn new(num_prompts: usize, seed: u64) -> Result<Self> {
        crate::error::check_num_prompts(num_prompts)?;
        Ok(Uniform {
            cfg: SeedConfig { seed },
            num_prompts,
            order: EpochOrder::new(seed),
            pending: Pending::new(num_prompts),
            step: 0,
        })
    }

    /// The state without the epoch order (N ids): what a step's undo point needs within an epoch.
    pub fn position(&self) -> UniformState {
        UniformState {
            step: self.step,
            flight: self.pending.state(),
            order: OrderState {
                epoch: self.order.epoch,
                cursor: self.order.cursor as u64,
                order: Vec::new(),
            },
        }
    }
}

impl Selector for Uniform {
    type Config = SeedConfig;
    type State = UniformState;

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
                Some(id) if !self.pending.contains(id) => {
                    self.pending.insert(id);
                    out.push(id);
                }
                Some(_) => {}
                None => self
                    .order
                    .start_epoch((0..self.num_prompts as u32).collect()),
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

    fn update(&mut self, _groups: &Observations) {
        self.step += 1;
    }

    fn state(&self) -> UniformState {
        UniformState {
            order: self.order.state(),
            ..self.position()
        }
    }

    fn restore(&self, state: UniformState) -> Result<Self> {
        let mut u = Uniform::new(self.num_prompts, self.cfg.seed)?;
        u.pending = Pending::restore(self.num_prompts, &state.flight)?;
        u.order = EpochOrder::restore(self.cfg.seed, self.num_prompts, &state.order)?;
        u.step = state.step;
        Ok(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_epoch_covers_every_prompt_once() {
        let mut u = Uniform::new(10, 3).unwrap();
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.extend(u.select(2).unwrap());
            u.observe(&Observations::default()).unwrap();
        }
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn state_round_trip() {
        crate::selector::contract::holds(Uniform::new(30, 2).unwrap());
    }
}
