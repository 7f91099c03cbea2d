//! Q5_K: Q4_K's scheme with 5-bit quants, the fifth bit in `qh` (`quantize_row_q5_K_ref`,
//! `quantize_row_q5_K_impl`, `dequantize_row_q5_K` in ggml-quants.c). The searches are shared
//! with Q4_K ([`super::q4k`]), parameterised by `nmax` and the search grid.

// Index loops mirror ggml's C loops one for one, so the port can be checked line by line.
#![allow(clippy::needless_range_loop)]

use super::kquants::{
    check_dequant, for_each_super_block, get_scale_min_k4, pack_nibbles, pack_scale_min_k4, Super,
};
use super::lanes::{quantize_fast, FastBlock, Lanes, Weights};
use super::q4k::{requantize, search_fast, search_impl, search_ref, Params};
use crate::blocks::{BlockQ5K, QK_K};
use crate::fp::f16_to_f32;

/// Quantizes `x` (`y.len()` super-blocks of 256) to Q5_K exactly as ggml's `quantize_q5_K`:
/// `quantize_row_q5_K_ref` without an importance matrix, `quantize_row_q5_K_impl` with one (one
/// weight per column; `x` may hold several rows of `imatrix.len()` values).
///
/// # Panics
/// On inconsistent lengths (see [`super::kquants`]).
pub fn quantize_row_q5_k(x: &[f32], y: &mut [BlockQ5K], imatrix: Option<&[f32]>) {
    for_each_super_block("q5_K", x, y, imatrix, |xb, yb, qw| {
        let mut l = [0u8; QK_K];
        let (ls, lm, d, dmin) = match qw {
            None => search_ref(xb, 31, -0.5, 0.1, 15, &mut l),
            Some(qw) => search_impl(xb, qw, 31, true, &mut l),
        };
        pack_scale_min_k4(&ls, &lm, &mut yb.scales);
        yb.d = d;
        yb.dmin = dmin;
        requantize(
            xb,
            &yb.scales,
            f16_to_f32(yb.d),
            f16_to_f32(yb.dmin),
            31,
            &mut l,
        );
        pack_q5(&l, yb);
    });
}

/// The same bytes as [`quantize_row_q5_k`], several times faster: the eight sub-block searches of a
/// super-block (of two, where that fills the vectors better) run side by side in SIMD lanes,
/// with AVX-512 or AVX2 when the CPU has them, each lane repeating the scalar search exactly.
///
/// # Panics
/// On inconsistent lengths (see [`super::kquants`]).
pub fn quantize_row_q5_k_fast(x: &[f32], y: &mut [BlockQ5K], imatrix: Option<&[f32]>) {
    quantize_fast::<Q5KFast>(x, y, imatrix);
}

/// The fast super-block quantizer behind [`quantize_row_q5_k_fast`].
pub(crate) struct Q5KFast;

/// Q5_K's search parameters.
const Q5K_PARAMS: Params = Params {
    nmax: 31,
    grid: (-0.5, 0.1, 15),
    cap_63: true,
};

impl FastBlock for Q5KFast {
    type Block = BlockQ5K;
    const NAME: &'static str = "q5_K";

    #[inline(always)]
    fn quantize<L: Lanes>(lanes: L, xb: &Super, yb: &mut BlockQ5K, qw: Option<Weights<'_, 1>>) {
        let mut l = [[0u8; QK_K]];
        let [found] = search_fast::<L, 8, 1>(lanes, [xb], qw, Q5K_PARAMS, &mut l);
        finish_q5(xb, yb, found, &mut l[0]);
    }

    #[inline(always)]
    fn quantize_pair<L: Lanes>(
        lanes: L,
        x: [&Super; 2],
        y: [&mut BlockQ5K; 2],
        qw: Option<Weights<'_, 2>>,
    ) {
        let mut l = [[0u8; QK_K]; 2];
        let found = search_fast::<L, 16, 2>(lanes, x, qw, Q5K_PARAMS, &mut l);
        let [y0, y1] = y;
        let [l0, l1] = &mut l;
        finish_q5(x[0], y0, found[0], l0);
        finish_q5(x[1], y1, found[1], l1);
    }
}

/// Packs the scales found for one block, re-rounds its levels against them and packs those.
#[inline(always)]
fn finish_q5(
    x: &Super,
    y: &mut BlockQ5K,
    (ls, lm, d, dmin): ([u8; 8], [u8; 8], u16, u16),
    l: &mut [u8; QK_K],
) {
    pack_scale_min_k4(&ls, &lm, &mut y.scales);
    y.d = d;
    y.dmin = dmin;
    requantize(x, &y.scales, f16_to_f32(y.d), f16_to_f32(y.dmin), 31, l);
    pack_q5(l, y);
}

/// Splits bit 4 of each level into `qh` (bit 2c for element 64c+i, bit 2c+1 for 64c+32+i) and
/// packs the low nibbles like Q4_K.
#[inline(always)]
pub(crate) fn pack_q5(l: &[u8; QK_K], y: &mut BlockQ5K) {
    y.qh = [0; QK_K / 8];
    for c in 0..4 {
        for i in 0..32 {
            y.qh[i] |= ((l[64 * c + i] >> 4) & 1) << (2 * c);
            y.qh[i] |= ((l[64 * c + 32 + i] >> 4) & 1) << (2 * c + 1);
        }
    }
    pack_nibbles(l, &mut y.qs);
}

/// ggml's `dequantize_row_q5_K`: `y = d*sc*(q + 16*hbit) - dmin*m` per sub-block of 32.
///
/// # Panics
/// When `y.len() != x.len() * 256`.
pub fn dequantize_row_q5_k(x: &[BlockQ5K], y: &mut [f32]) {
    check_dequant("q5_K", x.len(), y);
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_to_f32(b.d);
        let min = f16_to_f32(b.dmin);
        for c in 0..4 {
            let ql = &b.qs[32 * c..32 * c + 32];
            let (sc, m) = get_scale_min_k4(2 * c, &b.scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (sc, m) = get_scale_min_k4(2 * c + 1, &b.scales);
            let (d2, m2) = (d * sc as f32, min * m as f32);
            let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
            let o = &mut out[64 * c..64 * c + 64];
            for i in 0..32 {
                let h1 = if b.qh[i] & u1 != 0 { 16 } else { 0 };
                let h2 = if b.qh[i] & u2 != 0 { 16 } else { 0 };
                o[i] = d1 * ((ql[i] & 0xF) + h1) as f32 - m1;
                o[32 + i] = d2 * ((ql[i] >> 4) + h2) as f32 - m2;
            }
        }
    }
}
