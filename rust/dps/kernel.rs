//! The dense half of a DPS step: every prompt updated as if unobserved (posterior <- prior,
//! counts decay), written as a branch-free loop over columns so that it vectorises; on x86-64
//! CPUs with AVX-512 or AVX2 the same loop is also compiled for those and chosen at run time. No fused
//! multiply-add is used, so every build computes bit-identical results.

use super::columns::ColumnsMut;
use super::{entropy, predict, widen3, widen9};

/// Prompts per task handed to a thread.
const CHUNK: usize = 1 << 15;

pub struct Dense {
    pub lam: f64,
    /// (1 - lam) * alpha0.
    pub offset: [f64; 9],
    /// Before the first step every prior is pi0 itself.
    pub fresh: Option<[f64; 3]>,
    pub entropy_weight: f64,
}

pub fn update_all(cols: ColumnsMut<'_>, k: &Dense) {
    cols.for_each_chunk(CHUNK, &|c| run(c, k));
}

fn run(c: ColumnsMut<'_>, k: &Dense) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            unsafe { run_avx512(c, k) };
            return;
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { run_avx2(c, k) };
            return;
        }
    }
    body(c, k)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512(c: ColumnsMut<'_>, k: &Dense) {
    body(c, k)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2(c: ColumnsMut<'_>, k: &Dense) {
    body(c, k)
}

#[inline(always)]
fn body(c: ColumnsMut<'_>, k: &Dense) {
    match (k.fresh, k.entropy_weight != 0.0) {
        (Some(init), false) => lanes::<true, false>(c, k, init),
        (Some(init), true) => lanes::<true, true>(c, k, init),
        (None, false) => lanes::<false, false>(c, k, [0.0; 3]),
        (None, true) => lanes::<false, true>(c, k, [0.0; 3]),
    }
}

#[inline(always)]
fn lanes<const FRESH: bool, const ENTROPY: bool>(c: ColumnsMut<'_>, k: &Dense, init: [f64; 3]) {
    let n = c.len();
    let ColumnsMut { alpha, post, score } = c;
    let [a0, a1, a2, a3, a4, a5, a6, a7, a8] = alpha;
    let (a0, a1, a2, a3, a4) = (
        &mut a0[..n],
        &mut a1[..n],
        &mut a2[..n],
        &mut a3[..n],
        &mut a4[..n],
    );
    let (a5, a6, a7, a8) = (&mut a5[..n], &mut a6[..n], &mut a7[..n], &mut a8[..n]);
    let [p0, p1, p2] = post;
    let (p0, p1, p2) = (&mut p0[..n], &mut p1[..n], &mut p2[..n]);
    let score = &mut score[..n];
    for i in 0..n {
        let a = [
            a0[i], a1[i], a2[i], a3[i], a4[i], a5[i], a6[i], a7[i], a8[i],
        ];
        let q = if FRESH {
            init
        } else {
            predict(&widen9(&a), &widen3(&[p0[i], p1[i], p2[i]]))
        };
        let a_new: [f32; 9] = std::array::from_fn(|j| (k.lam * a[j] as f64 + k.offset[j]) as f32);
        let q_new = q.map(|x| x as f32);
        a0[i] = a_new[0];
        a1[i] = a_new[1];
        a2[i] = a_new[2];
        a3[i] = a_new[3];
        a4[i] = a_new[4];
        a5[i] = a_new[5];
        a6[i] = a_new[6];
        a7[i] = a_new[7];
        a8[i] = a_new[8];
        p0[i] = q_new[0];
        p1[i] = q_new[1];
        p2[i] = q_new[2];
        // The score comes from the stored (rounded) values, as a reload would compute it.
        let prior = predict(&widen9(&a_new), &widen3(&q_new));
        score[i] = if ENTROPY {
            (prior[1] + k.entropy_weight * entropy(&prior)) as f32
        } else {
            prior[1] as f32
        };
    }
}
