//! Q2_K: 2-bit asymmetric quants in 16 sub-blocks of 16, with 4-bit sub-block scales and mins
//! (`quantize_row_q2_K_ref`, `quantize_row_q2_K_impl`, `dequantize_row_q2_K` in ggml-quants.c).

// Index loops mirror ggml's C loops one for one, so the port can be checked line by line.
#![allow(clippy::needless_range_loop)]

use super::kquants::{check_dequant, for_each_super_block, pack_2bit, Super};
use super::lanes::{
    block_lanes16, block_levels, qp_candidates, quantize_fast, FastBlock, Lanes, Weights,
};
use super::search::{make_qkx2_quants, make_qkx3_quants, make_qp_quants};
use crate::blocks::{BlockQ2K, QK_K};
use crate::fp::{f16_to_f32, f32_to_f16, nearest_int};

/// Quantizes `x` (`y.len()` super-blocks of 256) to Q2_K exactly as ggml's `quantize_q2_K`:
/// without an importance matrix through `quantize_row_q2_K_ref`, with one (one weight per
/// column; `x` may hold several rows of `imatrix.len()` values) through `quantize_row_q2_K_impl`.
///
/// # Panics
/// On inconsistent lengths (see [`super::kquants`]).
pub fn quantize_row_q2_k(x: &[f32], y: &mut [BlockQ2K], imatrix: Option<&[f32]>) {
    for_each_super_block("q2_K", x, y, imatrix, |xb, yb, qw| match qw {
        None => quantize_block_ref(xb, yb),
        Some(qw) => quantize_block_impl(xb, yb, qw),
    });
}

fn quantize_block_ref(x: &Super, y: &mut BlockQ2K) {
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 16];
    let mut weights = [0f32; 16];
    let mut mins = [0f32; QK_K / 16];
    let mut scales = [0f32; QK_K / 16];
    for j in 0..QK_K / 16 {
        let xs = &x[16 * j..16 * j + 16];
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = v.abs();
        }
        scales[j] = make_qkx2_quants(
            16,
            3,
            xs,
            &weights,
            &mut l[16 * j..16 * j + 16],
            &mut mins[j],
            &mut laux,
            -0.5,
            0.1,
            15,
            true,
        );
    }
    finish_ref(x, y, &scales, &mins, &mut l);
}

