//! The legacy 32-value formats Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0: literal ports of ggml's
//! `quantize_row_*_ref`, `quantize_row_*_impl` (the importance-matrix paths) and
//! `dequantize_row_*` from `ggml-quants.c`.
//!
//! Bit-exactness notes: the reference paths truncate with `(int8_t)(v + 8.5f)`
//! (Rust's `as` conversion truncates toward zero the same way for in-range values) and Q8_0 uses
//! `roundf` (half away from zero = [`f32::round`]); every float expression keeps C's evaluation
//! order and no operation is fused, matching ggml-base built without `-march` flags.
//!
//! Each `quantize_row_*` takes ONE row (`x.len()` values; the importance-matrix paths compute a
//! whole-row statistic, so rows must not be concatenated) and exactly `x.len() / 32` blocks.

use crate::blocks::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, QK};
use crate::fp::{f16_to_f32, f32_to_f16};
use crate::quants::search::{make_qkx3_quants, make_qx_quants};

/// Panics unless `y` has one block per 32 values of `x` and the imatrix (if any) matches `x`:
/// a programming error in the caller (the byte API checks lengths and returns errors).
fn check_lengths(x: &[f32], blocks: usize, imatrix: Option<&[f32]>) {
    assert!(
        x.len().is_multiple_of(QK) && x.len() / QK == blocks,
        "row of {} values needs {} blocks, got {blocks}",
        x.len(),
        x.len() / QK
    );
    if let Some(qw) = imatrix {
        assert_eq!(
            qw.len(),
            x.len(),
            "imatrix length must equal the row length"
        );
    }
}

