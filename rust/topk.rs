//! Top-k selection over a score per prompt, in parallel, with ties broken by a seeded hash.

use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::rng::mix64;

const CHUNK: usize = 1 << 16;

#[derive(Clone, Copy, Debug)]
struct Candidate {
    score: f32,
    tie: u64,
    id: u32,
}

/// Ordered so that "greater" means "worse": the heap's top is the candidate to evict.
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        other.score.total_cmp(&self.score).then(self.tie.cmp(&other.tie))
    }
}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}

#[inline]
fn tie_key(tie_seed: u64, id: u32) -> u64 {
    mix64(tie_seed ^ (id as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93))
}

fn chunk_best(
    scores: &[f32],
    offset: usize,
    k: usize,
    tie_seed: u64,
    skip: &(impl Fn(u32) -> bool + Sync),
) -> Vec<Candidate> {
    let mut heap: BinaryHeap<Candidate> = BinaryHeap::with_capacity(k + 1);
    for (i, &score) in scores.iter().enumerate() {
        let id = (offset + i) as u32;
        if heap.len() == k {
            let worst = heap.peek().unwrap();
            if score < worst.score || (score == worst.score && tie_key(tie_seed, id) > worst.tie) {
                continue;
            }
        }
        if skip(id) {
            continue;
        }
        heap.push(Candidate { score, tie: tie_key(tie_seed, id), id });
        if heap.len() > k {
            heap.pop();
        }
    }
    heap.into_vec()
}

/// The ids of the `k` highest scores, best first, leaving out ids for which `skip` is true.
/// Equal scores are ordered by a hash of (`tie_seed`, id): a seeded random order.
pub fn top_k(scores: &[f32], k: usize, tie_seed: u64, skip: impl Fn(u32) -> bool + Sync) -> Vec<u32> {
    if k == 0 {
        return Vec::new();
    }
    let mut all: Vec<Candidate> = scores
        .par_chunks(CHUNK)
        .enumerate()
        .flat_map_iter(|(c, chunk)| chunk_best(chunk, c * CHUNK, k, tie_seed, &skip))
        .collect();
    all.sort_unstable();
    all.truncate(k);
    all.into_iter().map(|c| c.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(scores: &[f32], k: usize, tie_seed: u64, skip: impl Fn(u32) -> bool) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..scores.len() as u32).filter(|&i| !skip(i)).collect();
        ids.sort_by(|&a, &b| {
            scores[b as usize]
                .total_cmp(&scores[a as usize])
                .then(tie_key(tie_seed, a).cmp(&tie_key(tie_seed, b)))
        });
        ids.truncate(k);
        ids
    }

    #[test]
    fn matches_a_full_sort() {
        let mut rng = crate::rng::Rng::new(5);
        // Few distinct values, so that ties are common, over several chunks.
        let scores: Vec<f32> = (0..200_000).map(|_| (rng.below(7) as f32) / 7.0).collect();
        for &k in &[1usize, 10, 256, 5000] {
            let got = top_k(&scores, k, 42, |id| id % 3 == 0);
            assert_eq!(got, reference(&scores, k, 42, |id| id % 3 == 0), "k = {k}");
        }
    }

    #[test]
    fn ties_follow_the_seed() {
        let scores = vec![0.5f32; 1000];
        let a = top_k(&scores, 10, 1, |_| false);
        let b = top_k(&scores, 10, 2, |_| false);
        assert_eq!(a, top_k(&scores, 10, 1, |_| false));
        assert_ne!(a, b);
    }

    #[test]
    fn k_larger_than_candidates() {
        let scores = vec![1.0f32, 2.0, 3.0];
        assert_eq!(top_k(&scores, 10, 0, |_| false), vec![2, 1, 0]);
    }
}
