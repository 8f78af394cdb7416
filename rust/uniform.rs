//! US: the ordinary shuffled dataloader, a fresh seeded permutation each epoch.

use crate::error::Result;
use crate::observe::Observations;
use crate::pending::Pending;
use crate::sampler::EpochOrder;

#[derive(Clone, Debug)]
pub struct Uniform {
    num_prompts: usize,
    pub(crate) order: EpochOrder,
    pub(crate) pending: Pending,
    pub(crate) step: u64,
}

impl Uniform {
    pub fn new(num_prompts: usize, seed: u64) -> Result<Self> {
        crate::error::check_num_prompts(num_prompts)?;
        Ok(Uniform {
            num_prompts,
            order: EpochOrder::new(seed),
            pending: Pending::new(num_prompts),
            step: 0,
        })
    }

    pub fn num_prompts(&self) -> usize {
        self.num_prompts
    }

    pub fn step(&self) -> u64 {
        self.step
    }

    pub fn select(&mut self, batch_size: usize) -> Result<Vec<u32>> {
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

    pub fn observe(&mut self, _obs: &Observations) -> Result<()> {
        self.step += 1;
        self.pending.clear();
        Ok(())
    }

    pub fn restore(
        num_prompts: usize,
        seed: u64,
        step: u64,
        order: EpochOrder,
        pending: &[i64],
    ) -> Result<Self> {
        let mut u = Uniform::new(num_prompts, seed)?;
        u.pending = Pending::from_ids(num_prompts, pending)?;
        u.order = order;
        u.step = step;
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
}