/// The signed value of largest magnitude; the first one wins on ties (ggml's strict `<`).
fn signed_absmax(xb: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in xb {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// `(min, max)` of a block, starting from ±FLT_MAX as ggml does.
fn min_max(xb: &[f32]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in xb {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// The mean square of the WHOLE row (not of the block, unlike the K-quants and IQ4): the
/// `sigma2` of the legacy imatrix paths.
fn row_sigma2(x: &[f32]) -> f32 {
    let mut sum_x2 = 0.0f32;
    for &v in x {
        sum_x2 += v * v;
    }
    sum_x2 / x.len() as f32
}

/// The per-value importance weights of the legacy imatrix paths: `qw * sqrt(sigma2 + x²)`.
fn block_weights(xb: &[f32], qw: &[f32], sigma2: f32, weight: &mut [f32; QK]) {
    for j in 0..QK {
        weight[j] = qw[j] * (sigma2 + xb[j] * xb[j]).sqrt();
    }
}

/// Packs 32 five-bit levels into the 4-bit `qs` and the 32 high bits of `qh` (little-endian).
fn pack_q5(l: &[u8; QK], qs: &mut [u8; QK / 2]) -> [u8; 4] {
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        let xi0 = l[j];
        let xi1 = l[j + QK / 2];
        qs[j] = (xi0 & 0x0f) | ((xi1 & 0x0f) << 4);
        qh |= ((xi0 as u32 & 0x10) >> 4) << j;
        qh |= ((xi1 as u32 & 0x10) >> 4) << (j + QK / 2);
    }
    qh.to_le_bytes()
}

/// Q4_0 as ggml's `quantize_q4_0` does one row: the reference without an imatrix, else
/// `quantize_row_q4_0_impl` (weighted `make_qx_quants` search).
pub fn quantize_row_q4_0(x: &[f32], y: &mut [BlockQ4_0], imatrix: Option<&[f32]>) {
    check_lengths(x, y.len(), imatrix);
    match imatrix {
        None => {
            for (xb, b) in x.chunks_exact(QK).zip(y.iter_mut()) {
                let max = signed_absmax(xb);
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                b.d = f32_to_f16(d);
                for j in 0..QK / 2 {
                    let x0 = xb[j] * id;
                    let x1 = xb[j + QK / 2] * id;
                    let xi0 = ((x0 + 8.5) as i8).min(15) as u8;
                    let xi1 = ((x1 + 8.5) as i8).min(15) as u8;
                    b.qs[j] = xi0 | (xi1 << 4);
                }
            }
        }
        Some(qw) => {
            let sigma2 = row_sigma2(x);
            let mut weight = [0.0f32; QK];
            let mut l = [0i8; QK];
            for ((xb, qb), b) in x
                .chunks_exact(QK)
                .zip(qw.chunks_exact(QK))
                .zip(y.iter_mut())
            {
                block_weights(xb, qb, sigma2, &mut weight);
                let d = make_qx_quants(QK, 8, xb, &mut l, 1, Some(&weight));
                b.d = f32_to_f16(d);
                for j in 0..QK / 2 {
                    b.qs[j] = (l[j] as u8) | ((l[j + QK / 2] as u8) << 4);
                }
            }
        }
    }
}

/// Q4_1 as ggml's `quantize_q4_1`: min/max reference, or `make_qkx3_quants` with an imatrix.
pub fn quantize_row_q4_1(x: &[f32], y: &mut [BlockQ4_1], imatrix: Option<&[f32]>) {
    check_lengths(x, y.len(), imatrix);
    match imatrix {
        None => {
            for (xb, b) in x.chunks_exact(QK).zip(y.iter_mut()) {
                let (min, max) = min_max(xb);
                let d = (max - min) / 15.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                b.d = f32_to_f16(d);
                b.m = f32_to_f16(min);
                for j in 0..QK / 2 {
                    let x0 = (xb[j] - min) * id;
                    let x1 = (xb[j + QK / 2] - min) * id;
                    let xi0 = ((x0 + 0.5) as i8).min(15) as u8;
                    let xi1 = ((x1 + 0.5) as i8).min(15) as u8;
                    b.qs[j] = xi0 | (xi1 << 4);
                }
            }
        }
        Some(qw) => {
            let sigma2 = row_sigma2(x);
            let mut weight = [0.0f32; QK];
            let mut l = [0u8; QK];
            let mut laux = [0u8; QK];
            for ((xb, qb), b) in x
                .chunks_exact(QK)
                .zip(qw.chunks_exact(QK))
                .zip(y.iter_mut())
            {
                block_weights(xb, qb, sigma2, &mut weight);
                let mut min = 0.0f32;
                let d = make_qkx3_quants(
                    QK,
                    15,
                    xb,
                    Some(&weight),
                    &mut l,
                    &mut min,
                    &mut laux,
                    -0.9,
                    0.05,
                    36,
                    false,
                );
                b.d = f32_to_f16(d);
                b.m = f32_to_f16(-min);
                for j in 0..QK / 2 {
                    b.qs[j] = l[j] | (l[j + QK / 2] << 4);
                }
            }
        }
    }
}

/// Q5_0 as ggml's `quantize_q5_0`: reference `d = max/-16`, or `make_qx_quants(…, 16, …)`.
pub fn quantize_row_q5_0(x: &[f32], y: &mut [BlockQ5_0], imatrix: Option<&[f32]>) {
    check_lengths(x, y.len(), imatrix);
    let mut l = [0u8; QK];
    match imatrix {
        None => {
            for (xb, b) in x.chunks_exact(QK).zip(y.iter_mut()) {
                let max = signed_absmax(xb);
                let d = max / -16.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                b.d = f32_to_f16(d);
                for (lj, &v) in l.iter_mut().zip(xb) {
                    *lj = ((v * id + 16.5) as i8).min(31) as u8;
                }
                b.qh = pack_q5(&l, &mut b.qs);
            }
        }
        Some(qw) => {
            let sigma2 = row_sigma2(x);
            let mut weight = [0.0f32; QK];
            let mut li = [0i8; QK];
            for ((xb, qb), b) in x
                .chunks_exact(QK)
                .zip(qw.chunks_exact(QK))
                .zip(y.iter_mut())
            {
                block_weights(xb, qb, sigma2, &mut weight);
                let d = make_qx_quants(QK, 16, xb, &mut li, 1, Some(&weight));
                b.d = f32_to_f16(d);
                for (lj, &v) in l.iter_mut().zip(&li) {
                    *lj = v as u8;
                }
                b.qh = pack_q5(&l, &mut b.qs);
            }
        }
    }
}

/// Q5_1 as ggml's `quantize_q5_1`: min/max reference (no clamp to 31, as in ggml), or
/// `make_qkx3_quants(…, 31, …)` with an imatrix.
pub fn quantize_row_q5_1(x: &[f32], y: &mut [BlockQ5_1], imatrix: Option<&[f32]>) {
    check_lengths(x, y.len(), imatrix);
    let mut l = [0u8; QK];
    match imatrix {
        None => {
            for (xb, b) in x.chunks_exact(QK).zip(y.iter_mut()) {
                let (min, max) = min_max(xb);
                let d = (max - min) / 31.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                b.d = f32_to_f16(d);
                b.m = f32_to_f16(min);
                for (lj, &v) in l.iter_mut().zip(xb) {
                    *lj = ((v - min) * id + 0.5) as u8;
                }
                b.qh = pack_q5(&l, &mut b.qs);
            }
        }
        Some(qw) => {
            let sigma2 = row_sigma2(x);
            let mut weight = [0.0f32; QK];
            let mut laux = [0u8; QK];
            for ((xb, qb), b) in x
                .chunks_exact(QK)
                .zip(qw.chunks_exact(QK))
                .zip(y.iter_mut())
            {
                block_weights(xb, qb, sigma2, &mut weight);
                let mut min = 0.0f32;
                let d = make_qkx3_quants(
                    QK,
                    31,
                    xb,
                    Some(&weight),
                    &mut l,
                    &mut min,
                    &mut laux,
                    -0.9,
                    0.05,
                    36,
                    false,
                );
                b.d = f32_to_f16(d);
                b.m = f32_to_f16(-min);
                b.qh = pack_q5(&l, &mut b.qs);
            }
        }
    }
}

/// Q8_0 as ggml's `quantize_q8_0`: always the reference (`roundf(x / (amax/127))`); the
/// importance matrix is accepted for a uniform signature and ignored, as ggml ignores it.
pub fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0], imatrix: Option<&[f32]>) {
    check_lengths(x, y.len(), imatrix);
    for (xb, b) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let mut amax = 0.0f32;
        for &v in xb {
            amax = if amax > v.abs() { amax } else { v.abs() };
        }
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f32_to_f16(d);
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = (v * id).round() as i8;
        }
    }
}

