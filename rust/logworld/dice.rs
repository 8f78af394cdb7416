//! Common random numbers: uniforms that are a pure function of (seed, step, prompt id, j), the
//! j-th response of a prompt at a step, the same for every policy
//! (dps.replay.worlds.hashed_uniforms); built on rng.rs's mixing.

use crate::error::{invalid, Result};
use crate::rng::{fmix64, mix64, unit_f64, GOLDEN, MIX1, MIX2};

/// The uniforms of one (seed, step, prompt id).
#[derive(Clone, Copy)]
pub struct Dice {
    prompt_hash: u64,
}

impl Dice {
    #[inline]
    pub fn new(seed: u64, step: u64, id: i64) -> Self {
        let s = mix64(seed);
        let s = fmix64(s ^ step.wrapping_mul(GOLDEN).wrapping_add(1));
        Dice {
            prompt_hash: fmix64(s ^ (id as u64).wrapping_mul(MIX1).wrapping_add(GOLDEN)),
        }
    }

    /// The j-th uniform (j >= 1).
    #[inline]
    pub fn uniform(&self, j: u64) -> f64 {
        unit_f64(fmix64(self.prompt_hash.wrapping_add(j.wrapping_mul(MIX2))))
    }

    /// Correct responses among k, each correct with probability p.
    #[inline]
    pub fn correct(&self, p: f64, k: u64) -> i64 {
        (1..=k).filter(|&j| self.uniform(j) < p).count() as i64
    }
}

/// Binomial(k, p[i]) for each ids[i], with the dice of (seed, step, ids[i]).
pub fn draw_correct(seed: u64, step: u64, ids: &[i64], p: &[f64], k: u64) -> Result<Vec<i64>> {
    if ids.len() != p.len() {
        return invalid(format!("{} ids but {} success rates", ids.len(), p.len()));
    }
    Ok(ids
        .iter()
        .zip(p)
        .map(|(&id, &q)| Dice::new(seed, step, id).correct(q, k))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dice as first written, with the mixing spelled out (what replays drew before they
    /// shared rng.rs's): the same bits.
    #[test]
    fn the_dice_are_the_ones_replays_always_drew() {
        fn mix(mut x: u64) -> u64 {
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        }
        let golden = 0x9E37_79B9_7F4A_7C15u64;
        for (seed, step, id) in [(0u64, 0u64, 0i64), (7, 3, 41), (u64::MAX, 1 << 40, -5)] {
            let s = mix(seed.wrapping_add(golden));
            let s = mix(s ^ step.wrapping_mul(golden).wrapping_add(1));
            let h = mix(s
                ^ (id as u64)
                    .wrapping_mul(0xBF58_476D_1CE4_E5B9)
                    .wrapping_add(golden));
            let dice = Dice::new(seed, step, id);
            for j in 1..20u64 {
                let u = mix(h.wrapping_add(j.wrapping_mul(0x94D0_49BB_1331_11EB)));
                let want = (u >> 11) as f64 * (1.0 / 9007199254740992.0);
                assert_eq!(dice.uniform(j).to_bits(), want.to_bits());
            }
        }
    }
}
