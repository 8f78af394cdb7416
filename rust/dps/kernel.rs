//! The unobserved half of a DPS step: a prompt not rolled out takes its prior as posterior and
//! its counts decay toward alpha0.
//!
//! That update is a fixed map of the stored f32 state, so a prompt it leaves bit-for-bit
//! unchanged sits at a fixed point and stays there until it is observed again. Unobserved for
//! some tens of steps (about 45 at decay 0.7) a prompt reaches one, so the caller passes only the
//! prompts that may still change and gets back those that did: at a large N most prompts are
//! settled and a step touches only the recently observed ones. Skipping them changes no bit.
//!
//! Prompts are copied in blocks of LANES records, updated by a branch-free loop (compiled for
//! AVX2 and AVX-512 too and chosen at run time), and written back where they changed. No fused
//! multiply-add is used, so every build computes bit-identical results. The price of the record
//! layout: a step that updates every prompt (the first two, or all of them at a decay close to 1)
//! costs about 2.4 times what the column layout did; benchmarks/bench_dps.py shows both.

use super::store::{Record, Store};
use super::{entropy, predict, widen3, widen9};

/// Prompts per block.
const LANES: usize = 64;
/// Prompts per task handed to a thread.
const CHUNK: usize = 1 << 14;

pub struct Dense {
    pub lam: f64,
    /// (1 - lam) * alpha0.
    pub offset: [f64; 9],
    /// Before the first step every prior is pi0 itself.
    pub fresh: Option<[f64; 3]>,
    pub entropy_weight: f64,
}

/// Updates the prompts `ids` (sorted, distinct) as unobserved and returns those whose state
/// changed. On the first step (`fresh`) every prompt is written and none is returned: a state
/// unchanged by that step's different map says nothing about the later ones.
pub fn update(store: &mut Store, ids: &[u32], k: &Dense) -> Vec<u32> {
    let Store { records, score } = store;
    split(records, score, 0, ids, k)
}

/// `records[0]` and `score[0]` are prompt `base`; the halves of `ids` own disjoint ranges.
fn split(records: &mut [Record], score: &mut [f32], base: u32, ids: &[u32], k: &Dense) -> Vec<u32> {
    if ids.len() <= CHUNK {
        let mut changed = Vec::new();
        run(records, score, base, ids, k, &mut changed);
        return changed;
    }
    let mid = ids.len() / 2;
    let cut = ids[mid];
    let at = (cut - base) as usize;
    let (records_l, records_r) = records.split_at_mut(at);
    let (score_l, score_r) = score.split_at_mut(at);
    let (mut left, right) = rayon::join(
        || split(records_l, score_l, base, &ids[..mid], k),
        || split(records_r, score_r, cut, &ids[mid..], k),
    );
    left.extend(right);
    left
}

fn run(
    records: &mut [Record],
    score: &mut [f32],
    base: u32,
    ids: &[u32],
    k: &Dense,
    changed: &mut Vec<u32>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            unsafe { run_avx512(records, score, base, ids, k, changed) };
            return;
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { run_avx2(records, score, base, ids, k, changed) };
            return;
        }
    }
    body(records, score, base, ids, k, changed)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512(
    records: &mut [Record],
    score: &mut [f32],
    base: u32,
    ids: &[u32],
    k: &Dense,
    changed: &mut Vec<u32>,
) {
    body(records, score, base, ids, k, changed)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2(
    records: &mut [Record],
    score: &mut [f32],
    base: u32,
    ids: &[u32],
    k: &Dense,
    changed: &mut Vec<u32>,
) {
    body(records, score, base, ids, k, changed)
}

#[inline(always)]
fn body(
    records: &mut [Record],
    score: &mut [f32],
    base: u32,
    ids: &[u32],
    k: &Dense,
    changed: &mut Vec<u32>,
) {
    let init = k.fresh.unwrap_or([0.0; 3]);
    match (k.fresh.is_some(), k.entropy_weight != 0.0) {
        (true, false) => blocks::<true, false>(records, score, base, ids, k, init, changed),
        (true, true) => blocks::<true, true>(records, score, base, ids, k, init, changed),
        (false, false) => blocks::<false, false>(records, score, base, ids, k, init, changed),
        (false, true) => blocks::<false, true>(records, score, base, ids, k, init, changed),
    }
}

#[inline(always)]
fn blocks<const FRESH: bool, const ENTROPY: bool>(
    records: &mut [Record],
    score: &mut [f32],
    base: u32,
    ids: &[u32],
    k: &Dense,
    init: [f64; 3],
    changed: &mut Vec<u32>,
) {
    let mut rows: [Record; LANES] = [[1.0; 12]; LANES];
    let mut new: [Record; LANES] = [[1.0; 12]; LANES];
    let mut scores = [0.0f32; LANES];
    for chunk in ids.chunks(LANES) {
        for (row, &id) in rows.iter_mut().zip(chunk) {
            *row = records[(id - base) as usize];
        }
        lanes::<FRESH, ENTROPY>(&rows, &mut new, &mut scores, k, init);
        for (j, &id) in chunk.iter().enumerate() {
            let i = (id - base) as usize;
            if FRESH || new[j].map(f32::to_bits) != rows[j].map(f32::to_bits) {
                records[i] = new[j];
                score[i] = scores[j];
                if !FRESH {
                    changed.push(id);
                }
            }
        }
    }
}

#[inline(always)]
fn lanes<const FRESH: bool, const ENTROPY: bool>(
    rows: &[Record; LANES],
    new: &mut [Record; LANES],
    scores: &mut [f32; LANES],
    k: &Dense,
    init: [f64; 3],
) {
    for i in 0..LANES {
        let r = rows[i];
        let a: [f32; 9] = std::array::from_fn(|e| r[e]);
        let q = if FRESH {
            init
        } else {
            predict(&widen9(&a), &widen3(&[r[9], r[10], r[11]]))
        };
        let a_new: [f32; 9] = std::array::from_fn(|j| (k.lam * a[j] as f64 + k.offset[j]) as f32);
        let q_new = q.map(|x| x as f32);
        new[i] = super::store::record(&a_new, &q_new);
        let prior = predict(&widen9(&a_new), &widen3(&q_new));
        scores[i] = if ENTROPY {
            (prior[1] + k.entropy_weight * entropy(&prior)) as f32
        } else {
            prior[1] as f32
        };
    }
}