/// Panics unless `y` holds 32 values per block of `x` (a programming error in the caller).
fn check_out(blocks: usize, y: &[f32]) {
    assert_eq!(y.len(), blocks * QK, "output needs 32 values per block");
}

/// ggml's `dequantize_row_q4_0`: `(nibble - 8) * d`.
pub fn dequantize_row_q4_0(x: &[BlockQ4_0], y: &mut [f32]) {
    check_out(x.len(), y);
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        for j in 0..QK / 2 {
            let x0 = (b.qs[j] & 0x0f) as i32 - 8;
            let x1 = (b.qs[j] >> 4) as i32 - 8;
            yb[j] = x0 as f32 * d;
            yb[j + QK / 2] = x1 as f32 * d;
        }
    }
}

/// ggml's `dequantize_row_q4_1`: `nibble * d + m` (two roundings, no FMA).
pub fn dequantize_row_q4_1(x: &[BlockQ4_1], y: &mut [f32]) {
    check_out(x.len(), y);
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        let m = f16_to_f32(b.m);
        for j in 0..QK / 2 {
            let x0 = (b.qs[j] & 0x0f) as i32;
            let x1 = (b.qs[j] >> 4) as i32;
            yb[j] = x0 as f32 * d + m;
            yb[j + QK / 2] = x1 as f32 * d + m;
        }
    }
}

/// The 5-bit level of element `j` and `j + 16` of a Q5 block, as ggml extracts them.
fn q5_levels(qs: &[u8; QK / 2], qh: u32, j: usize) -> (i32, i32) {
    let xh0 = (((qh >> j) << 4) & 0x10) as u8;
    let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
    (((qs[j] & 0x0f) | xh0) as i32, ((qs[j] >> 4) | xh1) as i32)
}

