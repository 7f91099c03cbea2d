//! Rotary position tables, computed the way transformers does in float32.
//!
//! Sliding layers use the default RoPE over the whole head; full layers use "proportional" RoPE:
//! only the first `partial_rotary_factor * hd / 2` frequency pairs rotate, their exponent
//! denominator is the full head dim, and the remaining pairs get frequency 0 (cos 1, sin 0,
//! which passes values through bit-exactly). Pairing is half-split (`i` with `i + hd/2`).

use convert::RopeParams;
use rayon::prelude::*;

use crate::error::{Result, VerifyError};

/// cos/sin per position and frequency pair: `[T, hd/2]` each.
pub struct RopeTable {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    /// Builds the table for positions `0..t` of a layer with head dim `hd`.
    pub fn new(params: &RopeParams, hd: usize, t: usize) -> Result<Self> {
        let inv_freq = convert::rope::rope_inv_freq(params, hd).map_err(VerifyError::Input)?;
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(t * half);
        let mut sin = Vec::with_capacity(t * half);
        for pos in 0..t {
            for &f in &inv_freq {
                let angle = (pos as f32 * f) as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Ok(RopeTable { half, cos, sin })
    }

    /// Rotates `x` laid out `[T, heads, hd]` in place: `x*cos + rotate_half(x)*sin`, each
    /// product rounded to f32 before the sum, like torch. Positions are independent, so they
    /// run in parallel (at least [`crate::ops::MIN_ROWS`] per task) without changing a bit.
    pub fn apply(&self, x: &mut [f32], heads: usize) {
        let hd = 2 * self.half;
        if hd == 0 || heads == 0 {
            return;
        }
        x.par_chunks_mut(heads * hd)
            .enumerate()
            .with_min_len(crate::ops::MIN_ROWS)
            .for_each(|(pos, row)| {
                let cos = &self.cos[pos * self.half..(pos + 1) * self.half];
                let sin = &self.sin[pos * self.half..(pos + 1) * self.half];
                for head in row.chunks_mut(hd) {
                    let (a, b) = head.split_at_mut(self.half);
                    for i in 0..self.half {
                        let (x1, x2) = (a[i], b[i]);
                        let c1 = x1 * cos[i];
                        let s1 = x2 * sin[i];
                        let c2 = x2 * cos[i];
                        let s2 = x1 * sin[i];
                        a[i] = c1 - s1;
                        b[i] = c2 + s2;
                    }
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use convert::RopeType;

    fn params(rope_type: RopeType, theta: f64, partial: f64) -> RopeParams {
        RopeParams {
            theta,
            partial_rotary_factor: partial,
            rope_type,
        }
    }

    #[test]
    fn position_zero_is_identity_and_norm_is_kept() {
        let t = RopeTable::new(&params(RopeType::Default, 1e4, 1.0), 8, 3).unwrap();
        let orig: Vec<f32> = (0..24).map(|i| i as f32 * 0.1 - 1.0).collect();
        let mut x = orig.clone();
        t.apply(&mut x, 1);
        assert_eq!(&x[..8], &orig[..8]);
        for p in 1..3 {
            let n0: f32 = orig[p * 8..p * 8 + 8].iter().map(|v| v * v).sum();
            let n1: f32 = x[p * 8..p * 8 + 8].iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() < 1e-5);
        }
    }

    #[test]
    fn proportional_rotates_only_leading_pairs() {
        // hd 16, factor 0.25 -> 2 rotated pairs of 8: dims 0,1 with 8,9.
        let t = RopeTable::new(&params(RopeType::Proportional, 1e6, 0.25), 16, 5).unwrap();
        let orig: Vec<f32> = (0..16).map(|i| i as f32 + 1.0).collect();
        let mut x = orig.repeat(5);
        t.apply(&mut x, 1);
        let last = &x[64..80];
        for d in [2usize, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15] {
            assert_eq!(last[d], orig[d], "dim {d} must pass through");
        }
        assert_ne!(last[0], orig[0]);
        assert_ne!(last[9], orig[9]);
        // pair 0 at position 4 has angle 4 (inv_freq 1)
        let (c, s) = (4f32.cos(), 4f32.sin());
        assert!((last[0] - (orig[0] * c - orig[8] * s)).abs() < 1e-5);
    }
}
