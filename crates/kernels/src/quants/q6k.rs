//! Q6_K: 6-bit symmetric quants in 16 sub-blocks of 16 with 8-bit scales; low nibbles in `ql`,
//! high two bits in `qh` (`quantize_row_q6_K_ref`, `quantize_row_q6_K_impl`,
//! `dequantize_row_q6_K` in ggml-quants.c).

// Index loops mirror ggml's C loops one for one, so the port can be checked line by line.
#![allow(clippy::needless_range_loop)]

use super::kquants::{check_dequant, for_each_super_block, Super};
use super::lanes::{block_lanes16, quantize_fast, FastBlock, Lanes, Portable, Weights};
use super::search::{make_qx_quants, GROUP_MAX_EPS};
use crate::blocks::{BlockQ6K, QK_K};
use crate::fp::{f16_to_f32, f32_to_f16, nearest_int};

/// Quantizes `x` (`y.len()` super-blocks of 256) to Q6_K exactly as ggml's `quantize_q6_K`:
/// `quantize_row_q6_K_ref` without an importance matrix, `quantize_row_q6_K_impl` with one. The
/// impl passes the raw importance weights to `make_qx_quants` (no sigma2 term), as ggml does.
///
/// # Panics
/// On inconsistent lengths (see [`super::kquants`]).
pub fn quantize_row_q6_k(x: &[f32], y: &mut [BlockQ6K], imatrix: Option<&[f32]>) {
    for_each_super_block("q6_K", x, y, imatrix, |xb, yb, qw| {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        for ib in 0..QK_K / 16 {
            let w = qw.map(|qw| &qw[16 * ib..16 * ib + 16]);
            scales[ib] = make_qx_quants(
                16,
                32,
                &xb[16 * ib..16 * ib + 16],
                &mut l[16 * ib..16 * ib + 16],
                1,
                w,
            );
        }
        finish_block(Portable, xb, yb, &scales, |j, out| {
            out.copy_from_slice(&l[16 * j..16 * j + 16])
        });
    });
}

/// The same bytes as [`quantize_row_q6_k`], several times faster: the sixteen sub-block searches of a
/// super-block (of two, where that fills the vectors better) run side by side in SIMD lanes,
/// with AVX-512 or AVX2 when the CPU has them, each lane repeating the scalar search exactly.
///
/// # Panics
/// On inconsistent lengths (see [`super::kquants`]).
pub fn quantize_row_q6_k_fast(x: &[f32], y: &mut [BlockQ6K], imatrix: Option<&[f32]>) {
    quantize_fast::<Q6KFast>(x, y, imatrix);
}

/// The fast super-block quantizer behind [`quantize_row_q6_k_fast`].
pub(crate) struct Q6KFast;

impl FastBlock for Q6KFast {
    type Block = BlockQ6K;
    const NAME: &'static str = "q6_K";
    const USES_SUMX2: bool = false;

    #[inline(always)]
    fn quantize<L: Lanes>(lanes: L, xb: &Super, yb: &mut BlockQ6K, qw: Option<Weights<'_, 1>>) {
        quantize_blocks::<L, 16, 1>(lanes, [xb], [yb], qw);
    }

    #[inline(always)]
    fn quantize_pair<L: Lanes>(
        lanes: L,
        x: [&Super; 2],
        y: [&mut BlockQ6K; 2],
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
    y: [&mut BlockQ6K; B],
    qw: Option<Weights<'_, B>>,
) {
    let xt = lanes.transpose16::<N, B>(x);
    let wt = match qw {
        Some(w) => lanes.transpose16::<N, B>(w.qw),
        None => {
            let squares: [Super; B] =
                std::array::from_fn(|b| std::array::from_fn(|i| x[b][i] * x[b][i]));
            lanes.transpose16::<N, B>(std::array::from_fn(|b| &squares[b]))
        }
    };
    let (mut scales, mut lt) = ([0f32; N], [[0i8; N]; 16]);
    lanes.qx(&xt, &wt, 32, &mut scales, &mut lt);
    for (b, yb) in y.into_iter().enumerate() {
        finish_block(
            lanes,
            x[b],
            yb,
            &block_lanes16::<N, B>(&scales, b),
            |j, out| {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = lt[i][16 * b + j];
                }
            },
        );
    }
}

/// Everything after the per-sub-block search: pick the scale with the largest magnitude (an
/// all-zero super-block becomes an all-zero block), quantize the 16 scales to i8, re-round
/// against them (`lanes.requant`) and pack. Sub-blocks whose scale became zero keep the
/// search's levels, which `search(j, out)` writes into `out` for sub-block `j`.
#[inline(always)]
pub(crate) fn finish_block<L: Lanes>(
    lanes: L,
    x: &Super,
    y: &mut BlockQ6K,
    scales: &[f32; 16],
    search: impl Fn(usize, &mut [i8]),
) {
    let mut max_scale = 0.0f32;
    let mut max_abs_scale = 0.0f32;
    for &scale in scales {
        let abs_scale = scale.abs();
        if abs_scale > max_abs_scale {
            max_abs_scale = abs_scale;
            max_scale = scale;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        *y = bytemuck::Zeroable::zeroed();
        y.d = f32_to_f16(0.0);
        return;
    }
    let iscale = -128.0 / max_scale;
    y.d = f32_to_f16(1.0 / iscale);
    for ib in 0..QK_K / 16 {
        y.scales[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
    }
    let dd = f16_to_f32(y.d);
    let d: [f32; 16] = std::array::from_fn(|j| dd * y.scales[j] as f32);
    let mut l = [0i8; QK_K];
    let mut skipped = lanes.requant(x, &d, 32, &mut l);
    while skipped != 0 {
        let j = skipped.trailing_zeros() as usize;
        search(j, &mut l[16 * j..16 * j + 16]);
        skipped &= skipped - 1;
    }
    for h in 0..2 {
        let j = 128 * h;
        for i in 0..32 {
            let q = |k: usize| l[j + i + 32 * k] as i32;
            y.ql[64 * h + i] = ((q(0) & 0xF) | ((q(2) & 0xF) << 4)) as u8;
            y.ql[64 * h + 32 + i] = ((q(1) & 0xF) | ((q(3) & 0xF) << 4)) as u8;
            y.qh[32 * h + i] =
                ((q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6)) as u8;
        }
    }
}

/// ggml's `dequantize_row_q6_K`: `y = d*sc*(q-32)`.
///
/// # Panics
/// When `y.len() != x.len() * 256`.
pub fn dequantize_row_q6_k(x: &[BlockQ6K], y: &mut [f32]) {
    check_dequant("q6_K", x.len(), y);
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_to_f32(b.d);
        for h in 0..2 {
            let ql = &b.ql[64 * h..64 * h + 64];
            let qh = &b.qh[32 * h..32 * h + 32];
            let sc = &b.scales[8 * h..8 * h + 8];
            let o = &mut out[128 * h..128 * h + 128];
            for i in 0..32 {
                let is = i / 16;
                let q1 = ((ql[i] & 0xF) | ((qh[i] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[i + 32] & 0xF) | (((qh[i] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[i] >> 4) | (((qh[i] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[i + 32] >> 4) | (((qh[i] >> 6) & 3) << 4)) as i32 - 32;
                o[i] = d * sc[is] as f32 * q1 as f32;
                o[i + 32] = d * sc[is + 2] as f32 * q2 as f32;
                o[i + 64] = d * sc[is + 4] as f32 * q3 as f32;
                o[i + 96] = d * sc[is + 6] as f32 * q4 as f32;
            }
        }
    }
}
