//! AWQ int4 matrices as a compressed-tensors `pack-quantized` folder stores them, and their
//! product as g4q's forward pass runs it on a CPU.
//!
//! Layout (the one `verify::awq_weights` reads): codes `q + 8` as nibbles, eight per u32 word
//! along the input (`[out, in/8]`), bf16 scales `[out, in/G]`, zero points `zp + 8` as nibbles
//! packed eight per u32 along the *rows* (`[ceil(out/8), in/G]`). A weight is `(q − zp) ·
//! scale`. g4q has no integer AWQ kernel (ggml has no AWQ type): its forward pass widens rows
//! to f32 and multiplies in f32, so that is what is timed, as path [`PATH_NAME`] (the widening
//! here skips verify's rounding of each weight to the scale's dtype: a timing, not a reference).

use rayon::prelude::*;

/// The path name AWQ measurements report.
pub const PATH_NAME: &str = "f32-widen";

/// Rows widened per task (the forward pass's panel height, `verify::linear::PANEL`).
const PANEL: usize = 64;

/// An AWQ int4 matrix in memory.
#[derive(Clone, Debug)]
pub struct AwqMatrix {
    rows: usize,
    cols: usize,
    group: usize,
    packed: Vec<u32>,
    scales: Vec<u16>,
    zeros: Vec<u32>,
}

