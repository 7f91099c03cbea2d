//! IQ4_NL and IQ4_XS: 4-bit indices into the non-linear code book [`KVALUES_IQ4NL`]. A port of
//! ggml's `quantize_row_iq4_nl_impl` with `ntry = 7`, the search `quantize_iq4_nl` /
//! `quantize_iq4_xs` (and so llama-quantize) use, with and without importance weights, plus
//! `dequantize_row_iq4_nl` / `dequantize_row_iq4_xs`.
//!
//! (`quantize_row_iq4_nl_ref`, with `ntry = -1`, is not what any converter writes and is not
//! provided.)

use crate::blocks::{BlockIQ4NL, BlockIQ4XS, KVALUES_IQ4NL, QK, QK_K};
use crate::fp::{f16_to_f32, f32_to_f16, nearest_int};

/// The scale search width ggml's file quantizers use.
const NTRY: i32 = 7;
/// ggml's all-zero threshold for a 32-value block.
const GROUP_MAX_EPS: f32 = 1e-15;

/// `val[j-1] + val[j]` for j = 1..16: twice the midpoints between neighbouring code values,
/// exact small integers, strictly increasing.
const MID2: [f32; 15] = {
    let mut m = [0.0f32; 15];
    let mut j = 1;
    while j < 16 {
        m[j - 1] = (KVALUES_IQ4NL[j - 1] as i32 + KVALUES_IQ4NL[j] as i32) as f32;
        j += 1;
    }
    m
};

/// ggml's `best_index_int8` for the 16-entry code book: the index of the nearest value, the
/// upper one on an exact tie. ggml bisects on doubled values (`x + x >= val[j-1] + val[j]`,
/// exact for every finite `x`); because the thresholds increase, the bisection's answer is the
/// number of thresholds `x + x` reaches, which we count without branches (1.5× faster than
/// the bisection here; it runs 16 times per value in the scale search). A NaN reaches none
/// and maps to 0, as in current ggml. (Older ggml compared `x - val[i-1] < val[i] - x`,
/// which sends NaN to 15; on finite data the two agree on every golden row, and NaN input
/// is rejected before it gets here.)
#[inline]
fn best_index(x: f32) -> u8 {
    let x2 = x + x;
    MID2.iter().map(|&m| (x2 >= m) as u8).sum()
}

