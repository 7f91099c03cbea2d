//! Asymmetric group-wise int4, as compressed-tensors' W4A16_ASYM preset stores it in its
//! "pack-quantized" format: per row and group of `group`
//! input columns, `min = min(min, 0)`, `max = max(max, 0)`, `scale = (max - min) / 15`,
//! `zp = round(clamp(-8 - min / scale, -8, 7))`, `q = round(clamp(x / scale + zp, -8, 7))`
//! (round half to even, as torch.round), dequantized as `(q - zp) * scale` *in bf16*: the
//! product is rounded to bf16 as compressed-tensors' `_dequantize` computes it in the scale's
//! dtype, so the dequantized weights here, in `verify::awq_weights` and in transformers agree
//! bit for bit.
//!
//! The scale is rounded to bf16 *before* `zp` and `q` are computed, because bf16 is what the file
//! stores: every consumer (our [`verify::awq_weights`] reader, compressed-tensors, vLLM) then
//! reconstructs exactly the weights the search evaluated.
//!
//! An optional clip bound per (row, group) clamps the row to `[-c, c]` first (AWQ's clip search).
//!
//! When `group` does not divide the row, the last group of each row is shorter (`cols % group`
//! columns): the GGUF and ONNX `--awq` searches evaluate int4 at the requested group size
//! whatever the widths. compressed-tensors releases use a group that divides (see
//! [`crate::awq::plan::dividing_group`]).

use kernels::fp::{bf16_to_f32, f32_to_bf16};

/// Lowest and highest signed 4-bit codes.
pub const QMIN: f32 = -8.0;
pub const QMAX: f32 = 7.0;

/// A matrix `[rows, cols]` quantized to int4 in groups of `group` columns.
#[derive(Clone, Debug, PartialEq)]
pub struct Int4Matrix {
    pub rows: usize,
    pub cols: usize,
    pub group: usize,
    /// Codes in `[-8, 7]`, row-major `[rows, cols]`.
    pub q: Vec<i8>,
    /// bf16 bits of the scales, `[rows, cols / group]`.
    pub scale: Vec<u16>,
    /// Zero points in `[-8, 7]`, `[rows, cols / group]`.
    pub zero: Vec<i8>,
}

impl Int4Matrix {
    /// Groups per row, the last one shorter when `group` does not divide `cols`.
    pub fn groups(&self) -> usize {
        self.cols.div_ceil(self.group)
    }

    /// The dequantized matrix, row-major f32.
    pub fn dequantize(&self) -> Vec<f32> {
        let ng = self.groups();
        let mut out = vec![0f32; self.rows * self.cols];
        for r in 0..self.rows {
            for j in 0..ng {
                let s = bf16_to_f32(self.scale[r * ng + j]);
                let z = self.zero[r * ng + j] as f32;
                let base = r * self.cols + j * self.group;
                let span = base..base + self.group.min(self.cols - j * self.group);
                for (o, &q) in out[span.clone()].iter_mut().zip(&self.q[span]) {
                    *o = dequant(q as f32 - z, s);
                }
            }
        }
        out
    }
}

/// `(q - zp) · scale` rounded to bf16 (the product itself is exact in f32: 5 × 8 bits).
#[inline]
pub fn dequant(q_minus_zp: f32, scale: f32) -> f32 {
    bf16_to_f32(f32_to_bf16(q_minus_zp * scale))
}

/// Scale (as bf16 bits) and zero point of one group with range `[lo, hi]`.
pub fn group_params(lo: f32, hi: f32) -> (u16, i8) {
    let lo = lo.min(0.0);
    let hi = hi.max(0.0);
    let scale = ((hi - lo) / (QMAX - QMIN)).max(f32::EPSILON);
    let bits = f32_to_bf16(scale);
    let s = bf16_to_f32(bits);
    let zp = (QMIN - lo / s).clamp(QMIN, QMAX).round_ties_even();
    (bits, zp as i8)
}

/// Quantizes one group `x` (already clipped) into `q`; returns (scale bits, zero point).
fn quantize_group(x: &[f32], q: &mut [i8]) -> (u16, i8) {
    let (lo, hi) = x
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let (bits, zp) = group_params(lo, hi);
    let s = bf16_to_f32(bits);
    for (o, &v) in q.iter_mut().zip(x) {
        *o = (v / s + zp as f32).clamp(QMIN, QMAX).round_ties_even() as i8;
    }
    (bits, zp)
}

