//! A Beta(a, b) belief about each prompt's success rate (MoPPS, BOTS), and its Beta-binomial
//! predictive: the chance that a prompt's next group of k rollouts is unsolved, partially solved
//! or solved, which MoPPS and BOTS give as their prediction so that replay can score them like DPS.

use crate::error::{invalid, Result};

/// Beta(a[i], b[i]) per prompt.
#[derive(Clone, Debug, Default)]
pub struct Beliefs {
    pub a: Vec<f64>,
    pub b: Vec<f64>,
}

impl Beliefs {
    /// Every prompt at the prior Beta(a0, b0).
    pub fn new(num_prompts: usize, a0: f64, b0: f64) -> Self {
        Beliefs {
            a: vec![a0; num_prompts],
            b: vec![b0; num_prompts],
        }
    }

    /// Saved beliefs, checked: one positive, finite (a, b) per prompt.
    pub fn restore(num_prompts: usize, a: Vec<f64>, b: Vec<f64>) -> Result<Self> {
        if a.len() != num_prompts || b.len() != num_prompts {
            return invalid(format!(
                "a and b hold {} and {} values, expected {num_prompts}",
                a.len(),
                b.len()
            ));
        }
        if a.iter().chain(&b).any(|x| !(x.is_finite() && *x > 0.0)) {
            return invalid("a and b must be positive and finite");
        }
        Ok(Beliefs { a, b })
    }

    pub fn len(&self) -> usize {
        self.a.len()
    }

    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }

    pub fn posterior(&self, id: u32) -> (f64, f64) {
        (self.a[id as usize], self.b[id as usize])
    }

    /// The Beta-binomial predictive of prompt `id`'s next group of k rollouts.
    pub fn predicted(&self, id: u32, k: u32) -> [f64; 3] {
        state_probs(self.a[id as usize], self.b[id as usize], k)
    }
}

/// [P(0 of k correct), P(0 < correct < k), P(k of k correct)] under p ~ Beta(a, b).
///
/// P(all k fail) = prod_{i<k} (b + i) / (a + b + i) and P(all k succeed) likewise with a;
/// k = 0 has no partial group and counts as unsolved.
pub fn state_probs(a: f64, b: f64, k: u32) -> [f64; 3] {
    if k == 0 {
        return [1.0, 0.0, 0.0];
    }
    let (mut none, mut all) = (1.0f64, 1.0f64);
    for i in 0..k {
        let i = i as f64;
        none *= (b + i) / (a + b + i);
        all *= (a + i) / (a + b + i);
    }
    [none, (1.0 - none - all).max(0.0), all]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_belief_gives_each_count_one_chance_in_k_plus_one() {
        let p = state_probs(1.0, 1.0, 8);
        assert!((p[0] - 1.0 / 9.0).abs() < 1e-15);
        assert!((p[2] - 1.0 / 9.0).abs() < 1e-15);
        assert!((p[1] - 7.0 / 9.0).abs() < 1e-15);
    }

    #[test]
    fn a_sharp_belief_approaches_the_binomial() {
        // Beta(5e5, 5e5) is nearly p = 0.5: P(none) ~ 0.5^8.
        let p = state_probs(5e5, 5e5, 8);
        assert!((p[0] - 0.5f64.powi(8)).abs() < 1e-6);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
