//! Top-k selection over a score per prompt, in parallel, with ties broken by a seeded hash.
//!
//! Scores are scanned in blocks: one vectorised pass over a block asks whether any prompt in it
//! could enter the current best k; most blocks are then skipped whole.

use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

const CHUNK: usize = 1 << 20;
const BLOCK: usize = 64;
const _: () = assert!(BLOCK <= 64, "a block's prompts are bits of a u64");

#[derive(Clone, Copy, Debug)]
struct Candidate {
    score: f32,
    tie: u32,
    id: u32,
}

/// Ordered so that "greater" means "worse": the heap's top is the candidate to evict.
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.tie.cmp(&other.tie))
            .then(self.id.cmp(&other.id))
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

/// A seeded 32-bit hash of the id (murmur3's finaliser): the order among equal scores.
#[inline(always)]
fn tie_key(seed: u32, id: u32) -> u32 {
    let mut h = id.wrapping_mul(0x9E37_79B1) ^ seed;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^ (h >> 16)
}

/// A bit per prompt of the block (at most 64) that beats (worst_score, worst_tie). The tie
/// hash is computed only for a block that holds the worst score itself.
#[inline(always)]
fn better_mask(block: &[f32], first_id: u32, seed: u32, worst_score: f32, worst_tie: u32) -> u64 {
    let (mut greater, mut equal) = (0u64, false);
    for (j, &s) in block.iter().enumerate() {
        greater |= ((s > worst_score) as u64) << j;
        equal |= s == worst_score;
    }
    if !equal {
        return greater;
    }
    block.iter().enumerate().fold(greater, |mask, (j, &s)| {
        let tie = tie_key(seed, first_id.wrapping_add(j as u32));
        mask | ((((s == worst_score) & (tie < worst_tie)) as u64) << j)
    })
}

#[inline(always)]
fn chunk_best_body(
    scores: &[f32],
    offset: usize,
    k: usize,
    seed: u32,
    skip: &(impl Fn(u32) -> bool + Sync),
) -> Vec<Candidate> {
    let mut heap: BinaryHeap<Candidate> = BinaryHeap::with_capacity(k + 1);
    for (b, block) in scores.chunks(BLOCK).enumerate() {
        let first = (offset + b * BLOCK) as u32;
        // Once the heap is full its worst only rises, so a prompt that does not beat the worst
        // at the start of the block never enters it.
        let mut mask = u64::MAX >> (64 - block.len());
        if heap.len() == k {
            let worst = heap.peek().unwrap();
            mask = better_mask(block, first, seed, worst.score, worst.tie);
        }
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let (score, id) = (block[i], first + i as u32);
            let candidate = Candidate {
                score,
                tie: tie_key(seed, id),
                id,
            };
            if heap.len() == k && candidate >= *heap.peek().unwrap() {
                continue;
            }
            if skip(id) {
                continue;
            }
            heap.push(candidate);
            if heap.len() > k {
                heap.pop();
            }
        }
    }
    heap.into_vec()
}

fn chunk_best(
    scores: &[f32],
    offset: usize,
    k: usize,
    seed: u32,
    skip: &(impl Fn(u32) -> bool + Sync),
) -> Vec<Candidate> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { chunk_best_avx512(scores, offset, k, seed, skip) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { chunk_best_avx2(scores, offset, k, seed, skip) };
        }
    }
    chunk_best_body(scores, offset, k, seed, skip)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn chunk_best_avx512(
    scores: &[f32],
    offset: usize,
    k: usize,
    seed: u32,
    skip: &(impl Fn(u32) -> bool + Sync),
) -> Vec<Candidate> {
    chunk_best_body(scores, offset, k, seed, skip)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn chunk_best_avx2(
    scores: &[f32],
    offset: usize,
    k: usize,
    seed: u32,
    skip: &(impl Fn(u32) -> bool + Sync),
) -> Vec<Candidate> {
    chunk_best_body(scores, offset, k, seed, skip)
}

/// The ids of the `k` highest scores, best first, leaving out ids for which `skip` is true.
/// Equal scores are ordered by a hash of (`tie_seed`, id): a seeded random order.
pub fn top_k(
    scores: &[f32],
    k: usize,
    tie_seed: u64,
    skip: impl Fn(u32) -> bool + Sync,
) -> Vec<u32> {
    top_k_in_chunks(scores, k, tie_seed, skip, CHUNK)
}

/// The ids among `ids` (distinct) with the `k` highest scores, best first, in the same order
/// as `top_k` over those ids alone: equal scores by the hash of (`tie_seed`, id).
pub fn top_k_among(scores: &[f32], ids: &[u32], k: usize, tie_seed: u64) -> Vec<u32> {
    let seed = (tie_seed ^ (tie_seed >> 32)) as u32;
    let mut all: Vec<Candidate> = ids
        .iter()
        .map(|&id| Candidate {
            score: scores[id as usize],
            tie: tie_key(seed, id),
            id,
        })
        .collect();
    if k < all.len() {
        all.select_nth_unstable(k);
        all.truncate(k);
    }
    all.sort_unstable();
    all.into_iter().map(|c| c.id).collect()
}

/// Chunks are scanned in parallel, each keeping its own best k. Large chunks pay off: each one
/// starts with an empty heap and a low bar, so small ones waste time filling heaps.
fn top_k_in_chunks(
    scores: &[f32],
    k: usize,
    tie_seed: u64,
    skip: impl Fn(u32) -> bool + Sync,
    chunk: usize,
) -> Vec<u32> {
    if k == 0 {
        return Vec::new();
    }
    let seed = (tie_seed ^ (tie_seed >> 32)) as u32;
    let mut all: Vec<Candidate> = scores
        .par_chunks(chunk)
        .enumerate()
        .flat_map_iter(|(c, part)| chunk_best(part, c * chunk, k, seed, &skip))
        .collect();
    all.sort_unstable();
    all.truncate(k);
    all.into_iter().map(|c| c.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(scores: &[f32], k: usize, tie_seed: u64, skip: impl Fn(u32) -> bool) -> Vec<u32> {
        let seed = (tie_seed ^ (tie_seed >> 32)) as u32;
        let mut ids: Vec<u32> = (0..scores.len() as u32).filter(|&i| !skip(i)).collect();
        ids.sort_by(|&a, &b| {
            scores[b as usize]
                .total_cmp(&scores[a as usize])
                .then(tie_key(seed, a).cmp(&tie_key(seed, b)))
                .then(a.cmp(&b))
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
            let want = reference(&scores, k, 42, |id| id % 3 == 0);
            assert_eq!(top_k(&scores, k, 42, |id| id % 3 == 0), want, "k = {k}");
            assert_eq!(
                top_k_in_chunks(&scores, k, 42, |id| id % 3 == 0, 777),
                want,
                "k = {k}, small chunks"
            );
        }
    }

    #[test]
    fn among_a_subset_matches_top_k_that_skips_the_rest() {
        let mut rng = crate::rng::Rng::new(9);
        let scores: Vec<f32> = (0..5000).map(|_| (rng.below(5) as f32) / 5.0).collect();
        let mut ids: Vec<u32> = (0..5000).filter(|i| i % 7 != 3).collect();
        rng.shuffle(&mut ids);
        ids.truncate(700);
        let inside: std::collections::HashSet<u32> = ids.iter().copied().collect();
        for &k in &[0usize, 1, 64, 699, 700, 900] {
            assert_eq!(
                top_k_among(&scores, &ids, k, 11),
                top_k(&scores, k, 11, |id| !inside.contains(&id)),
                "k = {k}"
            );
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
