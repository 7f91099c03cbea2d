//! Scaled-dot-product attention of one layer: scale 1.0, causal mask, optional
//! sliding window, GQA by `repeat_interleave` (query head `j` reads KV head `j / (Hq / Hkv)`).
//!
//! Heads run in parallel; each head's two GEMMs and its softmax are single-threaded, so the
//! result does not depend on the thread count.

use rayon::prelude::*;

use crate::linear::gemm_f32;

/// Geometry of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    /// Sequence length.
    pub t: usize,
    /// Query heads.
    pub hq: usize,
    /// KV heads.
    pub hkv: usize,
    /// Head dim.
    pub hd: usize,
    /// `Some(w)`: key `j` is visible from query `i` only when `i - j < w`.
    pub window: Option<usize>,
}

/// `q` `[T, Hq*hd]`, `k`/`v` `[T, Hkv*hd]` → output `[T, Hq*hd]`.
pub fn attend(q: &[f32], k: &[f32], v: &[f32], s: AttnShape) -> Vec<f32> {
    let AttnShape {
        t,
        hq,
        hkv,
        hd,
        window,
    } = s;
    let group = hq / hkv;
    let (qs, ks) = (hq * hd, hkv * hd);
    let heads: Vec<Vec<f32>> = (0..hq)
        .into_par_iter()
        .map(|h| {
            let g = h / group;
            let mut scores = vec![0f32; t * t];
            // scores[i, j] = q_h[i] . k_g[j]
            gemm_f32(
                t,
                t,
                hd,
                &q[h * hd..],
                (qs, 1),
                &k[g * hd..],
                (1, ks),
                &mut scores,
                (t, 1),
            );
            for (i, row) in scores.chunks_mut(t).enumerate() {
                let lo = window.map_or(0, |w| (i + 1).saturating_sub(w));
                softmax_range(row, lo, i + 1);
            }
            let mut out = vec![0f32; t * hd];
            gemm_f32(
                t,
                hd,
                t,
                &scores,
                (t, 1),
                &v[g * hd..],
                (ks, 1),
                &mut out,
                (hd, 1),
            );
            out
        })
        .collect();
    let mut o = vec![0f32; t * qs];
    for (h, head) in heads.iter().enumerate() {
        for i in 0..t {
            o[i * qs + h * hd..i * qs + (h + 1) * hd].copy_from_slice(&head[i * hd..(i + 1) * hd]);
        }
    }
    o
}

/// Softmax over `row[lo..hi]` in f32 (sum in f64); every other entry becomes exactly 0, which is
/// what adding a `finfo.min` mask and exponentiating gives.
fn softmax_range(row: &mut [f32], lo: usize, hi: usize) {
    let max = row[lo..hi]
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for v in &mut row[lo..hi] {
        *v = ((*v - max) as f64).exp() as f32;
        sum += *v as f64;
    }
    let sum = sum as f32;
    for v in &mut row[lo..hi] {
        *v /= sum;
    }
    row[..lo].iter_mut().for_each(|v| *v = 0.0);
    row[hi..].iter_mut().for_each(|v| *v = 0.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward f64 attention for comparison.
    fn naive(q: &[f32], k: &[f32], v: &[f32], s: AttnShape) -> Vec<f64> {
        let (qs, ks) = (s.hq * s.hd, s.hkv * s.hd);
        let mut o = vec![0f64; s.t * qs];
        for h in 0..s.hq {
            let g = h / (s.hq / s.hkv);
            for i in 0..s.t {
                let vis: Vec<usize> = (0..=i)
                    .filter(|&j| s.window.is_none_or(|w| i - j < w))
                    .collect();
                let sc: Vec<f64> = vis
                    .iter()
                    .map(|&j| {
                        (0..s.hd)
                            .map(|d| {
                                q[i * qs + h * s.hd + d] as f64 * k[j * ks + g * s.hd + d] as f64
                            })
                            .sum()
                    })
                    .collect();
                let m = sc.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (p, &j) in e.iter().zip(&vis) {
                    for d in 0..s.hd {
                        o[i * qs + h * s.hd + d] += p / z * v[j * ks + g * s.hd + d] as f64;
                    }
                }
            }
        }
        o
    }

    #[test]
    fn matches_naive_with_gqa_and_window() {
        let s = AttnShape {
            t: 11,
            hq: 4,
            hkv: 2,
            hd: 6,
            window: Some(3),
        };
        let gen = |n: usize, m: f32| -> Vec<f32> { (0..n).map(|i| (i as f32 * m).sin()).collect() };
        let q = gen(s.t * s.hq * s.hd, 0.37);
        let k = gen(s.t * s.hkv * s.hd, 0.71);
        let v = gen(s.t * s.hkv * s.hd, 1.13);
        for window in [None, Some(3)] {
            let s = AttnShape { window, ..s };
            let o = attend(&q, &k, &v, s);
            let r = naive(&q, &k, &v, s);
            for (a, b) in o.iter().zip(&r) {
                assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }
}
