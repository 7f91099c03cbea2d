//! The two AWQ searches on calibration activations, as AutoAWQ's `_search_best_scale` and
//! `_compute_best_clip` make them:
//!
//! - [`search_scale`]: per input channel `s = mean|x|^α / (mean|ŵ|^(1-α) + 1e-4)` (ŵ: |w| over
//!   its group's absmax), normalised by `sqrt(max·min)`, over a grid of α, keeping the `s` whose
//!   int4 weights `Q(W·s)/s` give the smallest output error `‖X Wᵀ − X Q(W·s)ᵀ/s‖²`, each
//!   layer's relative to its own error without scaling, averaged over the group's layers (after the per-head norm for q, k and v: see [`Mat::head`]). "No scaling" is candidate 0, so the chosen `s` never does worse than
//!   round-to-nearest on the calibration rows.
//! - [`search_clip`]: per (row, group) the bound `c = absmax·(1 − i/20)`, `i ∈ 0..10`, whose
//!   int4 group minimises `E[(Σ_g x·(q − w))²]` = `dᵀ C_g d` with `C_g = X_gᵀ X_g`, so each
//!   candidate costs one small GEMM per group instead of a pass over the tokens.
//!
//! Every GEMM is `verify::linear::gemm_f32` (single-threaded); rayon runs independent candidates
//! or groups, and the winner is chosen in candidate order, so results do not depend on the
//! number of threads.

use rayon::prelude::*;
use verify::linear::gemm_f32;
use verify::Weights;

use crate::awq::int4::{fake_quant_group, quantize};

/// Scale-grid points besides "no scaling" (AutoAWQ's `n_grid`): α = i / GRID for i in 0..GRID.
pub const GRID: usize = 20;
/// Contiguous parts of the calibration rows a scale must help on all of to win.
pub const FOLDS: usize = 2;
/// Clip candidates: shrink ratios `1 − i/20` for i in 0..CLIP_STEPS (AutoAWQ: 0.5 max shrink,
/// 10 steps).
pub const CLIP_STEPS: usize = 10;

/// Activations `[rows, cols]`, row-major.
#[derive(Clone, Copy, Debug)]
pub struct Acts<'a> {
    pub x: &'a [f32],
    pub rows: usize,
    pub cols: usize,
}

/// A weight `[rows, cols]`, row-major, `cols` equal to the activations' width.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    pub w: &'a [f32],
    pub rows: usize,
    /// When the layer's output is RMS-normalised per head (Gemma 4's q, k and v norms), errors
    /// are measured after that norm: each head's error is divided by the head's mean square
    /// output (+ the norm's epsilon), since the norm rescales it so.
    pub head: Option<HeadNorm>,
}

/// The per-head RMS norm a layer's output goes through.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadNorm {
    /// Rows of the weight (output features) per head.
    pub size: usize,
    /// The norm's epsilon (the model config's `rms_norm_eps`).
    pub eps: f64,
}

/// An owned row-major f32 matrix `[rows, cols]`: a weight read whole, or a batch of
/// calibration activations.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub values: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

impl Dense {
    /// Reads matrix `name` of `src` whole, widened to f32.
    pub fn read(src: &dyn Weights, name: &str) -> verify::Result<Dense> {
        let m = src.matrix(name)?;
        let (rows, cols) = (m.rows(), m.cols());
        let mut values = vec![0f32; rows * cols];
        m.rows_to_f32(0, rows, &mut values)?;
        Ok(Dense { values, rows, cols })
    }

    /// The matrix as activations.
    pub fn acts(&self) -> Acts<'_> {
        Acts {
            x: &self.values,
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// The matrix as a weight, its output normalised per head when `head` says so.
    pub fn mat(&self, head: Option<HeadNorm>) -> Mat<'_> {
        Mat {
            w: &self.values,
            rows: self.rows,
            head,
        }
    }
}

