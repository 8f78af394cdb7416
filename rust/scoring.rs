//! What the scoring policies (DPS, MoPPS, BOTS) share: the top-B selection among the candidate
//! pool or the whole dataset, with seeded tie-breaks; and scores drawn once per step in seeded
//! chunks (MoPPS's and BOTS's posterior draws).

use rayon::prelude::*;

use crate::error::Result;
use crate::pending::Pending;
use crate::pool::CandidatePool;
use crate::rng::{key, stream, Rng};
use crate::topk::{top_k, top_k_among};

/// Prompts per chunk of score draws: each chunk has its own generator.
const CHUNK: usize = 1 << 14;

/// The `batch_size` best-scored prompts not handed out yet in step `step`, within the next
/// candidate pool when there is one; they are marked handed out. Equal scores are ordered by a
/// hash of (seed, step, id).
pub fn select_best(
    scores: &[f32],
    batch_size: usize,
    (seed, step): (u64, u64),
    pool: &mut CandidatePool,
    pending: &mut Pending,
) -> Result<Vec<u32>> {
    pending.check_room(scores.len(), batch_size)?;
    let tie_seed = key(&[seed, stream::TIE_BREAK, step]);
    let ids = match pool.draw(scores.len(), batch_size, pending) {
        Some(pool) => top_k_among(scores, &pool, batch_size, tie_seed),
        None => top_k(scores, batch_size, tie_seed, |id| pending.contains(id)),
    };
    for &id in &ids {
        pending.insert(id);
    }
    Ok(ids)
}

/// One score per prompt, `score(rng, id)`: prompts in chunks, each chunk drawing from its own
/// generator keyed by (seed, stream, step, chunk), so the scores are a pure function of those.
pub fn draw_scores(
    num_prompts: usize,
    (seed, stream, step): (u64, u64, u64),
    score: impl Fn(&mut Rng, usize) -> f32 + Sync,
) -> Vec<f32> {
    let mut scores = vec![0f32; num_prompts];
    scores
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, out)| {
            let mut rng = Rng::new(key(&[seed, stream, step, c as u64]));
            for (j, s) in out.iter_mut().enumerate() {
                *s = score(&mut rng, c * CHUNK + j);
            }
        });
    scores
}

/// This step's scores, drawn at the step's first selection and kept for its later rounds;
/// derived from the state, the seed and the step, so never saved.
#[derive(Clone, Debug, Default)]
pub struct StepScores(Option<(u64, Vec<f32>)>);

impl StepScores {
    /// The scores of `step`, drawn by `draw` unless they already are.
    pub fn of_step(&mut self, step: u64, draw: impl FnOnce() -> Vec<f32>) -> &[f32] {
        if self.0.as_ref().map(|(s, _)| *s) != Some(step) {
            self.0 = Some((step, draw()));
        }
        &self.0.as_ref().expect("drawn just above").1
    }
}
