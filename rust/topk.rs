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
    if let Some(best) = top_k_above_a_bar(scores, k, seed, &skip) {
        return best;
    }
    let mut all: Vec<Candidate> = scores
        .par_chunks(chunk)
        .enumerate()
        .flat_map_iter(|(c, part)| chunk_best(part, c * chunk, k, seed, &skip))
        .collect();
    all.sort_unstable();
    all.truncate(k);
    all.into_iter().map(|c| c.id).collect()
}

// ---------------------------------------------------------------------------------------------
// The best k of many through a bar. When k is small against the number of scores, a strided
// sample gives a bar that about 2k scores reach, and the best k are among the prompts at or
// above it. Where the bar is a mass of equal scores (DPS's unobserved prompts settle on one
// value), only the ties whose hash falls below a second bar are gathered, enough to fill the
// k: the order among ties is the hash, so those are the best of the ties. Exact: every prompt
// left out is worse than every prompt gathered, and fewer than k gathered falls back to heaps.

const SAMPLE: usize = 1024;
const GATHER_CHUNK: usize = 1 << 16;

fn top_k_above_a_bar(
    scores: &[f32],
    k: usize,
    seed: u32,
    skip: &(impl Fn(u32) -> bool + Sync),
) -> Option<Vec<u32>> {
    let n = scores.len();
    if n < 32 * SAMPLE || k.saturating_mul(16) > n {
        return None;
    }
    let stride = n / SAMPLE;
    let mut sample: Vec<f32> = (0..SAMPLE).map(|i| scores[i * stride]).collect();
    let rank = (2 * k * SAMPLE / n).max(8);
    let bar = *sample.select_nth_unstable_by(rank, |a, b| b.total_cmp(a)).1;
    if bar.is_nan() {
        return None;
    }
    // The sample's shares of scores above and at the bar, as counts over all scores.
    let scale = n as f64 / SAMPLE as f64;
    let above = sample.iter().filter(|&&s| s > bar).count() as f64 * scale;
    let tied = sample.iter().filter(|&&s| s == bar).count() as f64 * scale;
    let gather_all = |hash_bar: u64| -> Vec<Candidate> {
        scores
            .par_chunks(GATHER_CHUNK)
            .enumerate()
            .flat_map_iter(|(c, part)| gather(part, c * GATHER_CHUNK, seed, bar, hash_bar, skip))
            .collect()
    };
    // Enough ties to fill the k on their own unless the prompts above plainly fill it.
    let ties_wanted = if above >= 4.0 * k as f64 {
        0.0
    } else {
        k as f64
    };
    let mut best = gather_all(hash_bar_for(ties_wanted, tied));
    if best.len() < k {
        let got_above = best.iter().filter(|c| c.score > bar).count();
        best = gather_all(hash_bar_for(4.0 * (k - got_above) as f64, tied));
        if best.len() < k {
            return None;
        }
    }
    best.select_nth_unstable(k - 1);
    best.truncate(k);
    best.sort_unstable();
    Some(best.into_iter().map(|c| c.id).collect())
}

/// The hash below which a tie is gathered: about twice `wanted` of the `tied` equal scores
/// (2^32 gathers them all, 0 none).
fn hash_bar_for(wanted: f64, tied: f64) -> u64 {
    if wanted <= 0.0 {
        return 0;
    }
    let share = 2.0 * (wanted + 64.0) / tied.max(1.0);
    ((share.min(1.0) * 4_294_967_296.0).ceil() as u64).min(1 << 32)
}

#[inline(always)]
fn block_masks(block: &[f32], bar: f32) -> (u64, u64) {
    let mut full = [f32::NEG_INFINITY; BLOCK]; // a fixed length, so that the loop vectorises
    full[..block.len()].copy_from_slice(block);
    let (mut above, mut tied) = (0u64, 0u64);
    for (j, &s) in full.iter().enumerate() {
        above |= ((s > bar) as u64) << j;
        tied |= ((s == bar) as u64) << j;
    }
    (above, tied)
}

