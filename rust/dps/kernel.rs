//! The unobserved half of a DPS step: a prompt not rolled out takes its prior as posterior and
//! its counts decay toward alpha0.
//!
//! That update is a fixed map of the stored f32 state, so a prompt it leaves bit-for-bit
//! unchanged sits at a fixed point and stays there until it is observed again. Unobserved for
//! some tens of steps (about 45 at decay 0.7) a prompt reaches one, so the caller passes only the
//! prompts that may still change and gets back those that did: at a large N most prompts are
//! settled and a step touches only the recently observed ones. Skipping them changes no bit.
//!
//! Prompts are gathered in blocks into column scratch, updated by a branch-free loop that the
//! compiler vectorises (also compiled for AVX2 and AVX-512 and chosen at run time), and written
//! back. No fused multiply-add is used, so every build computes bit-identical results.

use super::store::{Record, Store};
use super::{entropy, predict, widen3, widen9};

/// Prompts per vectorised block.
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

/// Column scratch for one block of prompts; its lanes always hold a valid state.
struct Block {
    alpha: [[f32; LANES]; 9],
    post: [[f32; LANES]; 3],
    score: [f32; LANES],
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
    let mut b = Block {
        alpha: [[1.0; LANES]; 9],
        post: [[1.0 / 3.0; LANES]; 3],
        score: [0.0; LANES],
    };
    for chunk in ids.chunks(LANES) {
        for (j, &id) in chunk.iter().enumerate() {
            let r = &records[(id - base) as usize];
            for (column, &value) in b.alpha.iter_mut().chain(&mut b.post).zip(r) {
                column[j] = value;
            }
        }
        lanes::<FRESH, ENTROPY>(&mut b, k, init);
        for (j, &id) in chunk.iter().enumerate() {
            let i = (id - base) as usize;
            let new: Record = std::array::from_fn(|e| {
                if e < 9 {
                    b.alpha[e][j]
                } else {
                    b.post[e - 9][j]
                }
            });
            if FRESH || new.map(f32::to_bits) != records[i].map(f32::to_bits) {
                records[i] = new;
                score[i] = b.score[j];
                if !FRESH {
                    changed.push(id);
                }
            }
        }
    }
}

#[inline(always)]
fn lanes<const FRESH: bool, const ENTROPY: bool>(b: &mut Block, k: &Dense, init: [f64; 3]) {
    for i in 0..LANES {
        let a: [f32; 9] = std::array::from_fn(|e| b.alpha[e][i]);
        let q = if FRESH {
            init
        } else {
            predict(
                &widen9(&a),
                &widen3(&[b.post[0][i], b.post[1][i], b.post[2][i]]),
            )
        };
        let a_new: [f32; 9] = std::array::from_fn(|j| (k.lam * a[j] as f64 + k.offset[j]) as f32);
        let q_new = q.map(|x| x as f32);
        for (column, &value) in b
            .alpha
            .iter_mut()
            .chain(&mut b.post)
            .zip(a_new.iter().chain(&q_new))
        {
            column[i] = value;
        }
        // The score comes from the stored (rounded) values, as a reload would compute it.
        let prior = predict(&widen9(&a_new), &widen3(&q_new));
        b.score[i] = if ENTROPY {
            (prior[1] + k.entropy_weight * entropy(&prior)) as f32
        } else {
            prior[1] as f32
        };
    }
}