/// Quantizes a row-major `[rows, cols]` matrix; `clip`, when given, holds one bound per
/// (row, group) and clamps that group to `[-c, c]` first. A `group` that does not divide `cols`
/// leaves each row a shorter last group.
pub fn quantize(
    w: &[f32],
    rows: usize,
    cols: usize,
    group: usize,
    clip: Option<&[f32]>,
) -> Int4Matrix {
    debug_assert!(group > 0 && w.len() == rows * cols);
    let ng = cols.div_ceil(group);
    let mut q = vec![0i8; rows * cols];
    let mut scale = vec![0u16; rows * ng];
    let mut zero = vec![0i8; rows * ng];
    let mut buf = vec![0f32; group];
    for r in 0..rows {
        for j in 0..ng {
            let at = r * cols + j * group;
            let width = group.min(cols - j * group);
            let buf = &mut buf[..width];
            buf.copy_from_slice(&w[at..at + width]);
            if let Some(c) = clip {
                let c = c[r * ng + j];
                buf.iter_mut().for_each(|v| *v = v.clamp(-c, c));
            }
            let (s, z) = quantize_group(buf, &mut q[at..at + width]);
            scale[r * ng + j] = s;
            zero[r * ng + j] = z;
        }
    }
    Int4Matrix {
        rows,
        cols,
        group,
        q,
        scale,
        zero,
    }
}

/// Quantize-then-dequantize of one row's group with an optional clip bound, into `out`
/// (the inner step of the clip search).
pub fn fake_quant_group(x: &[f32], clip: f32, out: &mut [f32]) {
    let mut q = vec![0i8; x.len()];
    let clipped: Vec<f32> = x.iter().map(|v| v.clamp(-clip, clip)).collect();
    let (bits, zp) = quantize_group(&clipped, &mut q);
    let s = bf16_to_f32(bits);
    for (o, &c) in out.iter_mut().zip(&q) {
        *o = dequant(c as f32 - zp as f32, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_cover_the_range_and_dequantize_close() {
        let w: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) * 0.013).collect();
        let m = quantize(&w, 2, 32, 16, None);
        assert!(m.q.iter().all(|&c| (-8..=7).contains(&c)));
        assert!(m.q.contains(&-8) && m.q.contains(&7));
        let d = m.dequantize();
        for j in 0..4 {
            let s = bf16_to_f32(m.scale[j]);
            for c in 0..16 {
                let k = j * 16 + c;
                // Half a step, plus the bf16 rounding of the dequantized value.
                let tol = s * 0.5 + w[k].abs().max(d[k].abs()) / 256.0;
                assert!((d[k] - w[k]).abs() <= tol, "{k}: {} vs {}", d[k], w[k]);
            }
        }
    }

    #[test]
    fn zero_is_exact_and_all_zero_groups_stay_zero() {
        let mut w = vec![0f32; 32];
        w[3] = 0.5;
        let m = quantize(&w, 1, 32, 16, None);
        let d = m.dequantize();
        assert_eq!(d[0], 0.0);
        assert!(d[16..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn clipping_bounds_the_dequantized_range() {
        let w: Vec<f32> = (0..16).map(|i| i as f32 - 8.0).collect();
        let mut out = vec![0f32; 16];
        fake_quant_group(&w, 2.0, &mut out);
        assert!(out.iter().all(|&v| v.abs() <= 2.0 + 0.02), "{out:?}");
        let m = quantize(&w, 1, 16, 16, Some(&[2.0]));
        assert_eq!(m.dequantize(), out);
    }

    #[test]
    fn a_group_that_does_not_divide_leaves_a_short_last_group() {
        // 40 columns at group 16: groups of 16, 16 and 8 per row, each quantized on its own.
        let w: Vec<f32> = (0..80)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.07)
            .collect();
        let m = quantize(&w, 2, 40, 16, None);
        assert_eq!((m.groups(), m.scale.len(), m.zero.len()), (3, 6, 6));
        let d = m.dequantize();
        for r in 0..2 {
            for (j, (c0, c1)) in [(0, 16), (16, 32), (32, 40)].into_iter().enumerate() {
                let part = quantize(&w[r * 40 + c0..r * 40 + c1], 1, c1 - c0, c1 - c0, None);
                assert_eq!(part.scale[0], m.scale[r * 3 + j], "row {r} group {j}");
                assert_eq!(&part.dequantize()[..], &d[r * 40 + c0..r * 40 + c1]);
            }
        }
    }
}
