//! The K-quants (Q2_K … Q6_K): the row-level entry points and the bit packing they share.
//!
//! Each type lives in its own module ([`super::q2k`] … [`super::q6k`]) as a literal port of
//! ggml's `quantize_row_T_ref` (no importance matrix), `quantize_row_T_impl` (importance
//! matrix; chosen exactly when ggml's `quantize_T` would choose it) and `dequantize_row_T`,
//! plus a `_fast` quantizer that produces the same bytes. This module re-exports them under
//! ggml's names and holds what they have in common: argument checking, the walk over
//! super-blocks, and the scale/quant bit layouts of `ggml-common.h`.

// Index loops mirror ggml's C loops one for one, so the port can be checked line by line.
#![allow(clippy::needless_range_loop)]

use crate::blocks::QK_K;

pub use super::q2k::{dequantize_row_q2_k, quantize_row_q2_k, quantize_row_q2_k_fast};
pub use super::q3k::{dequantize_row_q3_k, quantize_row_q3_k, quantize_row_q3_k_fast};
pub use super::q4k::{dequantize_row_q4_k, quantize_row_q4_k, quantize_row_q4_k_fast};
pub use super::q5k::{dequantize_row_q5_k, quantize_row_q5_k, quantize_row_q5_k_fast};
pub use super::q6k::{dequantize_row_q6_k, quantize_row_q6_k, quantize_row_q6_k_fast};

/// One super-block of input values.
pub(crate) type Super = [f32; QK_K];

/// Checks the shapes of a K-quant call and hands `f` each super-block with its block struct and,
/// when an importance matrix is given, the 256 weights for that block's columns.
///
/// ggml's `quantize_T(src, dst, nrow, n_per_row, quant_weights)` indexes the importance matrix
/// by column within the row, so the imatrix slice defines the row length: `x` may hold several
/// rows of `imatrix.len()` values each. Without one the blocks are independent.
///
/// # Panics
/// When `x.len() != y.len() * 256`, or the importance matrix is empty, not a multiple of 256
/// long, or does not divide `x` into whole rows. These are caller bugs (shapes come from the
/// tensor metadata the caller has already validated), not properties of the data.
pub(crate) fn for_each_super_block<B>(
    type_name: &str,
    x: &[f32],
    y: &mut [B],
    imatrix: Option<&[f32]>,
    mut f: impl FnMut(&Super, &mut B, Option<&Super>),
) {
    let blocks_per_row = check_shapes(type_name, x.len(), y.len(), imatrix);
    for (ib, (xb, yb)) in x.chunks_exact(QK_K).zip(y.iter_mut()).enumerate() {
        let qw = imatrix.map(|qw| {
            let col = (ib % blocks_per_row) * QK_K;
            as_super(&qw[col..col + QK_K])
        });
        f(as_super(xb), yb, qw);
    }
}

/// The shape checks of [`for_each_super_block`]; returns the super-blocks per row (the
/// importance matrix's length / 256, or 1 without one).
///
/// # Panics
/// As [`for_each_super_block`].
pub(crate) fn check_shapes(
    type_name: &str,
    x_len: usize,
    blocks: usize,
    imatrix: Option<&[f32]>,
) -> usize {
    assert_eq!(
        Some(x_len),
        blocks.checked_mul(QK_K),
        "{type_name}: {x_len} values do not fill {blocks} super-blocks of {QK_K}"
    );
    match imatrix {
        None => 1,
        Some(qw) => {
            let n_per_row = qw.len();
            assert!(
                n_per_row > 0 && n_per_row.is_multiple_of(QK_K) && x_len.is_multiple_of(n_per_row),
                "{type_name}: importance matrix of {n_per_row} values does not match rows of \
                 a {x_len}-value input (needs a multiple of {QK_K} dividing it)"
            );
            n_per_row / QK_K
        }
    }
}

/// Checks a dequantization call: `y` must hold exactly 256 floats per block.
///
/// # Panics
/// When the lengths disagree (a caller bug).
pub(crate) fn check_dequant(type_name: &str, blocks: usize, y: &[f32]) {
    assert_eq!(
        Some(y.len()),
        blocks.checked_mul(QK_K),
        "{type_name}: output of {} floats for {blocks} super-blocks",
        y.len()
    );
}

#[inline(always)]
fn as_super(s: &[f32]) -> &Super {
    s.try_into().expect("chunks_exact yields QK_K values")
}