/// A bit per id first..first+64 whose tie hash is below `hash_bar`.
#[inline(always)]
fn low_hashes(first: u32, seed: u32, hash_bar: u32) -> u64 {
    let mut hashes = [0u32; BLOCK];
    for (j, h) in hashes.iter_mut().enumerate() {
        *h = tie_key(seed, first.wrapping_add(j as u32));
    }
    hashes
        .iter()
        .enumerate()
        .fold(0u64, |low, (j, &h)| low | (((h < hash_bar) as u64) << j))
}

fn gather(
    part: &[f32],
    offset: usize,
    seed: u32,
    bar: f32,
    hash_bar: u64,
    skip: &(impl Fn(u32) -> bool + Sync),
) -> Vec<Candidate> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { gather_avx512(part, offset, seed, bar, hash_bar, skip) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { gather_avx2(part, offset, seed, bar, hash_bar, skip) };
        }
    }
    gather_body(part, offset, seed, bar, hash_bar, skip)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_avx512(
    part: &[f32],
    offset: usize,
    seed: u32,
    bar: f32,
    hash_bar: u64,
    skip: &(impl Fn(u32) -> bool + Sync),
) -> Vec<Candidate> {
    gather_body(part, offset, seed, bar, hash_bar, skip)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gather_avx2(
    part: &[f32],
    offset: usize,
    seed: u32,
    bar: f32,
    hash_bar: u64,
    skip: &(impl Fn(u32) -> bool + Sync),
) -> Vec<Candidate> {
    gather_body(part, offset, seed, bar, hash_bar, skip)
}

#[inline(always)]
fn gather_body(
    part: &[f32],
    offset: usize,
    seed: u32,
    bar: f32,
    hash_bar: u64,
    skip: &(impl Fn(u32) -> bool + Sync),
) -> Vec<Candidate> {
    let mut out = Vec::new();
    let want_ties = hash_bar > 0;
    for (b, block) in part.chunks(BLOCK).enumerate() {
        // most blocks hold nothing to gather: one cheap vectorised test skips them
        let any = block
            .iter()
            .fold(false, |any, &s| any | (s > bar) | (want_ties & (s == bar)));
        if !any {
            continue;
        }
        let first = (offset + b * BLOCK) as u32;
        let (above, mut tied) = block_masks(block, bar);
        if !want_ties {
            tied = 0;
        }
        if tied != 0 && hash_bar < 1 << 32 {
            tied &= low_hashes(first, seed, hash_bar as u32);
        }
        let mut mask = above | tied;
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let id = first + i as u32;
            if !skip(id) {
                out.push(Candidate {
                    score: block[i],
                    tie: tie_key(seed, id),
                    id,
                });
            }
        }
    }
    out
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
    fn a_bar_gives_the_same_best_k() {
        let mut rng = crate::rng::Rng::new(3);
        let cases: Vec<Vec<f32>> = vec![
            (0..300_000).map(|_| rng.uniform() as f32).collect(),
            (0..300_000)
                .map(|_| rng.below(1000) as f32 / 1000.0)
                .collect(),
            // DPS's shape: a few high scores above a mass of equal ones
            (0..300_000)
                .map(|_| {
                    if rng.below(400) == 0 {
                        0.5 + rng.uniform() as f32 / 4.0
                    } else {
                        1.0 / 3.0
                    }
                })
                .collect(),
            vec![0.5f32; 300_000],
        ];
        for (c, scores) in cases.iter().enumerate() {
            for &k in &[1usize, 10, 256, 1000, 5000, 18_000] {
                for skip_every in [5u32, 1_000_000] {
                    let skip = |id: u32| id % skip_every == 1;
                    let want = reference(scores, k, 7, skip);
                    assert_eq!(
                        top_k(scores, k, 7, skip),
                        want,
                        "case {c}, k = {k}, skip every {skip_every}"
                    );
                }
            }
        }
        let sloped: Vec<f32> = (0..100_000).map(|i| i as f32).collect();
        assert!(top_k_above_a_bar(&sloped, 100, 0, &|_| false).is_some());
        let few_high: Vec<f32> = (0..100_000)
            .map(|i| if i % 997 == 0 { 0.9 } else { 0.3 })
            .collect();
        assert!(top_k_above_a_bar(&few_high, 1000, 0, &|_| false).is_some());
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
