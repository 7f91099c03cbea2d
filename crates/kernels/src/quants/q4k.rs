//! Q4_K: 4-bit asymmetric quants in 8 sub-blocks of 32 with 6-bit scales and mins
//! (`quantize_row_q4_K_ref`, `quantize_row_q4_K_impl`, `dequantize_row_q4_K` in ggml-quants.c).

// Index loops mirror ggml's C loops one for one, so the port can be checked line by line.
#![allow(clippy::needless_range_loop)]

use super::kquants::{
    check_dequant, for_each_super_block, get_scale_min_k4, pack_nibbles, pack_scale_min_k4, Super,
};
use super::lanes::{qp_candidates, quantize_fast, FastBlock, Lanes, Weights};
use super::search::{make_qkx2_quants, make_qkx3_quants, make_qp_quants};
use crate::blocks::{BlockQ4K, QK_K};
use crate::fp::{f16_to_f32, f32_to_f16, nearest_int};

/// Quantizes `x` (`y.len()` super-blocks of 256) to Q4_K exactly as ggml's `quantize_q4_K`:
/// `quantize_row_q4_K_ref` without an importance matrix, `quantize_row_q4_K_impl` with one (one
/// weight per column; `x` may hold several rows of `imatrix.len()` values).
///
/// # Panics
/// On inconsistent lengths (see [`super::kquants`]).
pub fn quantize_row_q4_k(x: &[f32], y: &mut [BlockQ4K], imatrix: Option<&[f32]>) {
    for_each_super_block("q4_K", x, y, imatrix, |xb, yb, qw| {
        let mut l = [0u8; QK_K];
        match qw {
            None => {
                let (ls, lm, d, dmin) = search_ref(xb, 15, -1.0, 0.1, 20, &mut l);
                pack_scale_min_k4(&ls, &lm, &mut yb.scales);
                yb.d = d;
                yb.dmin = dmin;
            }
            Some(qw) => {
                let (ls, lm, d, dmin) = search_impl(xb, qw, 15, false, &mut l);
                pack_scale_min_k4(&ls, &lm, &mut yb.scales);
                yb.d = d;
                yb.dmin = dmin;
            }
        }
        requantize(
            xb,
            &yb.scales,
            f16_to_f32(yb.d),
            f16_to_f32(yb.dmin),
            15,
            &mut l,
        );
        pack_nibbles(&l, &mut yb.qs);
    });
}

/// The reference search shared by Q4_K and Q5_K (`nmax` 15 or 31 and their search grids):
/// per sub-block weights `av_x + |x|`, `make_qkx2_quants`, then the 6-bit quantization of the
/// eight scales and mins against their maxima. Returns (scales, mins, fp16 d, fp16 dmin) and
/// leaves the search's levels in `l`.
#[inline(always)]
pub(crate) fn search_ref(
    x: &Super,
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    l: &mut [u8; QK_K],
) -> ([u8; 8], [u8; 8], u16, u16) {
    let mut laux = [0u8; 32];
    let mut weights = [0f32; 32];
    let mut mins = [0f32; QK_K / 32];
    let mut scales = [0f32; QK_K / 32];
    for j in 0..QK_K / 32 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        scales[j] = make_qkx2_quants(
            32,
            nmax,
            xs,
            &weights,
            &mut l[32 * j..32 * j + 32],
            &mut mins[j],
            &mut laux,
            rmin,
            rdelta,
            nstep,
            false,
        );
    }
    quantize_scales_ref(&scales, &mins)
}