/// `get_scale_min_k4`: the 6-bit (scale, min) pair of sub-block `j` of Q4_K/Q5_K.
#[inline(always)]
pub(crate) fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Packs eight 6-bit (scale, min) pairs into Q4_K/Q5_K's 12 scale bytes, in the order ggml's
/// quantizers write them (j = 0..8, the high bits OR-ed into bytes written earlier).
#[inline(always)]
pub(crate) fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8], q: &mut [u8; 12]) {
    for j in 0..8 {
        let (s, m) = (ls[j], lm[j]);
        if j < 4 {
            q[j] = s;
            q[j + 4] = m;
        } else {
            q[j + 4] = (s & 0xF) | ((m & 0xF) << 4);
            q[j - 4] |= (s >> 4) << 6;
            q[j] |= (m >> 4) << 6;
        }
    }
}

/// Packs Q3_K's sixteen 6-bit scales (already offset by 32, values 0..=63 as `i32`) into its 12
/// scale bytes: low nibbles in bytes 0..8, the two high bits in bytes 8..12.
#[inline(always)]
pub(crate) fn pack_scales_q3(l6: &[i32; 16], q: &mut [u8; 12]) {
    // Eight bytes at a time: byte j of `lo`/`hi` holds scale j / j + 8.
    let bytes = |from: usize| u64::from_le_bytes(std::array::from_fn(|j| l6[from + j] as u8));
    let (lo, hi) = (bytes(0), bytes(8));
    let nibbles = 0x0F0F_0F0F_0F0F_0F0Fu64;
    q[..8].copy_from_slice(&((lo & nibbles) | ((hi & nibbles) << 4)).to_le_bytes());
    // Bits 4-5 of scale j go to byte 8 + j % 4, at bit 2·(j / 4).
    let (top_lo, top_hi) = (
        (lo >> 4) & 0x0303_0303_0303_0303,
        (hi >> 4) & 0x0303_0303_0303_0303,
    );
    let high = (top_lo as u32)
        | ((top_lo >> 32) as u32) << 2
        | (top_hi as u32) << 4
        | ((top_hi >> 32) as u32) << 6;
    q[8..].copy_from_slice(&high.to_le_bytes());
}

/// Q3_K's scale of sub-block `j` minus the offset 32 (-32..=31).
#[inline(always)]
pub(crate) fn q3_scale(q: &[u8; 12], j: usize) -> i32 {
    let lo = if j < 8 { q[j] & 0xF } else { q[j - 8] >> 4 };
    let hi = (q[8 + j % 4] >> (2 * (j / 4))) & 3;
    (lo | (hi << 4)) as i32 - 32
}

/// Q2_K/Q3_K's 2-bit packing: byte `32h + l` holds elements `128h + l + 32k` for k = 0..4 in
/// bit pairs 2k. `L` values must be below 4.
#[inline(always)]
pub(crate) fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8; QK_K / 4]) {
    for h in 0..2 {
        let j = 128 * h;
        for i in 0..32 {
            qs[32 * h + i] =
                l[j + i] | (l[j + i + 32] << 2) | (l[j + i + 64] << 4) | (l[j + i + 96] << 6);
        }
    }
}

/// Q4_K/Q5_K's nibble packing: byte `32c + l` holds element `64c + l` (low) and `64c + 32 + l`
/// (high). Values above 15 keep only their low nibble (Q5_K strips bit 4 first).
#[inline(always)]
pub(crate) fn pack_nibbles(l: &[u8; QK_K], qs: &mut [u8; QK_K / 2]) {
    for c in 0..4 {
        for i in 0..32 {
            qs[32 * c + i] = (l[64 * c + i] & 0xF) | (l[64 * c + 32 + i] << 4);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_min_k4_round_trips() {
        let ls = [0u8, 1, 17, 63, 32, 5, 48, 62];
        let lm = [63u8, 2, 33, 0, 15, 16, 47, 1];
        let mut q = [0u8; 12];
        pack_scale_min_k4(&ls, &lm, &mut q);
        for j in 0..8 {
            assert_eq!(get_scale_min_k4(j, &q), (ls[j], lm[j]), "pair {j}");
        }
    }

    #[test]
    fn q3_scales_round_trip() {
        let l6: [i32; 16] = std::array::from_fn(|j| (j as i32 * 13 + 7) % 64);
        let mut q = [0xFFu8; 12];
        pack_scales_q3(&l6, &mut q);
        for j in 0..16 {
            assert_eq!(q3_scale(&q, j), l6[j] - 32, "scale {j}");
        }
    }

    #[test]
    #[should_panic(expected = "super-blocks")]
    fn length_mismatch_is_reported() {
        let x = [0.0f32; 300];
        let mut y = [0u8; 1];
        for_each_super_block("q4_K", &x, &mut y, None, |_, _, _| {});
    }
}
