//! numpy's pairwise summation of a contiguous row, so that the log world's sums are the ones the
//! numpy implementation computed, bit for bit.

/// numpy's pairwise summation: blocks of up to 128 summed in eight interleaved lanes.
pub fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        return a.iter().fold(0.0, |s, &x| s + x);
    }
    if n > 128 {
        let half = n / 2;
        let half = half - half % 8;
        return pairwise_sum(&a[..half]) + pairwise_sum(&a[half..]);
    }
    let mut r = [0.0f64; 8];
    r.copy_from_slice(&a[..8]);
    let whole = n - n % 8;
    for chunk in a[8..whole].chunks_exact(8) {
        for (x, &y) in r.iter_mut().zip(chunk) {
            *x += y;
        }
    }
    let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for &x in &a[whole..] {
        res += x;
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_is_numpys_order() {
        let a: Vec<f64> = (0..32).map(|i| 1.0 / (i as f64 + 1.0)).collect();
        let mut r = [0.0; 8];
        for (i, x) in a.iter().enumerate() {
            r[i % 8] += x;
        }
        let want = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        assert_eq!(pairwise_sum(&a), want);
        assert_eq!(pairwise_sum(&a[..5]), a[..5].iter().sum::<f64>());
    }
}
