//! Seeded orders over the prompt ids that cost nothing to walk from the front: a keyed
//! permutation of [0, 4^h) (4^h >= N) gives each id a distinct key, and its inverse lists the ids
//! in key order. Ties among equal scores and the order of never-observed revisits take such keys,
//! so taking the m first never-observed prompts of an order costs about m N / (never-observed
//! prompts) inverse evaluations instead of a key for each of them
//! (docs/method.md#rate-dps-selection).
//!
//! The permutation is a balanced Feistel network of four rounds on two h-bit halves, each round
//! function the SplitMix64 finaliser of the half and a round key.

use crate::rng::{fmix64, key, mix64};

/// A keyed order of the ids 0..N.
#[derive(Clone, Copy, Debug)]
pub struct Order {
    half: u32,
    mask: u64,
    rounds: [u64; 4],
}

impl Order {
    /// The order of stream `stream` at step `step` under `seed`, for `num_prompts` ids.
    pub fn new(seed: u64, stream: u64, step: u64, num_prompts: usize) -> Self {
        let bits = usize::BITS - num_prompts.saturating_sub(1).leading_zeros();
        let half = bits.div_ceil(2).max(1);
        let base = key(&[seed, stream, step]);
        Order {
            half,
            mask: (1u64 << half) - 1,
            rounds: std::array::from_fn(|r| mix64(base.wrapping_add(r as u64))),
        }
    }

    /// The id's key: distinct ids have distinct keys, smaller comes first.
    #[inline]
    pub fn key(&self, id: u32) -> u64 {
        let (mut left, mut right) = ((id as u64) >> self.half, (id as u64) & self.mask);
        for k in self.rounds {
            (left, right) = (right, left ^ (fmix64(right ^ k) & self.mask));
        }
        (left << self.half) | right
    }

    /// The value whose key is `key` (it may be N or more: not an id).
    #[inline]
    pub fn inverse(&self, key: u64) -> u64 {
        let (mut left, mut right) = (key >> self.half, key & self.mask);
        for k in self.rounds.iter().rev() {
            (left, right) = (right ^ (fmix64(left ^ k) & self.mask), left);
        }
        (left << self.half) | right
    }

    /// How many keys there are (4^h).
    pub fn size(&self) -> u64 {
        1u64 << (2 * self.half)
    }

    /// The `count` ids with the smallest keys among those `fits` accepts, in key order; `free` is
    /// how many ids it accepts. Walks the keys upward when that is cheaper than keying them all.
    pub fn first(
        &self,
        num_prompts: usize,
        count: usize,
        free: usize,
        fits: impl Fn(u32) -> bool,
    ) -> Vec<u32> {
        let count = count.min(free);
        if count == 0 {
            return Vec::new();
        }
        // Walking the keys upward meets an accepted id about every size / free keys.
        if (count as u128) * (self.size() as u128) <= (free as u128) * (free as u128) {
            let mut out = Vec::with_capacity(count);
            for k in 0..self.size() {
                let id = self.inverse(k);
                if id < num_prompts as u64 && fits(id as u32) {
                    out.push(id as u32);
                    if out.len() == count {
                        break;
                    }
                }
            }
            return out;
        }
        let mut keyed: Vec<(u64, u32)> = (0..num_prompts as u32)
            .filter(|&id| fits(id))
            .map(|id| (self.key(id), id))
            .collect();
        if keyed.len() > count {
            keyed.select_nth_unstable(count - 1);
            keyed.truncate(count);
        }
        keyed.sort_unstable();
        keyed.into_iter().map(|(_, id)| id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_a_permutation_and_the_inverse_undoes_them() {
        for n in [1usize, 2, 3, 5, 16, 17, 1000, 4097] {
            let order = Order::new(3, 6, 11, n);
            assert!(order.size() >= n as u64 && order.size() < 4 * n.max(2) as u64 * 2);
            let mut keys: Vec<u64> = (0..n as u32).map(|id| order.key(id)).collect();
            for (id, &k) in keys.iter().enumerate() {
                assert!(k < order.size());
                assert_eq!(order.inverse(k), id as u64);
            }
            keys.sort_unstable();
            keys.dedup();
            assert_eq!(keys.len(), n);
        }
    }

    #[test]
    fn walking_and_keying_give_the_same_first_ids() {
        let n = 5000;
        let order = Order::new(9, 7, 2, n);
        for (hidden, count) in [
            (0usize, 10usize),
            (4000, 10),
            (4990, 5),
            (4990, 20),
            (100, 3000),
        ] {
            let fits = |id: u32| id as usize % n >= hidden.min(n) || id % 7 == 3;
            let free = (0..n as u32).filter(|&id| fits(id)).count();
            let got = order.first(n, count, free, fits);
            let mut want: Vec<(u64, u32)> = (0..n as u32)
                .filter(|&id| fits(id))
                .map(|id| (order.key(id), id))
                .collect();
            want.sort_unstable();
            let want: Vec<u32> = want.into_iter().take(count).map(|(_, id)| id).collect();
            assert_eq!(got, want, "hidden {hidden} count {count}");
        }
    }

    #[test]
    fn orders_differ_between_steps_and_seeds() {
        let a: Vec<u64> = (0..50).map(|id| Order::new(1, 6, 0, 50).key(id)).collect();
        let b: Vec<u64> = (0..50).map(|id| Order::new(1, 6, 1, 50).key(id)).collect();
        let c: Vec<u64> = (0..50).map(|id| Order::new(2, 6, 0, 50).key(id)).collect();
        assert_ne!(a, b);
        assert_ne!(a, c);
    }
}
