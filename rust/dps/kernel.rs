//! The unobserved half of a DPS step: a prompt not rolled out takes its prior as posterior and
//! its counts decay toward alpha0.
//!
//! That update is a fixed map of the stored f32 state, so a prompt it leaves bit-for-bit
//! unchanged sits at a fixed point and stays there until it is observed again. Unobserved for
//! some tens of steps (about 45 at decay 0.7) a prompt reaches one, so the caller passes only the
//! prompts that may still change and gets back those that did: at a large N most prompts are
//! settled and a step touches only the recently observed ones. Skipping them changes no bit.
//!
//! Prompts are copied in blocks of LANES records, turned into columns (4 x 4 SSE transposes),
//! updated by a branch-free loop over the columns that the compiler vectorises (also compiled for
//! AVX2 and AVX-512 and chosen at run time), turned back and written where they changed. No fused
//! multiply-add is used, so every build computes bit-identical results. The price of the record
//! layout: a step that updates every prompt (the first two, or all of them at a decay close to 1)
//! costs more than it did with one array per entry; benchmarks/bench_dps.py shows both.

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
    let mut cols = [[0.0f32; LANES]; 12];
    let mut scores = [0.0f32; LANES];
    for chunk in ids.chunks(LANES) {
        for (row, &id) in rows.iter_mut().zip(chunk) {
            *row = records[(id - base) as usize];
        }
        transpose::to_columns(&rows, &mut cols);
        lanes::<FRESH, ENTROPY>(&mut cols, &mut scores, k, init);
        transpose::to_rows(&cols, &mut new);
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

/// The update of LANES prompts held as columns (alpha's nine entries, then the posterior's three).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // indexed lanes vectorise
fn lanes<const FRESH: bool, const ENTROPY: bool>(
    cols: &mut [[f32; LANES]; 12],
    scores: &mut [f32; LANES],
    k: &Dense,
    init: [f64; 3],
) {
    for i in 0..LANES {
        let a: [f32; 9] = std::array::from_fn(|e| cols[e][i]);
        let q = if FRESH {
            init
        } else {
            predict(
                &widen9(&a),
                &widen3(&[cols[9][i], cols[10][i], cols[11][i]]),
            )
        };
        let a_new: [f32; 9] = std::array::from_fn(|j| (k.lam * a[j] as f64 + k.offset[j]) as f32);
        let q_new = q.map(|x| x as f32);
        for e in 0..9 {
            cols[e][i] = a_new[e];
        }
        for e in 0..3 {
            cols[9 + e][i] = q_new[e];
        }
        // The score comes from the stored (rounded) values, as a reload would compute it.
        let prior = predict(&widen9(&a_new), &widen3(&q_new));
        scores[i] = if ENTROPY {
            (prior[1] + k.entropy_weight * entropy(&prior)) as f32
        } else {
            prior[1] as f32
        };
    }
}

/// Records (one prompt's 12 values each) <-> columns (one value of LANES prompts each).
mod transpose {
    use super::{Record, LANES};

    #[cfg(target_arch = "x86_64")]
    pub fn to_columns(rows: &[Record; LANES], cols: &mut [[f32; LANES]; 12]) {
        use std::arch::x86_64::{_mm_loadu_ps, _mm_storeu_ps};
        for j in (0..LANES).step_by(4) {
            for part in 0..3 {
                // SAFETY: SSE is part of x86-64; every pointer is inside a fixed-size array
                // (rows j..j+4 < LANES, entries 4 * part..4 * part + 4 <= 12).
                unsafe {
                    let load = |r: usize| _mm_loadu_ps(rows[j + r].as_ptr().add(4 * part));
                    let v = square(load(0), load(1), load(2), load(3));
                    for (m, &x) in v.iter().enumerate() {
                        _mm_storeu_ps(cols[4 * part + m].as_mut_ptr().add(j), x);
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    pub fn to_rows(cols: &[[f32; LANES]; 12], rows: &mut [Record; LANES]) {
        use std::arch::x86_64::{_mm_loadu_ps, _mm_storeu_ps};
        for j in (0..LANES).step_by(4) {
            for part in 0..3 {
                // SAFETY: as in `to_columns`.
                unsafe {
                    let load = |m: usize| _mm_loadu_ps(cols[4 * part + m].as_ptr().add(j));
                    let v = square(load(0), load(1), load(2), load(3));
                    for (r, &x) in v.iter().enumerate() {
                        _mm_storeu_ps(rows[j + r].as_mut_ptr().add(4 * part), x);
                    }
                }
            }
        }
    }

    /// The transpose of a 4 x 4 block held as four rows.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn square(
        a: std::arch::x86_64::__m128,
        b: std::arch::x86_64::__m128,
        c: std::arch::x86_64::__m128,
        d: std::arch::x86_64::__m128,
    ) -> [std::arch::x86_64::__m128; 4] {
        use std::arch::x86_64::{_mm_movehl_ps, _mm_movelh_ps, _mm_unpackhi_ps, _mm_unpacklo_ps};
        let (ab_lo, ab_hi) = (_mm_unpacklo_ps(a, b), _mm_unpackhi_ps(a, b));
        let (cd_lo, cd_hi) = (_mm_unpacklo_ps(c, d), _mm_unpackhi_ps(c, d));
        [
            _mm_movelh_ps(ab_lo, cd_lo),
            _mm_movehl_ps(cd_lo, ab_lo),
            _mm_movelh_ps(ab_hi, cd_hi),
            _mm_movehl_ps(cd_hi, ab_hi),
        ]
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn to_columns(rows: &[Record; LANES], cols: &mut [[f32; LANES]; 12]) {
        for (j, row) in rows.iter().enumerate() {
            for (col, &x) in cols.iter_mut().zip(row) {
                col[j] = x;
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn to_rows(cols: &[[f32; LANES]; 12], rows: &mut [Record; LANES]) {
        for (j, row) in rows.iter_mut().enumerate() {
            for (x, col) in row.iter_mut().zip(cols) {
                *x = col[j];
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trip_is_a_transpose() {
            let rows: [Record; LANES] =
                std::array::from_fn(|j| std::array::from_fn(|e| (j * 100 + e) as f32));
            let mut cols = [[0.0f32; LANES]; 12];
            to_columns(&rows, &mut cols);
            assert!((0..LANES).all(|j| (0..12).all(|e| cols[e][j] == rows[j][e])));
            let mut back = [[0.0f32; 12]; LANES];
            to_rows(&cols, &mut back);
            assert_eq!(back, rows);
        }
    }
}