fn bf16(x: f32) -> u16 {
    let b = x.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

impl AwqMatrix {
    /// Bytes a `rows × cols` matrix takes with group size `group` (codes, scales, zero
    /// points), or `None` unless `cols` is a whole number of groups and of 8-code words.
    pub fn bytes(rows: usize, cols: usize, group: usize) -> Option<usize> {
        if group == 0 || !cols.is_multiple_of(group) || !cols.is_multiple_of(8) {
            return None;
        }
        let groups = cols / group;
        let codes = rows.checked_mul(cols)? / 2;
        let scales = rows.checked_mul(groups)?.checked_mul(2)?;
        let zeros = rows.div_ceil(8).checked_mul(groups)?.checked_mul(4)?;
        codes.checked_add(scales)?.checked_add(zeros)
    }

    /// Bytes of this matrix.
    pub fn byte_len(&self) -> usize {
        self.packed.len() * 4 + self.scales.len() * 2 + self.zeros.len() * 4
    }

    /// Quantizes `seed_rows` rows of `vals` (asymmetric min/max per group, as AutoAWQ's
    /// zero-point quantizer does) and repeats them to `rows` rows.
    pub fn quantize_tiled(
        vals: &[f32],
        seed_rows: usize,
        rows: usize,
        cols: usize,
        group: usize,
    ) -> Result<AwqMatrix, String> {
        if Self::bytes(rows, cols, group).is_none() || seed_rows == 0 {
            return Err(format!(
                "{cols} columns are not whole AWQ groups of {group}"
            ));
        }
        let groups = cols / group;
        let mut m = AwqMatrix {
            rows,
            cols,
            group,
            packed: vec![0; rows * cols / 8],
            scales: vec![0; rows * groups],
            zeros: vec![0; rows.div_ceil(8) * groups],
        };
        for r in 0..rows {
            let src = &vals[(r % seed_rows) * cols..][..cols];
            for g in 0..groups {
                let v = &src[g * group..][..group];
                let lo = v.iter().copied().fold(0f32, f32::min);
                let hi = v.iter().copied().fold(0f32, f32::max);
                let scale = ((hi - lo) / 15.0).max(1e-8);
                let zp = ((-lo / scale).round() as i32 - 8).clamp(-8, 7);
                m.scales[r * groups + g] = bf16(scale);
                m.zeros[(r / 8) * groups + g] |= ((zp + 8) as u32) << (4 * (r % 8));
                for (k, x) in v.iter().enumerate() {
                    let q = ((x / scale).round() as i32 + zp).clamp(-8, 7);
                    let c = g * group + k;
                    m.packed[r * cols / 8 + c / 8] |= ((q + 8) as u32) << (4 * (c % 8));
                }
            }
        }
        Ok(m)
    }

    /// Widens row `r` to f32 into `out` (`cols` values).
    fn widen(&self, r: usize, out: &mut [f32]) {
        let groups = self.cols / self.group;
        let words = &self.packed[r * self.cols / 8..][..self.cols / 8];
        for g in 0..groups {
            let scale = from_bf16(self.scales[r * groups + g]);
            let zp = ((self.zeros[(r / 8) * groups + g] >> (4 * (r % 8))) & 15) as i32;
            let per = self.group / 8;
            for (w, o) in words[g * per..][..per]
                .iter()
                .zip(out[g * self.group..][..self.group].chunks_exact_mut(8))
            {
                for (k, o) in o.iter_mut().enumerate() {
                    let q = ((w >> (4 * k)) & 15) as i32;
                    *o = (q - zp) as f32 * scale;
                }
            }
        }
    }

    /// `y[i, r] = Σ_c W[r, c] · x[i, c]` for `t` rows of `x`; panels of rows in parallel.
    pub fn matmul(&self, x: &[f32], t: usize, y: &mut [f32]) {
        let (rows, cols) = (self.rows, self.cols);
        let mut by_row = vec![0f32; rows * t];
        by_row.par_chunks_mut(PANEL * t).enumerate().for_each_init(
            Vec::new,
            |buf: &mut Vec<f32>, (p, out)| {
                buf.resize(cols, 0.0);
                for (j, o) in out.chunks_exact_mut(t).enumerate() {
                    self.widen(p * PANEL + j, buf);
                    for (i, o) in o.iter_mut().enumerate() {
                        *o = dot(buf, &x[i * cols..][..cols]);
                    }
                }
            },
        );
        for (r, vals) in by_row.chunks_exact(t).enumerate() {
            for (i, v) in vals.iter().enumerate() {
                y[i * rows + r] = *v;
            }
        }
    }

    /// Row `r` widened (for tests).
    pub fn row(&self, r: usize) -> Vec<f32> {
        let mut v = vec![0f32; self.cols];
        self.widen(r, &mut v);
        v
    }
}

/// f32 dot product with 16 independent lanes (vectorized by the compiler).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for (ca, cb) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        for k in 0..16 {
            acc[k] += ca[k] * cb[k];
        }
    }
    let n = a.len() / 16 * 16;
    let tail: f32 = a[n..].iter().zip(&b[n..]).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_product() {
        let (rows, cols) = (20, 256);
        let vals: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 1e-3)
            .collect();
        let mut checked = 0;
        for group in [32, 64, 128] {
            let m = AwqMatrix::quantize_tiled(&vals, rows, rows, cols, group).unwrap();
            assert_eq!(m.byte_len(), AwqMatrix::bytes(rows, cols, group).unwrap());
            for r in 0..rows {
                for (a, b) in m.row(r).iter().zip(&vals[r * cols..][..cols]) {
                    // One step of a 15-step range of ±0.05 (value and zero point both round).
                    assert!((a - b).abs() < 7e-3, "group {group} row {r}: {a} vs {b}");
                    checked += 1;
                }
            }
            let x: Vec<f32> = (0..2 * cols).map(|i| (i % 7) as f32 - 3.0).collect();
            let mut y = vec![0f32; 2 * rows];
            m.matmul(&x, 2, &mut y);
            for i in 0..2 {
                for r in 0..rows {
                    let want: f32 = m
                        .row(r)
                        .iter()
                        .zip(&x[i * cols..])
                        .map(|(a, b)| a * b)
                        .sum();
                    assert!((y[i * rows + r] - want).abs() < 1e-3 * (1.0 + want.abs()));
                }
            }
        }
        assert!(AwqMatrix::bytes(4, 704, 128).is_none());
        println!("checked {checked} AWQ values");
    }
}