/// The reference quantization of eight sub-block scales and mins to 6 bits against their
/// maxima; returns (scales, mins, fp16 d, fp16 dmin).
#[inline(always)]
fn quantize_scales_ref(scales: &[f32; 8], mins: &[f32; 8]) -> ([u8; 8], [u8; 8], u16, u16) {
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..QK_K / 32 {
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..QK_K / 32 {
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    (
        ls,
        lm,
        f32_to_f16(max_scale / 63.0),
        f32_to_f16(max_min / 63.0),
    )
}

/// The importance-weighted search shared by Q4_K and Q5_K: weights `qw*sqrt(sigma2 + x²)` with
/// `sigma2 = 2*Σx²/256`, `make_qkx3_quants(…, -0.9, 0.05, 36)` per sub-block, then
/// `make_qp_quants` for the scales and mins (`cap_63`: Q5_K's extra clamp). Returns (scales, mins, fp16 d, fp16 dmin).
#[inline(always)]
pub(crate) fn search_impl(
    x: &Super,
    qw: &Super,
    nmax: i32,
    cap_63: bool,
    l: &mut [u8; QK_K],
) -> ([u8; 8], [u8; 8], u16, u16) {
    let mut laux = [0u8; 32];
    let mut weights = [0f32; 32];
    let mut sw = [0f32; QK_K / 32];
    let mut mins = [0f32; QK_K / 32];
    let mut scales = [0f32; QK_K / 32];
    let mut sum_x2 = 0.0f32;
    for &v in x.iter() {
        sum_x2 += v * v;
    }
    let sigma2 = 2.0 * sum_x2 / QK_K as f32;
    for j in 0..QK_K / 32 {
        let xs = &x[32 * j..32 * j + 32];
        for i in 0..32 {
            weights[i] = qw[32 * j + i] * (sigma2 + xs[i] * xs[i]).sqrt();
        }
        let mut sumw = 0.0f32;
        for &w in &weights {
            sumw += w;
        }
        sw[j] = sumw;
        scales[j] = make_qkx3_quants(
            32,
            nmax,
            xs,
            Some(&weights),
            &mut l[32 * j..32 * j + 32],
            &mut mins[j],
            &mut laux,
            -0.9,
            0.05,
            36,
            false,
        );
    }
    quantize_scales_impl(&scales, &mins, &sw, cap_63, false)
}

/// The importance-weighted quantization of the eight scales and mins (`make_qp_quants` with the
/// sub-block weight sums; with `candidates_in_lanes` the same search with its candidates side
/// by side); returns (scales, mins, fp16 d, fp16 dmin).
#[inline(always)]
fn quantize_scales_impl(
    scales: &[f32; 8],
    mins: &[f32; 8],
    sw: &[f32; 8],
    cap_63: bool,
    candidates_in_lanes: bool,
) -> ([u8; 8], [u8; 8], u16, u16) {
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    let (d_block, m_block) = if candidates_in_lanes {
        (
            qp_candidates(63, scales, &mut ls, sw),
            qp_candidates(63, mins, &mut lm, sw),
        )
    } else {
        (
            make_qp_quants(QK_K / 32, 63, scales, &mut ls, sw),
            make_qp_quants(QK_K / 32, 63, mins, &mut lm, sw),
        )
    };
    if cap_63 {
        // Q5_K's impl applies MIN(63, ·) to the u8 levels, Q4_K's does not; they differ only
        // if make_qp_quants wrapped a negative level into the u8 range.
        for j in 0..QK_K / 32 {
            ls[j] = ls[j].min(63);
            lm[j] = lm[j].min(63);
        }
    }
    (ls, lm, f32_to_f16(d_block), f32_to_f16(m_block))
}

/// The same bytes as [`quantize_row_q4_k`], several times faster: the eight sub-block searches of a
/// super-block (of two, where that fills the vectors better) run side by side in SIMD lanes,
/// with AVX-512 or AVX2 when the CPU has them, each lane repeating the scalar search exactly.
///
/// # Panics
/// On inconsistent lengths (see [`super::kquants`]).
pub fn quantize_row_q4_k_fast(x: &[f32], y: &mut [BlockQ4K], imatrix: Option<&[f32]>) {
    quantize_fast::<Q4KFast>(x, y, imatrix);
}

/// The fast super-block quantizer behind [`quantize_row_q4_k_fast`].
pub(crate) struct Q4KFast;

impl FastBlock for Q4KFast {
    type Block = BlockQ4K;
    const NAME: &'static str = "q4_K";

    #[inline(always)]
    fn quantize<L: Lanes>(lanes: L, xb: &Super, yb: &mut BlockQ4K, qw: Option<Weights<'_, 1>>) {
        let mut l = [[0u8; QK_K]];
        let [found] = search_fast::<L, 8, 1>(lanes, [xb], qw, Q4K_PARAMS, &mut l);
        finish_q4(xb, yb, found, &mut l[0]);
    }

    #[inline(always)]
    fn quantize_pair<L: Lanes>(
        lanes: L,
        x: [&Super; 2],
        y: [&mut BlockQ4K; 2],
        qw: Option<Weights<'_, 2>>,
    ) {
        let mut l = [[0u8; QK_K]; 2];
        let found = search_fast::<L, 16, 2>(lanes, x, qw, Q4K_PARAMS, &mut l);
        let [y0, y1] = y;
        let [l0, l1] = &mut l;
        finish_q4(x[0], y0, found[0], l0);
        finish_q4(x[1], y1, found[1], l1);
    }
}

/// Packs the scales found for one block, re-rounds its levels against them and packs those.
#[inline(always)]
fn finish_q4(
    x: &Super,
    y: &mut BlockQ4K,
    (ls, lm, d, dmin): ([u8; 8], [u8; 8], u16, u16),
    l: &mut [u8; QK_K],
) {
    pack_scale_min_k4(&ls, &lm, &mut y.scales);
    y.d = d;
    y.dmin = dmin;
    requantize(x, &y.scales, f16_to_f32(y.d), f16_to_f32(y.dmin), 15, l);
    pack_nibbles(l, &mut y.qs);
}

/// What distinguishes Q4_K's searches from Q5_K's.
#[derive(Clone, Copy)]
pub(crate) struct Params {
    /// Largest level (15 or 31).
    pub nmax: i32,
    /// The reference path's `make_qkx2_quants` grid: `rmin`, `rdelta`, `nstep`.
    pub grid: (f32, f32, i32),
    /// Q5_K's impl clamps the 6-bit levels to 63, Q4_K's does not.
    pub cap_63: bool,
}

/// Q4_K's parameters.
pub(crate) const Q4K_PARAMS: Params = Params {
    nmax: 15,
    grid: (-1.0, 0.1, 20),
    cap_63: false,
};

/// [`search_ref`] (no importance matrix) or [`search_impl`] for `B` super-blocks at once, their
/// `N = 8*B` sub-block searches side by side in SIMD lanes (lane `8b + j` is sub-block `j` of
/// block `b`). Returns each block's (scales, mins, fp16 d, fp16 dmin) and leaves its levels
/// in `l[b]`.
#[inline(always)]
pub(crate) fn search_fast<L: Lanes, const N: usize, const B: usize>(
    lanes: L,
    x: [&Super; B],
    qw: Option<Weights<'_, B>>,
    p: Params,
    l: &mut [[u8; QK_K]; B],
) -> [([u8; 8], [u8; 8], u16, u16); B] {
    debug_assert_eq!(N, 8 * B);
    let mut xt = [[0f32; N]; 32];
    for b in 0..B {
        for j in 0..8 {
            for i in 0..32 {
                xt[i][8 * b + j] = x[b][32 * j + i];
            }
        }
    }
    let mut wt = [[0f32; N]; 32];
    let (mut scales, mut mins, mut lt) = ([0f32; N], [0f32; N], [[0u8; N]; 32]);
    let mut sw = [0f32; N];
    match qw {
        None => {
            let mut sum_x2 = [0f32; N];
            for i in 0..32 {
                for j in 0..N {
                    sum_x2[j] += xt[i][j] * xt[i][j];
                }
            }
            let mut av_x = [0f32; N];
            for j in 0..N {
                av_x[j] = (sum_x2[j] / 32.0).sqrt();
            }
            for i in 0..32 {
                for j in 0..N {
                    wt[i][j] = av_x[j] + xt[i][j].abs();
                }
            }
            let (rmin, rdelta, nstep) = p.grid;
            lanes.qkx(
                &xt,
                &wt,
                p.nmax,
                rmin,
                rdelta,
                nstep,
                false,
                true,
                &mut scales,
                &mut mins,
                &mut lt,
            );
        }
        Some(Weights { qw, sumx2: sum_x2 }) => {
            let mut sigma2 = [0f32; N];
            for b in 0..B {
                for j in 0..8 {
                    sigma2[8 * b + j] = 2.0 * sum_x2[b] / QK_K as f32;
                }
            }
            for b in 0..B {
                for j in 0..8 {
                    for i in 0..32 {
                        let (xv, q) = (xt[i][8 * b + j], qw[b][32 * j + i]);
                        wt[i][8 * b + j] = q * (sigma2[8 * b + j] + xv * xv).sqrt();
                    }
                }
            }
            for i in 0..32 {
                for j in 0..N {
                    sw[j] += wt[i][j];
                }
            }
            lanes.qkx(
                &xt,
                &wt,
                p.nmax,
                -0.9,
                0.05,
                36,
                false,
                false,
                &mut scales,
                &mut mins,
                &mut lt,
            );
        }
    }
    std::array::from_fn(|b| {
        for j in 0..8 {
            for i in 0..32 {
                l[b][32 * j + i] = lt[i][8 * b + j];
            }
        }
        let part = |v: &[f32; N]| -> [f32; 8] { std::array::from_fn(|j| v[8 * b + j]) };
        match qw {
            None => quantize_scales_ref(&part(&scales), &part(&mins)),
            Some(_) => {
                quantize_scales_impl(&part(&scales), &part(&mins), &part(&sw), p.cap_63, true)
            }
        }
    })
}

/// Re-rounds each sub-block against its stored 6-bit scale/min and fp16 d/dmin, clamping to
/// `[0, nmax]`; sub-blocks whose scale is 0 keep the search's levels.
#[inline(always)]
pub(crate) fn requantize(
    x: &Super,
    scales: &[u8; 12],
    dd: f32,
    dmin: f32,
    nmax: i32,
    l: &mut [u8; QK_K],
) {
    for j in 0..QK_K / 32 {
        let (sc, m) = get_scale_min_k4(j, scales);
        let d = dd * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / d).clamp(0, nmax) as u8;
        }
    }
}

/// ggml's `dequantize_row_q4_K`: `y = d*sc*q - dmin*m` per sub-block of 32.
///
/// # Panics
/// When `y.len() != x.len() * 256`.
pub fn dequantize_row_q4_k(x: &[BlockQ4K], y: &mut [f32]) {
    check_dequant("q4_K", x.len(), y);
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_to_f32(b.d);
        let min = f16_to_f32(b.dmin);
        for c in 0..4 {
            let q = &b.qs[32 * c..32 * c + 32];
            let (sc, m) = get_scale_min_k4(2 * c, &b.scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (sc, m) = get_scale_min_k4(2 * c + 1, &b.scales);
            let (d2, m2) = (d * sc as f32, min * m as f32);
            let o = &mut out[64 * c..64 * c + 64];
            for i in 0..32 {
                o[i] = d1 * (q[i] & 0xF) as f32 - m1;
                o[32 + i] = d2 * (q[i] >> 4) as f32 - m2;
            }
        }
    }
}