/// The chosen scale of a group and what it was chosen against.
#[derive(Clone, Debug)]
pub struct ScaleChoice {
    /// Per input channel; multiply the weights' columns, divide the previous op.
    pub s: Vec<f32>,
    /// The winning α, or `None` when no scaling won.
    pub alpha: Option<f32>,
    /// Output error of the winner relative to no scaling (mean over the group's layers, the
    /// worse calibration half; 1.0 when no scaling won), and the absolute error without scaling, on the calibration rows.
    pub loss: f64,
    pub loss_identity: f64,
}

/// Mean |x| per column, accumulated in f64.
pub fn abs_mean(a: Acts<'_>) -> Vec<f32> {
    let mut sum = vec![0f64; a.cols];
    for row in a.x.chunks_exact(a.cols) {
        for (s, &v) in sum.iter_mut().zip(row) {
            *s += v.abs() as f64;
        }
    }
    let n = a.rows.max(1) as f64;
    sum.into_iter().map(|s| (s / n) as f32).collect()
}

/// AutoAWQ's `w_mean`: |w| divided by its group's absmax (+1e-6), averaged per column over the
/// rows of every weight of the group.
pub fn weight_mean(ws: &[Mat<'_>], cols: usize, group: usize) -> Vec<f32> {
    let mut acc = WeightMean::new(cols, group);
    for m in ws {
        acc.add(m.w);
    }
    acc.finish()
}

/// [`weight_mean`] accumulated one weight at a time, so the weights need not all be in memory
/// (the MoE experts are widened, added and dropped one by one); the same sums in the same order.
pub struct WeightMean {
    sum: Vec<f64>,
    rows: usize,
    group: usize,
}

impl WeightMean {
    pub fn new(cols: usize, group: usize) -> WeightMean {
        WeightMean {
            sum: vec![0f64; cols],
            rows: 0,
            group,
        }
    }

    /// Adds the rows of a row-major weight `[_, cols]`.
    pub fn add(&mut self, w: &[f32]) {
        let (cols, group) = (self.sum.len(), self.group);
        for row in w.chunks_exact(cols) {
            for (g, chunk) in row.chunks(group).enumerate() {
                let amax = chunk.iter().fold(0f32, |a, v| a.max(v.abs())) + 1e-6;
                for (c, v) in chunk.iter().enumerate() {
                    self.sum[g * group + c] += (v.abs() / amax) as f64;
                }
            }
            self.rows += 1;
        }
    }

    pub fn finish(self) -> Vec<f32> {
        let n = self.rows.max(1) as f64;
        self.sum.into_iter().map(|s| (s / n) as f32).collect()
    }
}

/// `Σ (X Wᵀ − X Ŵᵀ)²` over all outputs, in f64 (the GEMM itself is f32).
pub fn output_error(a: Acts<'_>, w: &[f32], w_hat: &[f32], rows: usize) -> f64 {
    let k = a.cols;
    let d: Vec<f32> = w.iter().zip(w_hat).map(|(p, q)| p - q).collect();
    let mut e = vec![0f32; a.rows * rows];
    gemm_f32(a.rows, rows, k, a.x, (k, 1), &d, (1, k), &mut e, (rows, 1));
    e.iter().map(|&v| (v as f64) * (v as f64)).sum()
}

/// Per (token, head) weights `1 / (mean square of the head's reference output + eps)` for a
/// per-head normalised layer, `[rows_x, rows / head]`; `None` for a plain one.
fn head_weights(a: Acts<'_>, m: Mat<'_>) -> Option<Vec<f64>> {
    let HeadNorm { size: h, eps } = m.head?;
    let k = a.cols;
    let mut y = vec![0f32; a.rows * m.rows];
    gemm_f32(
        a.rows,
        m.rows,
        k,
        a.x,
        (k, 1),
        m.w,
        (1, k),
        &mut y,
        (m.rows, 1),
    );
    Some(
        y.chunks_exact(h)
            .map(|c| {
                let ms = c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / h as f64;
                1.0 / (ms + eps)
            })
            .collect(),
    )
}

/// The error of `w_hat` against `m` on `a`, head-normalised when `inv` is given.
fn weighted_error(a: Acts<'_>, m: Mat<'_>, w_hat: &[f32], inv: Option<&[f64]>) -> f64 {
    let Some(inv) = inv else {
        return output_error(a, m.w, w_hat, m.rows);
    };
    let h = m.head.map_or(m.rows, |n| n.size);
    let k = a.cols;
    let d: Vec<f32> = m.w.iter().zip(w_hat).map(|(p, q)| p - q).collect();
    let mut e = vec![0f32; a.rows * m.rows];
    gemm_f32(
        a.rows,
        m.rows,
        k,
        a.x,
        (k, 1),
        &d,
        (1, k),
        &mut e,
        (m.rows, 1),
    );
    e.chunks_exact(h)
        .zip(inv)
        .map(|(c, &f)| c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() * f)
        .sum()
}

/// The output error of `w_hat` in place of `m` on `a` as the model sees it: plain squared
/// error, or after the per-head norm for q/k/v (see [`Mat::head`]).
pub fn group_output_error(a: Acts<'_>, m: Mat<'_>, w_hat: &[f32]) -> f64 {
    let inv = head_weights(a, m);
    weighted_error(a, m, w_hat, inv.as_deref())
}

/// Int4 round trip of `W·s` divided back by `s`: what the layer computes after scaling, in the
/// original input space.
pub fn scaled_round_trip(w: &[f32], rows: usize, cols: usize, group: usize, s: &[f32]) -> Vec<f32> {
    let mut ws = w.to_vec();
    for row in ws.chunks_exact_mut(cols) {
        row.iter_mut().zip(s).for_each(|(v, &f)| *v *= f);
    }
    let mut d = quantize(&ws, rows, cols, group, None).dequantize();
    for row in d.chunks_exact_mut(cols) {
        row.iter_mut().zip(s).for_each(|(v, &f)| *v /= f);
    }
    d
}

/// The candidate scale for α (AutoAWQ duo scaling), normalised; non-finite entries become 1.
pub fn candidate_scale(x_mean: &[f32], w_mean: &[f32], alpha: f32) -> Vec<f32> {
    let mut s: Vec<f32> = x_mean
        .iter()
        .zip(w_mean)
        .map(|(&x, &w)| (x.powf(alpha) / (w.powf(1.0 - alpha) + 1e-4)).max(1e-4))
        .collect();
    let (lo, hi) = s
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let norm = (hi * lo).sqrt();
    for v in &mut s {
        *v /= norm;
        if !v.is_finite() || *v == 0.0 {
            *v = 1.0;
        }
    }
    s
}

/// Searches the group scale for weights `ws` that all read activations `a`.
pub fn search_scale(a: Acts<'_>, ws: &[Mat<'_>], group: usize) -> ScaleChoice {
    let items: Vec<(Acts<'_>, Mat<'_>)> = ws.iter().map(|&m| (a, m)).collect();
    search_scale_per_input(&abs_mean(a), &items, group)
}

