//! A shuffled pass over a pool of prompts (a dataloader epoch), shared by the epoch-based
//! baselines (uniform, history resampling, GRESO).

use crate::error::{invalid, Result};
use crate::rng::{key, stream, Rng};

crate::record! {
    /// Where an epoch order stands: what a saved state holds of it.
    #[derive(Clone, Debug, PartialEq)]
    pub struct OrderState {
        /// Epochs started so far.
        pub epoch: u64,
        /// The next position in the current epoch's order.
        pub cursor: u64,
        /// The current epoch's order (empty before the first epoch).
        pub order: Vec<i64> [*],
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct EpochOrder {
    seed: u64,
    /// Epochs started so far; epoch e is shuffled with a generator keyed by (seed, e).
    pub epoch: u64,
    pub cursor: usize,
    pub order: Vec<u32>,
}

impl EpochOrder {
    pub fn new(seed: u64) -> Self {
        EpochOrder {
            seed,
            epoch: 0,
            cursor: 0,
            order: Vec::new(),
        }
    }

    /// Start the next epoch over `pool`, in a fresh seeded order.
    pub fn start_epoch(&mut self, mut pool: Vec<u32>) {
        Rng::new(key(&[self.seed, stream::EPOCH, self.epoch])).shuffle(&mut pool);
        self.order = pool;
        self.cursor = 0;
        self.epoch += 1;
    }

    /// The next prompt of the current epoch, or None when it is spent.
    pub fn next_id(&mut self) -> Option<u32> {
        let id = self.order.get(self.cursor).copied();
        if id.is_some() {
            self.cursor += 1;
        }
        id
    }

    pub fn state(&self) -> OrderState {
        OrderState {
            epoch: self.epoch,
            cursor: self.cursor as u64,
            order: self.order.iter().map(|&id| id as i64).collect(),
        }
    }

    /// The order of `seed` over `num_prompts` prompts continued from `state`.
    pub fn restore(seed: u64, num_prompts: usize, state: &OrderState) -> Result<Self> {
        let OrderState {
            epoch,
            cursor,
            ref order,
        } = *state;
        let mut seen = vec![false; num_prompts];
        let mut ids = Vec::with_capacity(order.len());
        for &id in order {
            if id < 0 || id as u64 >= num_prompts as u64 || seen[id as usize] {
                return invalid(format!("epoch order holds an invalid or repeated id {id}"));
            }
            seen[id as usize] = true;
            ids.push(id as u32);
        }
        if cursor as usize > ids.len() {
            return invalid(format!(
                "epoch cursor {cursor} is past the order's end ({})",
                ids.len()
            ));
        }
        Ok(EpochOrder {
            seed,
            epoch,
            cursor: cursor as usize,
            order: ids,
        })
    }
}