/// The reference path after the sub-block searches: 4-bit scales and mins against their maxima,
/// fp16 d/dmin, re-rounding and packing.
#[inline(always)]
fn finish_ref(
    x: &Super,
    y: &mut BlockQ2K,
    scales: &[f32; 16],
    mins: &[f32; 16],
    l: &mut [u8; QK_K],
) {
    let q4scale = 15.0f32;
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..QK_K / 16 {
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }

    if max_scale > 0.0 {
        let iscale = q4scale / max_scale;
        for j in 0..QK_K / 16 {
            y.scales[j] = nearest_int(iscale * scales[j]) as u8;
        }
        y.d = f32_to_f16(max_scale / q4scale);
    } else {
        y.scales = [0; QK_K / 16];
        y.d = f32_to_f16(0.0);
    }
    if max_min > 0.0 {
        let iscale = q4scale / max_min;
        for j in 0..QK_K / 16 {
            y.scales[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
        }
        y.dmin = f32_to_f16(max_min / q4scale);
    } else {
        y.dmin = f32_to_f16(0.0);
    }
    requantize(x, y, f16_to_f32(y.d), f16_to_f32(y.dmin), l);
    pack_2bit(l, &mut y.qs);
}

fn quantize_block_impl(x: &Super, y: &mut BlockQ2K, qw: &Super) {
    let mut l = [0u8; QK_K];
    let mut laux = [0u8; 16];
    let mut mins = [0f32; QK_K / 16];
    let mut scales = [0f32; QK_K / 16];
    let mut sw = [0f32; QK_K / 16];
    let mut weight = [0f32; 16];

    let mut sumx2 = 0.0f32;
    for &v in x.iter() {
        sumx2 += v * v;
    }
    let sigma2 = sumx2 / QK_K as f32;
    for j in 0..QK_K / 16 {
        let xs = &x[16 * j..16 * j + 16];
        for i in 0..16 {
            weight[i] = qw[16 * j + i] * (sigma2 + xs[i] * xs[i]).sqrt();
        }
        for &w in &weight {
            sw[j] += w;
        }
        scales[j] = make_qkx3_quants(
            16,
            3,
            xs,
            Some(&weight),
            &mut l[16 * j..16 * j + 16],
            &mut mins[j],
            &mut laux,
            -0.9,
            0.05,
            36,
            false,
        );
    }
    finish_impl(x, y, &scales, &mins, &sw, &mut l, false);
}

/// The importance-weighted path after the sub-block searches: `make_qp_quants` for the scales
/// and mins (with `candidates_in_lanes`, the same search with its candidates side by side),
/// fp16 d/dmin, re-rounding and packing.
#[inline(always)]
fn finish_impl(
    x: &Super,
    y: &mut BlockQ2K,
    scales: &[f32; 16],
    mins: &[f32; 16],
    sw: &[f32; 16],
    l: &mut [u8; QK_K],
    candidates_in_lanes: bool,
) {
    let mut ls = [0u8; QK_K / 16];
    let mut lm = [0u8; QK_K / 16];
    let (dm, mm) = if candidates_in_lanes {
        (
            qp_candidates(15, scales, &mut ls, sw),
            qp_candidates(15, mins, &mut lm, sw),
        )
    } else {
        (
            make_qp_quants(QK_K / 16, 15, scales, &mut ls, sw),
            make_qp_quants(QK_K / 16, 15, mins, &mut lm, sw),
        )
    };
    y.d = f32_to_f16(dm);
    y.dmin = f32_to_f16(mm);
    for j in 0..QK_K / 16 {
        y.scales[j] = ls[j] | (lm[j] << 4);
    }
    requantize(x, y, f16_to_f32(y.d), f16_to_f32(y.dmin), l);
    pack_2bit(l, &mut y.qs);
}

/// The same bytes as [`quantize_row_q2_k`], several times faster: the sixteen sub-block searches of a
/// super-block (of two, where that fills the vectors better) run side by side in SIMD lanes,
/// with AVX-512 or AVX2 when the CPU has them, each lane repeating the scalar search exactly.
///
/// # Panics
/// On inconsistent lengths (see [`super::kquants`]).
pub fn quantize_row_q2_k_fast(x: &[f32], y: &mut [BlockQ2K], imatrix: Option<&[f32]>) {
    quantize_fast::<Q2KFast>(x, y, imatrix);
}

/// The fast super-block quantizer behind [`quantize_row_q2_k_fast`].
pub(crate) struct Q2KFast;

impl FastBlock for Q2KFast {
    type Block = BlockQ2K;
    const NAME: &'static str = "q2_K";

    #[inline(always)]
    fn quantize<L: Lanes>(lanes: L, xb: &Super, yb: &mut BlockQ2K, qw: Option<Weights<'_, 1>>) {
        quantize_blocks::<L, 16, 1>(lanes, [xb], [yb], qw);
    }

    #[inline(always)]
    fn quantize_pair<L: Lanes>(
        lanes: L,
        x: [&Super; 2],
        y: [&mut BlockQ2K; 2],
        qw: Option<Weights<'_, 2>>,
    ) {
        quantize_blocks::<L, 32, 2>(lanes, x, y, qw);
    }
}

/// `B` super-blocks at once: their `N = 16*B` sub-block searches side by side in SIMD lanes,
/// then each block finished as in the reference path.
#[inline(always)]
fn quantize_blocks<L: Lanes, const N: usize, const B: usize>(
    lanes: L,
    x: [&Super; B],
    y: [&mut BlockQ2K; B],
    qw: Option<Weights<'_, B>>,
) {
    let xt = lanes.transpose16::<N, B>(x);
    let mut wt = [[0f32; N]; 16];
    let (mut scales, mut mins, mut lt) = ([0f32; N], [0f32; N], [[0u8; N]; 16]);
    match qw {
        None => {
            for i in 0..16 {
                for j in 0..N {
                    wt[i][j] = xt[i][j].abs();
                }
            }
            lanes.qkx(
                &xt,
                &wt,
                3,
                -0.5,
                0.1,
                15,
                true,
                true,
                &mut scales,
                &mut mins,
                &mut lt,
            );
            for (b, yb) in y.into_iter().enumerate() {
                let mut l = block_levels::<u8, N, 16, B>(&lt, b);
                let (s, m) = (
                    block_lanes16::<N, B>(&scales, b),
                    block_lanes16::<N, B>(&mins, b),
                );
                finish_ref(x[b], yb, &s, &m, &mut l);
            }
        }
        Some(Weights { qw, sumx2 }) => {
            let qwt = lanes.transpose16::<N, B>(qw);
            let mut sw = [0f32; N];
            for i in 0..16 {
                for j in 0..N {
                    let sigma2 = sumx2[j / 16] / QK_K as f32;
                    wt[i][j] = qwt[i][j] * (sigma2 + xt[i][j] * xt[i][j]).sqrt();
                    sw[j] += wt[i][j];
                }
            }
            lanes.qkx(
                &xt,
                &wt,
                3,
                -0.9,
                0.05,
                36,
                false,
                false,
                &mut scales,
                &mut mins,
                &mut lt,
            );
            for (b, yb) in y.into_iter().enumerate() {
                let mut l = block_levels::<u8, N, 16, B>(&lt, b);
                let (s, m) = (
                    block_lanes16::<N, B>(&scales, b),
                    block_lanes16::<N, B>(&mins, b),
                );
                finish_impl(
                    x[b],
                    yb,
                    &s,
                    &m,
                    &block_lanes16::<N, B>(&sw, b),
                    &mut l,
                    true,
                );
            }
        }
    }
}

/// Re-rounds every sub-block against its stored (fp16-rounded, 4-bit-quantized) scale and min;
/// sub-blocks whose scale came out 0 keep the levels of the search, as in ggml.
#[inline(always)]
pub(crate) fn requantize(x: &Super, y: &BlockQ2K, dm: f32, mm: f32, l: &mut [u8; QK_K]) {
    for j in 0..QK_K / 16 {
        let d = dm * (y.scales[j] & 0xF) as f32;
        if d == 0.0 {
            continue;
        }
        let m = mm * (y.scales[j] >> 4) as f32;
        for ii in 0..16 {
            l[16 * j + ii] = nearest_int((x[16 * j + ii] + m) / d).clamp(0, 3) as u8;
        }
    }
}

/// ggml's `dequantize_row_q2_K`: `y = d*sc*q - dmin*m` per sub-block.
///
/// # Panics
/// When `y.len() != x.len() * 256`.
pub fn dequantize_row_q2_k(x: &[BlockQ2K], y: &mut [f32]) {
    check_dequant("q2_K", x.len(), y);
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_to_f32(b.d);
        let min = f16_to_f32(b.dmin);
        let mut o = 0;
        let mut is = 0;
        for h in 0..2 {
            let q = &b.qs[32 * h..32 * h + 32];
            for shift in [0u32, 2, 4, 6] {
                for half in 0..2 {
                    let sc = b.scales[is];
                    is += 1;
                    let dl = d * (sc & 0xF) as f32;
                    let ml = min * (sc >> 4) as f32;
                    for &qv in &q[16 * half..16 * half + 16] {
                        out[o] = dl * ((qv >> shift) & 3) as f32 - ml;
                        o += 1;
                    }
                }
            }
        }
    }
}