/// ggml's `dequantize_row_q5_0`: `(level - 16) * d`.
pub fn dequantize_row_q5_0(x: &[BlockQ5_0], y: &mut [f32]) {
    check_out(x.len(), y);
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        let qh = u32::from_le_bytes(b.qh);
        for j in 0..QK / 2 {
            let (x0, x1) = q5_levels(&b.qs, qh, j);
            yb[j] = (x0 - 16) as f32 * d;
            yb[j + QK / 2] = (x1 - 16) as f32 * d;
        }
    }
}

/// ggml's `dequantize_row_q5_1`: `level * d + m`.
pub fn dequantize_row_q5_1(x: &[BlockQ5_1], y: &mut [f32]) {
    check_out(x.len(), y);
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        let m = f16_to_f32(b.m);
        let qh = u32::from_le_bytes(b.qh);
        for j in 0..QK / 2 {
            let (x0, x1) = q5_levels(&b.qs, qh, j);
            yb[j] = x0 as f32 * d + m;
            yb[j + QK / 2] = x1 as f32 * d + m;
        }
    }
}

/// ggml's `dequantize_row_q8_0`: `q * d`.
pub fn dequantize_row_q8_0(x: &[BlockQ8_0], y: &mut [f32]) {
    check_out(x.len(), y);
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        for (o, &q) in yb.iter_mut().zip(&b.qs) {
            *o = q as f32 * d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytemuck::Zeroable;

    #[test]
    fn q4_0_uses_signed_max_and_truncation() {
        // max = -16 (first largest |x|) → d = 2, levels = trunc(x/2 + 8.5) clamped to 15.
        let mut x = [0.0f32; QK];
        x[0] = -16.0;
        x[1] = 16.0;
        x[2] = 3.0; // 1.5 + 8.5 = 10.0 → 10
        x[3] = 2.9; // 1.45 + 8.5 = 9.95 → 9
        let mut y = [BlockQ4_0::default()];
        quantize_row_q4_0(&x, &mut y, None);
        assert_eq!(f16_to_f32(y[0].d), 2.0);
        assert_eq!(y[0].qs[0] & 0xf, 0);
        assert_eq!(y[0].qs[1] & 0xf, 15);
        assert_eq!(y[0].qs[2] & 0xf, 10);
        assert_eq!(y[0].qs[3] & 0xf, 9);
        let mut back = [0.0f32; QK];
        dequantize_row_q4_0(&y, &mut back);
        assert_eq!(back[0], -16.0);
        assert_eq!(back[1], 14.0);
    }

    #[test]
    fn q8_0_rounds_half_away_from_zero() {
        // amax = 127 → d = 1, id = 1: 0.5 → 1 and -2.5 → -3 under roundf.
        let mut x = [0.0f32; QK];
        x[0] = 127.0;
        x[1] = 0.5;
        x[2] = -2.5;
        let mut y = [BlockQ8_0::zeroed()];
        quantize_row_q8_0(&x, &mut y, None);
        assert_eq!(&y[0].qs[..3], &[127, 1, -3]);
    }

    #[test]
    fn q5_round_trip_is_close() {
        // Both steps are about 0.2. Q5_1 keeps every value within half a step (plus the fp16
        // rounding of d and m); symmetric Q5_0 maps the first extreme (-3.15) exactly and clips
        // the opposite one (+3.15) to level 31, one full step short.
        let x: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 64) as f32 - 31.5) * 0.1)
            .collect();
        let mut a = [BlockQ5_0::default(); 2];
        let mut b = [BlockQ5_1::default(); 2];
        quantize_row_q5_0(&x, &mut a, None);
        quantize_row_q5_1(&x, &mut b, None);
        let mut ya = vec![0.0f32; 64];
        let mut yb = vec![0.0f32; 64];
        dequantize_row_q5_0(&a, &mut ya);
        dequantize_row_q5_1(&b, &mut yb);
        for i in 0..64 {
            assert!(
                (ya[i] - x[i]).abs() <= 0.2,
                "q5_0 {i}: {} vs {}",
                ya[i],
                x[i]
            );
            assert!(
                (yb[i] - x[i]).abs() <= 0.11,
                "q5_1 {i}: {} vs {}",
                yb[i],
                x[i]
            );
        }
    }
}
