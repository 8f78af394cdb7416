//! The log world in the core (python/dps/replay/logworld.py): a rollout log's groups sorted by
//! (prompt, step) (`rows`), the per-prompt messages over them (`messages`), the model fitted to
//! them (`model`), what a replay asks at each step (`query`: the logged group where the log holds
//! the cell, else the posterior of the prompt's success rate there, a draw from it, and a group
//! drawn with common random numbers, `dice`), and a fitted log as a file (`file`).
//!
//! The floating-point operations follow the numpy implementation they replaced in the same
//! order (sums of a grid row pairwise in blocks of eight, as numpy sums: `pairwise`), so a
//! replay's outcomes are the ones the numpy code drew.

mod dice;
mod file;
pub mod messages;
mod model;
mod pairwise;
mod query;
mod rows;

pub use dice::{draw_correct, Dice};
pub use model::Model;
pub use rows::LogRows;

/// A small log and its model, for the tests of the parts.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::LogRows;

    /// Prompt 0: steps 5, 3 (out of order), 5 again; prompt 1 none; prompt 2: step 4.
    pub fn small() -> LogRows {
        LogRows::new(
            &[5, 3, 4, 5],
            &[0, 0, 2, 0],
            &[1, 2, 8, 0],
            &[8, 8, 8, 8],
            3,
        )
        .unwrap()
    }

    pub fn built(log: &mut LogRows, rate: f64, every: usize) {
        let grid = 4;
        let p_grid = vec![0.1, 0.4, 0.6, 0.9];
        let emission: Vec<f32> = log
            .pairs()
            .iter()
            .flat_map(|&(n, c)| {
                let l: Vec<f64> = p_grid
                    .iter()
                    .map(|p: &f64| p.powi(c as i32) * (1.0 - p).powi((n - c) as i32))
                    .collect();
                let top = l.iter().copied().fold(0.0, f64::max);
                l.into_iter().map(move |x| (x / top) as f32)
            })
            .collect();
        let prior = vec![0.25; grid * 2];
        let model = super::Model {
            rate,
            prior,
            prior_start: 0.0,
            prior_scale: 0.1,
            floor: 1e-6,
            emission,
            p_grid,
        };
        log.build(model, false, every).unwrap();
    }
}
