//! Scaled-dot-product attention of one layer: scale 1.0, causal mask, optional
//! sliding window, GQA by `repeat_interleave` (query head `j` reads KV head `j / (Hq / Hkv)`).
//!
//! Work is cut into (head, block of [`QUERY_BLOCK`] query rows) tasks run in parallel: heads ×
//! ⌈T / 64⌉ tasks, e.g. 16 for 8 heads at T = 128 and 512 at T = 4096, so a large pool has work
//! without a task per token. Each task's two GEMMs and its softmax rows are single-threaded, and
//! a GEMM output element is one sum over the shared dimension whatever rows are around it (see
//! [`crate::linear`]), so the result depends neither on the cut nor on the thread count.

use rayon::prelude::*;

use crate::linear::gemm_f32;

/// Query rows per attention task.
pub const QUERY_BLOCK: usize = 64;

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
    let blocks = t.div_ceil(QUERY_BLOCK);
    // Task `h * blocks + b`: head h, query rows b*QUERY_BLOCK.., as [rows, hd].
    let parts: Vec<Vec<f32>> = (0..hq * blocks)
        .into_par_iter()
        .map(|task| {
            let (h, i0) = (task / blocks, (task % blocks) * QUERY_BLOCK);
            let rows = (t - i0).min(QUERY_BLOCK);
            let g = h / group;
            let mut scores = vec![0f32; rows * t];
            // scores[i, j] = q_h[i0 + i] . k_g[j]
            gemm_f32(
                rows,
                t,
                hd,
                &q[i0 * qs + h * hd..],
                (qs, 1),
                &k[g * hd..],
                (1, ks),
                &mut scores,
                (t, 1),
            );
            for (r, row) in scores.chunks_mut(t).enumerate() {
                let i = i0 + r;
                let lo = window.map_or(0, |w| (i + 1).saturating_sub(w));
                softmax_range(row, lo, i + 1);
            }
            let mut out = vec![0f32; rows * hd];
            gemm_f32(
                rows,
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
    if qs == 0 {
        return o;
    }
    o.par_chunks_mut(qs)
        .enumerate()
        .with_min_len(crate::ops::MIN_ROWS)
        .for_each(|(i, row)| {
            let (b, r) = (i / QUERY_BLOCK, i % QUERY_BLOCK);
            for (h, dst) in row.chunks_mut(hd).enumerate() {
                dst.copy_from_slice(&parts[h * blocks + b][r * hd..(r + 1) * hd]);
            }
        });
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
        for t in [11, QUERY_BLOCK + 13] {
            check_against_naive(t);
        }
    }

    /// The whole sequence of each head in one pair of GEMMs: what every cut must equal bit for
    /// bit.
    fn uncut(q: &[f32], k: &[f32], v: &[f32], s: AttnShape) -> Vec<f32> {
        let (qs, ks) = (s.hq * s.hd, s.hkv * s.hd);
        let (t, hd) = (s.t, s.hd);
        let mut o = vec![0f32; t * qs];
        for h in 0..s.hq {
            let g = h / (s.hq / s.hkv);
            let mut sc = vec![0f32; t * t];
            gemm_f32(
                t,
                t,
                hd,
                &q[h * hd..],
                (qs, 1),
                &k[g * hd..],
                (1, ks),
                &mut sc,
                (t, 1),
            );
            for (i, row) in sc.chunks_mut(t).enumerate() {
                let lo = s.window.map_or(0, |w| (i + 1).saturating_sub(w));
                softmax_range(row, lo, i + 1);
            }
            gemm_f32(
                t,
                hd,
                t,
                &sc,
                (t, 1),
                &v[g * hd..],
                (ks, 1),
                &mut o[h * hd..],
                (qs, 1),
            );
        }
        o
    }

    #[test]
    fn query_blocks_and_threads_do_not_change_bits() {
        let s = AttnShape {
            t: 2 * QUERY_BLOCK + 7,
            hq: 4,
            hkv: 1,
            hd: 40,
            window: Some(50),
        };
        let gen = |n: usize, m: f32| -> Vec<f32> { (0..n).map(|i| (i as f32 * m).sin()).collect() };
        let q = gen(s.t * s.hq * s.hd, 0.37);
        let k = gen(s.t * s.hkv * s.hd, 0.71);
        let v = gen(s.t * s.hkv * s.hd, 1.13);
        let mut checked = 0;
        for window in [None, s.window] {
            let s = AttnShape { window, ..s };
            let want = uncut(&q, &k, &v, s);
            for threads in [1, 3] {
                let got = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| attend(&q, &k, &v, s));
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "window {window:?}, {threads} threads"
                );
                checked += 1;
            }
        }
        println!("attention: {checked} cut/thread cases bit-identical");
    }

    fn check_against_naive(t: usize) {
        let s = AttnShape {
            t,
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
