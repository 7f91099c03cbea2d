//! Q5_K: Q4_K's scheme with 5-bit quants, the fifth bit in `qh` (`quantize_row_q5_K_ref`,
//! `quantize_row_q5_K_impl`, `dequantize_row_q5_K` in ggml-quants.c). The searches are shared
//! with Q4_K ([`super::q4k`]), parameterised by `nmax` and the search grid.

// Index loops mirror ggml's C loops one for one, so the port can be checked line by line.
#![allow(clippy::needless_range_loop)]

use super::kquants::{
    check_dequant, for_each_super_block, get_scale_min_k4, pack_nibbles, pack_scale_min_k4, Super,
};
use super::lanes::{quantize_fast, FastBlock, Lanes};
use super::q4k::{requantize, search_impl, search_impl_fast, search_ref, search_ref_fast};
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

/// The same bytes as [`quantize_row_q5_k`], with the eight sub-block searches of a super-block
/// run side by side in SIMD lanes ([`super::lanes`]).
///
/// # Panics
/// On inconsistent lengths (see [`super::kquants`]).
pub fn quantize_row_q5_k_fast(x: &[f32], y: &mut [BlockQ5K], imatrix: Option<&[f32]>) {
    quantize_fast::<Q5KFast>(x, y, imatrix);
}

/// The fast super-block quantizer behind [`quantize_row_q5_k_fast`].
pub(crate) struct Q5KFast;

impl FastBlock for Q5KFast {
    type Block = BlockQ5K;
    const NAME: &'static str = "q5_K";

    #[inline(always)]
    fn quantize<L: Lanes>(lanes: L, xb: &Super, yb: &mut BlockQ5K, qw: Option<&Super>) {
        let mut l = [0u8; QK_K];
        let (ls, lm, d, dmin) = match qw {
            None => search_ref_fast(lanes, xb, 31, -0.5, 0.1, 15, &mut l),
            Some(qw) => search_impl_fast(lanes, xb, qw, 31, true, &mut l),
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
    }
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
