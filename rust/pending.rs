//! The prompts handed out by `select` since the last `observe`, so that a second `select`
//! in the same step (a dynamic-sampling round) never repeats one.

use crate::error::{invalid, Result};

#[derive(Clone, Debug, Default)]
pub struct Pending {
    bits: Vec<u64>,
    ids: Vec<u32>,
}

impl Pending {
    pub fn new(num_prompts: usize) -> Self {
        Pending {
            bits: vec![0; num_prompts.div_ceil(64)],
            ids: Vec::new(),
        }
    }

    #[inline]
    pub fn contains(&self, id: u32) -> bool {
        self.bits[(id >> 6) as usize] & (1u64 << (id & 63)) != 0
    }

    pub fn insert(&mut self, id: u32) {
        if !self.contains(id) {
            self.bits[(id >> 6) as usize] |= 1u64 << (id & 63);
            self.ids.push(id);
        }
    }

    pub fn clear(&mut self) {
        for &id in &self.ids {
            self.bits[(id >> 6) as usize] = 0;
        }
        self.ids.clear();
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The ids as a saved state holds them.
    pub fn to_i64(&self) -> Vec<i64> {
        self.ids.iter().map(|&id| id as i64).collect()
    }

    /// Rebuild from saved ids, checking them.
    pub fn from_ids(num_prompts: usize, ids: &[i64]) -> Result<Self> {
        let mut pending = Pending::new(num_prompts);
        for &id in ids {
            if id < 0 || id as u64 >= num_prompts as u64 {
                return invalid(format!("pending id {id} is outside [0, {num_prompts})"));
            }
            if pending.contains(id as u32) {
                return invalid(format!("pending id {id} appears twice"));
            }
            pending.insert(id as u32);
        }
        Ok(pending)
    }

    /// How many more ids a step can still hand out; refuses a batch that cannot be filled.
    pub fn check_room(&self, num_prompts: usize, batch_size: usize) -> Result<()> {
        let room = num_prompts - self.len();
        if batch_size > room {
            if self.is_empty() {
                return invalid(format!(
                    "batch_size {batch_size} exceeds num_prompts {num_prompts}"
                ));
            }
            return invalid(format!(
                "batch_size {batch_size} exceeds the {room} prompts not yet selected in this step"
            ));
        }
        Ok(())
    }
}