/// Mean |x| per column over several activation blocks of the same width.
pub fn abs_mean_of(blocks: &[Acts<'_>], cols: usize) -> Vec<f32> {
    let mut sum = vec![0f64; cols];
    let mut n = 0usize;
    for a in blocks {
        for row in a.x.chunks_exact(cols) {
            for (s, &v) in sum.iter_mut().zip(row) {
                *s += v.abs() as f64;
            }
        }
        n += a.rows;
    }
    sum.into_iter()
        .map(|s| (s / n.max(1) as f64) as f32)
        .collect()
}

/// Searches one scale shared by weights that each read their own activations (the MoE
/// experts behind one norm: each expert sees only the tokens routed to it); `x_mean` is the
/// mean |x| over all of them. Items without rows are ignored.
pub fn search_scale_per_input(
    x_mean: &[f32],
    items: &[(Acts<'_>, Mat<'_>)],
    group: usize,
) -> ScaleChoice {
    let items: Vec<(Acts<'_>, Mat<'_>)> =
        items.iter().copied().filter(|(a, _)| a.rows > 0).collect();
    let mats: Vec<Mat<'_>> = items.iter().map(|&(_, m)| m).collect();
    let w_mean = weight_mean(&mats, x_mean.len(), group);
    let scales = candidates(x_mean, &w_mean);
    let errors: Vec<Vec<Vec<f64>>> = items
        .iter()
        .map(|&(a, m)| item_errors(a, m, group, &scales))
        .collect();
    choose(x_mean, &w_mean, &errors)
}

/// [`search_scale_per_input`] for weights read one at a time: item `i` reads activations
/// `acts[i]` and has the `rows`-row weight `read(i)` returns, read once for the weight mean and
/// once for the candidates' errors and dropped after each, so memory holds one weight whatever
/// the number of items. The same result, bit for bit, as with every weight in memory.
pub fn search_scale_streamed<E>(
    x_mean: &[f32],
    acts: &[Acts<'_>],
    rows: usize,
    group: usize,
    read: &mut dyn FnMut(usize) -> Result<Vec<f32>, E>,
) -> Result<ScaleChoice, E> {
    let live: Vec<usize> = (0..acts.len()).filter(|&i| acts[i].rows > 0).collect();
    let mut mean = WeightMean::new(x_mean.len(), group);
    for &i in &live {
        mean.add(&read(i)?);
    }
    let w_mean = mean.finish();
    let scales = candidates(x_mean, &w_mean);
    let mut errors = Vec::with_capacity(live.len());
    for &i in &live {
        let w = read(i)?;
        let m = Mat {
            w: &w,
            rows,
            head: None,
        };
        errors.push(item_errors(acts[i], m, group, &scales));
    }
    Ok(choose(x_mean, &w_mean, &errors))
}

/// Candidate 0 is "no scaling"; candidate i + 1 is α = i / GRID.
fn candidates(x_mean: &[f32], w_mean: &[f32]) -> Vec<Vec<f32>> {
    (0..=GRID)
        .map(|c| match c {
            0 => vec![1f32; x_mean.len()],
            _ => candidate_scale(x_mean, w_mean, (c - 1) as f32 / GRID as f32),
        })
        .collect()
}

/// One item's error under each candidate scale, per fold: `[candidate][fold]`. The item's rows
/// are cut into [`FOLDS`] contiguous parts (fewer when there are too few rows); candidates run
/// in parallel.
fn item_errors(a: Acts<'_>, m: Mat<'_>, group: usize, scales: &[Vec<f32>]) -> Vec<Vec<f64>> {
    let k = a.cols;
    let n = FOLDS.min(a.rows).max(1);
    let folds: Vec<Acts<'_>> = (0..n)
        .map(|f| (f * a.rows / n, (f + 1) * a.rows / n))
        .filter(|&(r0, r1)| r1 > r0)
        .map(|(r0, r1)| Acts {
            x: &a.x[r0 * k..r1 * k],
            rows: r1 - r0,
            cols: k,
        })
        .collect();
    let inv: Vec<Option<Vec<f64>>> = folds.iter().map(|&h| head_weights(h, m)).collect();
    scales
        .par_iter()
        .map(|s| {
            let rt = scaled_round_trip(m.w, m.rows, k, group, s);
            folds
                .iter()
                .zip(&inv)
                .map(|(&h, inv)| weighted_error(h, m, &rt, inv.as_deref()))
                .collect()
        })
        .collect()
}

/// The winning scale from `errors[item][candidate][fold]`.
///
/// Each item's error is taken relative to its own error without scaling, so a small layer
/// (k: one head, read by every q head and by the KV-shared layers) weighs as much as a large
/// one; a candidate's loss is the worst over the folds of the items' mean relative error, so
/// a scale must help on every part of the data to win (a guard against fitting noise, which
/// showed on held-out text as q-only groups that got worse).
fn choose(x_mean: &[f32], w_mean: &[f32], errors: &[Vec<Vec<f64>>]) -> ScaleChoice {
    let k = x_mean.len();
    let losses: Vec<f64> = (0..=GRID)
        .map(|c| {
            (0..FOLDS)
                .filter_map(|f| {
                    let rel: Vec<f64> = errors
                        .iter()
                        .filter_map(|per_c| {
                            let (e, b) = (*per_c[c].get(f)?, *per_c[0].get(f)?);
                            Some(if b > 0.0 { e / b } else { 1.0 })
                        })
                        .collect();
                    (!rel.is_empty()).then(|| rel.iter().sum::<f64>() / rel.len() as f64)
                })
                .fold(0f64, f64::max)
        })
        .collect();
    let mut best = 0;
    for (i, &l) in losses.iter().enumerate() {
        if l < losses[best] {
            best = i;
        }
    }
    let (s, alpha) = match best {
        0 => (vec![1f32; k], None),
        b => {
            let alpha = (b - 1) as f32 / GRID as f32;
            (candidate_scale(x_mean, w_mean, alpha), Some(alpha))
        }
    };
    ScaleChoice {
        s,
        alpha,
        loss: if errors.is_empty() { 1.0 } else { losses[best] },
        loss_identity: errors.iter().flat_map(|per_c| &per_c[0]).sum(),
    }
}

/// Searches one clip bound per (row, group) of `w` `[rows, cols]` for activations `a`; returns
/// `[rows, ceil(cols / group)]` bounds (the group absmax where clipping does not help). A
/// `group` that does not divide `cols` leaves a shorter last group, searched the same way.
pub fn search_clip(a: Acts<'_>, w: &[f32], rows: usize, group: usize) -> Vec<f32> {
    let k = a.cols;
    let ng = k.div_ceil(group);
    let per_group: Vec<Vec<f32>> = (0..ng)
        .into_par_iter()
        .map(|j| {
            let c0 = j * group;
            let gw = group.min(k - c0);
            // C_j = X_jᵀ X_j, [gw, gw].
            let mut cov = vec![0f32; gw * gw];
            let xj = &a.x[c0..];
            gemm_f32(gw, gw, a.rows, xj, (1, k), xj, (k, 1), &mut cov, (gw, 1));
            let absmax: Vec<f32> = (0..rows)
                .map(|r| {
                    w[r * k + c0..r * k + c0 + gw]
                        .iter()
                        .fold(0f32, |m, v| m.max(v.abs()))
                })
                .collect();
            let mut best_err = vec![f64::INFINITY; rows];
            let mut best = absmax.clone();
            let mut d = vec![0f32; rows * gw];
            let mut e = vec![0f32; rows * gw];
            let mut fq = vec![0f32; gw];
            for step in 0..CLIP_STEPS {
                let ratio = 1.0 - step as f32 / 20.0;
                for r in 0..rows {
                    let wr = &w[r * k + c0..r * k + c0 + gw];
                    fake_quant_group(wr, absmax[r] * ratio, &mut fq);
                    for c in 0..gw {
                        d[r * gw + c] = fq[c] - wr[c];
                    }
                }
                gemm_f32(rows, gw, gw, &d, (gw, 1), &cov, (gw, 1), &mut e, (gw, 1));
                for r in 0..rows {
                    let err: f64 = (0..gw)
                        .map(|c| e[r * gw + c] as f64 * d[r * gw + c] as f64)
                        .sum();
                    if err < best_err[r] {
                        best_err[r] = err;
                        best[r] = absmax[r] * ratio;
                    }
                }
            }
            best
        })
        .collect();
    let mut out = vec![0f32; rows * ng];
    for (j, col) in per_group.iter().enumerate() {
        for r in 0..rows {
            out[r * ng + j] = col[r];
        }
    }
    out
}
