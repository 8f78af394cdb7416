//! DS, dynamic sampling (DAPO): after rollout, keep only groups with a learning signal.

use crate::error::{invalid, Result};
use crate::observe::partially_solved;

/// Which groups pass: reward std > 0 (0 < correct < k) by default, or a mean inside [lo, hi].
pub fn admit(n_correct: &[i64], n_rollouts: &[i64], band: Option<(f64, f64)>) -> Result<Vec<bool>> {
    if n_correct.len() != n_rollouts.len() {
        return invalid(format!(
            "lengths differ: n_correct has {}, n_rollouts {}",
            n_correct.len(),
            n_rollouts.len()
        ));
    }
    if let Some((lo, hi)) = band {
        if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
            return invalid(format!(
                "the band [lo, hi] = [{lo}, {hi}] must satisfy 0 <= lo <= hi <= 1"
            ));
        }
    }
    n_correct
        .iter()
        .zip(n_rollouts)
        .enumerate()
        .map(|(i, (&c, &n))| {
            if n <= 0 || c < 0 || c > n {
                return invalid(format!(
                    "group {i}: n_correct = {c}, n_rollouts = {n} is not a valid count"
                ));
            }
            Ok(match band {
                None => partially_solved(c as u64, n as u64),
                Some((lo, hi)) => {
                    let mean = c as f64 / n as f64;
                    lo <= mean && mean <= hi
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_partial_groups() {
        assert_eq!(
            admit(&[0, 3, 8], &[8, 8, 8], None).unwrap(),
            vec![false, true, false]
        );
        assert_eq!(
            admit(&[0, 3, 8], &[8, 8, 8], Some((0.0, 0.5))).unwrap(),
            vec![true, true, false]
        );
        assert!(admit(&[9], &[8], None).is_err());
        assert!(admit(&[1], &[8], Some((0.6, 0.2))).is_err());
    }
}
