//! The grid of success rates and what a group of n tells about each (docs/method.md#rate-dps-model).

use std::sync::OnceLock;

/// `size` rates evenly spaced in logit over [-logit_max, logit_max].
pub fn rate_grid(size: usize, logit_max: f64) -> Vec<f64> {
    (0..size)
        .map(|j| {
            let z = -logit_max + 2.0 * logit_max * j as f64 / (size - 1) as f64;
            1.0 / (1.0 + (-z).exp())
        })
        .collect()
}

/// The grid with its logs, for the binomial likelihood.
#[derive(Clone, Debug)]
pub struct Grid {
    pub rates: Vec<f64>,
    log_rate: Vec<f64>,
    log_miss: Vec<f64>,
}

impl Grid {
    pub fn new(size: usize, logit_max: f64) -> Self {
        let rates = rate_grid(size, logit_max);
        Grid {
            log_rate: rates.iter().map(|r| r.ln()).collect(),
            log_miss: rates.iter().map(|r| (-r).ln_1p()).collect(),
            rates,
        }
    }

    pub fn len(&self) -> usize {
        self.rates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }

    /// log P(c of n | rate) at every rate, the binomial coefficient included, into `out`. A
    /// graded group's c = n x its mean reward need not be whole: its coefficient is then the
    /// Gamma function's (the same at every rate, so it moves no posterior).
    pub fn log_binomial(&self, c: f64, n: u32, out: &mut [f64]) {
        let coefficient = if c.fract() == 0.0 {
            ln_choose(n as u64, c as u64)
        } else {
            ln_gamma(n as f64 + 1.0) - ln_gamma(c + 1.0) - ln_gamma(n as f64 - c + 1.0)
        };
        let miss = n as f64 - c;
        for ((o, lr), lm) in out.iter_mut().zip(&self.log_rate).zip(&self.log_miss) {
            *o = coefficient + c * lr + miss * lm;
        }
    }

    /// [P(unsolved), P(partially solved), P(solved)] of a group of n at each rate. n = 0 is an
    /// empty group (0 correct: unsolved); a group of one is never partially solved.
    pub fn state_chances(&self, n: u32) -> Vec<[f64; 3]> {
        self.rates
            .iter()
            .map(|&r| {
                if n == 0 {
                    return [1.0, 0.0, 0.0];
                }
                let (unsolved, solved) = ((1.0 - r).powf(n as f64), r.powf(n as f64));
                let partial = if n >= 2 { 1.0 - unsolved - solved } else { 0.0 };
                [unsolved, partial, solved]
            })
            .collect()
    }

    /// P(a group of k is partially solved) at each rate.
    pub fn partial_chances(&self, k: u32) -> Vec<f64> {
        self.state_chances(k).iter().map(|c| c[1]).collect()
    }
}

/// ln C(n, c).
pub fn ln_choose(n: u64, c: u64) -> f64 {
    ln_factorial(n) - ln_factorial(c) - ln_factorial(n - c)
}

const FACTORIAL_TABLE: usize = 1024;

/// ln n!: summed logs below 1024, Lanczos's ln Gamma(n + 1) above.
fn ln_factorial(n: u64) -> f64 {
    static TABLE: OnceLock<Vec<f64>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = vec![0.0; FACTORIAL_TABLE];
        for i in 1..FACTORIAL_TABLE {
            t[i] = t[i - 1] + (i as f64).ln();
        }
        t
    });
    match table.get(n as usize) {
        Some(&v) => v,
        None => ln_gamma(n as f64 + 1.0),
    }
}

/// ln Gamma(x) for x >= 1 (Lanczos, g = 7, nine terms: about 1e-15 relative).
fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let t = x + 7.5;
    let series = COEFFICIENTS[1..]
        .iter()
        .enumerate()
        .fold(COEFFICIENTS[0], |a, (i, c)| a + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_spans_the_logit_range_evenly() {
        let r = rate_grid(16, 7.0);
        assert!((r[0] - 1.0 / (1.0 + 7f64.exp())).abs() < 1e-15);
        assert!((r[15] - (1.0 - r[0])).abs() < 1e-15);
        assert!(r.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn log_binomial_matches_a_direct_computation() {
        let grid = Grid::new(8, 5.0);
        let mut out = vec![0.0; 8];
        grid.log_binomial(3.0, 11, &mut out);
        for (j, &r) in grid.rates.iter().enumerate() {
            let direct = (165.0 * r.powi(3) * (1.0 - r).powi(8)).ln();
            assert!((out[j] - direct).abs() < 1e-12, "{j}");
        }
        // Above the table, Lanczos agrees with the summed logs.
        let summed: f64 = (1..=3000u64).map(|i| (i as f64).ln()).sum();
        assert!((ln_factorial(3000) - summed).abs() < 1e-9 * summed);
        assert!(
            (ln_choose(2000, 1000) - (ln_factorial(2000) - 2.0 * ln_factorial(1000))).abs() < 1e-9
        );
    }

    #[test]
    fn state_chances_sum_to_one() {
        let grid = Grid::new(16, 7.0);
        for n in [0u32, 1, 2, 8, 33] {
            for c in grid.state_chances(n) {
                assert!((c.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
        }
        assert!(grid.state_chances(1).iter().all(|c| c[1] == 0.0));
    }
}