/// The weighted least-squares fit of one 32-value block: returns ggml's `scales[ib]`.
///
/// `l` receives the first pass's indices (which the caller later overwrites, as ggml does).
fn fit_block(xb: &[f32], weight: &[f32; QK], l: &mut [u8]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in xb {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let v0 = KVALUES_IQ4NL[0] as f32;
    // ntry > 0: d = -max / values[0].
    let d = -max / v0;
    let mut id = 1.0 / d;
    let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
    for j in 0..QK {
        let li = best_index(id * xb[j]);
        l[j] = li;
        let q = KVALUES_IQ4NL[li as usize] as f32;
        let w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
    }
    let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for itry in -NTRY..=NTRY {
        id = (itry + KVALUES_IQ4NL[0] as i32) as f32 / max;
        sumqx = 0.0;
        sumq2 = 0.0;
        for j in 0..QK {
            let q = KVALUES_IQ4NL[best_index(id * xb[j]) as usize] as f32;
            let w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    d
}

/// ggml's importance weights: `qw * sqrt(sigma2 + x²)` with an imatrix, `x²` without.
fn weights(xb: &[f32], qw: Option<&[f32]>, sigma2: f32, weight: &mut [f32; QK]) {
    match qw {
        Some(qw) => {
            for j in 0..QK {
                weight[j] = qw[j] * (sigma2 + xb[j] * xb[j]).sqrt();
            }
        }
        None => {
            for j in 0..QK {
                weight[j] = xb[j] * xb[j];
            }
        }
    }
}

/// `2 * Σx² / n` over the super-block, summed in order as ggml does.
fn sigma2_of(x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for &v in x {
        s += v * v;
    }
    s * (2.0 / x.len() as f32)
}

/// Packs 32 indices per 16 bytes: low nibble = element j, high nibble = element j + 16.
fn pack_nibbles(l: &[u8], qs: &mut [u8]) {
    for (lb, qb) in l.chunks_exact(QK).zip(qs.chunks_exact_mut(QK / 2)) {
        for j in 0..QK / 2 {
            qb[j] = lb[j] | (lb[j + QK / 2] << 4);
        }
    }
}

fn check_lengths(x: &[f32], per_block: usize, blocks: usize, imatrix: Option<&[f32]>) {
    assert!(
        x.len().is_multiple_of(per_block) && x.len() / per_block == blocks,
        "row of {} values needs {} blocks, got {blocks}",
        x.len(),
        x.len() / per_block
    );
    if let Some(qw) = imatrix {
        assert_eq!(
            qw.len(),
            x.len(),
            "imatrix length must equal the row length"
        );
    }
}

/// IQ4_NL as ggml's `quantize_iq4_nl` does one row (each 32-value block is its own
/// super-block, so `sigma2` is per block).
pub fn quantize_row_iq4_nl(x: &[f32], y: &mut [BlockIQ4NL], imatrix: Option<&[f32]>) {
    check_lengths(x, QK, y.len(), imatrix);
    let mut weight = [0.0f32; QK];
    let mut l = [0u8; QK];
    for (ib, (xb, b)) in x.chunks_exact(QK).zip(y.iter_mut()).enumerate() {
        let qw = imatrix.map(|q| &q[ib * QK..(ib + 1) * QK]);
        weights(xb, qw, sigma2_of(xb), &mut weight);
        let scale = fit_block(xb, &weight, &mut l);
        b.d = f32_to_f16(scale);
        let id = if scale != 0.0 { 1.0 / scale } else { 0.0 };
        for (lj, &v) in l.iter_mut().zip(xb) {
            *lj = best_index(id * v);
        }
        pack_nibbles(&l, &mut b.qs);
    }
}

/// IQ4_XS as ggml's `quantize_iq4_xs` does one row: per 256-value super-block, eight block
/// scales fitted as for IQ4_NL, then quantized to 6 bits against `d = -max_scale / 32`
/// (an all-zero super-block gets `d = fp16(-0.0)` = 0x8000, as in ggml).
pub fn quantize_row_iq4_xs(x: &[f32], y: &mut [BlockIQ4XS], imatrix: Option<&[f32]>) {
    check_lengths(x, QK_K, y.len(), imatrix);
    let mut weight = [0.0f32; QK];
    let mut l = [0u8; QK_K];
    let mut scales = [0.0f32; QK_K / QK];
    for (ibl, (xs, b)) in x.chunks_exact(QK_K).zip(y.iter_mut()).enumerate() {
        let sigma2 = sigma2_of(xs);
        let mut max_scale = 0.0f32;
        let mut amax_scale = 0.0f32;
        for ib in 0..QK_K / QK {
            let xb = &xs[ib * QK..(ib + 1) * QK];
            let qw = imatrix.map(|q| &q[ibl * QK_K + ib * QK..ibl * QK_K + (ib + 1) * QK]);
            weights(xb, qw, sigma2, &mut weight);
            let d = fit_block(xb, &weight, &mut l[ib * QK..(ib + 1) * QK]);
            scales[ib] = d;
            if d.abs() > amax_scale {
                amax_scale = d.abs();
                max_scale = d;
            }
        }
        let d = -max_scale / 32.0;
        b.d = f32_to_f16(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.scales_h = 0;
        b.scales_l = [0; QK_K / 64];
        for ib in 0..QK_K / QK {
            let ls = nearest_int(id * scales[ib]).clamp(-32, 31);
            let dl = d * ls as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            let xb = &xs[ib * QK..(ib + 1) * QK];
            for (lj, &v) in l[ib * QK..(ib + 1) * QK].iter_mut().zip(xb) {
                *lj = best_index(idl * v);
            }
            let ls = (ls + 32) as u8;
            if ib % 2 == 0 {
                b.scales_l[ib / 2] = ls & 0xf;
            } else {
                b.scales_l[ib / 2] |= (ls & 0xf) << 4;
            }
            b.scales_h |= ((ls >> 4) as u16) << (2 * ib);
        }
        pack_nibbles(&l, &mut b.qs);
    }
}

/// ggml's `dequantize_row_iq4_nl`: `d * kvalues[nibble]`.
pub fn dequantize_row_iq4_nl(x: &[BlockIQ4NL], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK, "output needs 32 values per block");
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        for j in 0..QK / 2 {
            yb[j] = d * KVALUES_IQ4NL[(b.qs[j] & 0xf) as usize] as f32;
            yb[j + QK / 2] = d * KVALUES_IQ4NL[(b.qs[j] >> 4) as usize] as f32;
        }
    }
}

/// ggml's `dequantize_row_iq4_xs`: `(d * (ls - 32)) * kvalues[nibble]`, the block factor
/// rounded to f32 first as in ggml.
pub fn dequantize_row_iq4_xs(x: &[BlockIQ4XS], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K, "output needs 256 values per block");
    for (b, ys) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_to_f32(b.d);
        for (ib, yb) in ys.chunks_exact_mut(QK).enumerate() {
            let ls = ((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf) as i32
                | ((((b.scales_h >> (2 * ib)) & 3) as i32) << 4);
            let dl = d * (ls - 32) as f32;
            let qs = &b.qs[ib * QK / 2..(ib + 1) * QK / 2];
            for j in 0..QK / 2 {
                yb[j] = dl * KVALUES_IQ4NL[(qs[j] & 0xf) as usize] as f32;
                yb[j + QK / 2] = dl * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytemuck::Zeroable;

    #[test]
    fn best_index_picks_nearest_and_upper_on_ties() {
        assert_eq!(best_index(-1000.0), 0);
        assert_eq!(best_index(1000.0), 15);
        assert_eq!(best_index(0.0), 8); // nearest to 1
        assert_eq!(best_index(-4.5), 8); // tie between -10 and 1 → upper
        assert_eq!(best_index(-4.6), 7);
        for (i, &v) in KVALUES_IQ4NL.iter().enumerate() {
            assert_eq!(best_index(v as f32) as usize, i);
        }
    }

    #[test]
    fn all_zero_super_block_has_negative_zero_scale() {
        let x = [0.0f32; QK_K];
        let mut y = [BlockIQ4XS::zeroed()];
        quantize_row_iq4_xs(&x, &mut y, None);
        assert_eq!(y[0].d, 0x8000);
        let mut back = [1.0f32; QK_K];
        dequantize_row_iq4_xs(&y, &mut back);
        assert!(back.iter().all(|v| *v == 0.0));
    }

    #[test]
    fn nl_round_trip_is_close() {
        let x: Vec<f32> = (0..64)
            .map(|i| ((i * 13 % 64) as f32 - 32.0) * 0.01)
            .collect();
        let mut y = [BlockIQ4NL::default(); 2];
        quantize_row_iq4_nl(&x, &mut y, None);
        let mut back = vec![0.0f32; 64];
        dequantize_row_iq4_nl(&y, &mut back);
        let err: f32 = x.iter().zip(&back).map(|(a, b)| (a - b) * (a - b)).sum();
        let norm: f32 = x.iter().map(|a| a * a).sum();
        assert!(err / norm < 0.01, "relative error {}", err / norm);
    }
}
