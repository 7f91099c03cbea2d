//! Scalar numerics shared by every ggml quantizer, mirrored exactly (`ggml-impl.h`,
//! `ggml-quants.c`): fp16/bf16 conversions and ggml's `nearest_int`.

use half::{bf16, f16};

/// fp16 bits to f32 (exact).
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    f16::from_bits(h).to_f32()
}

/// f32 to fp16 bits as `ggml_compute_fp32_to_fp16` does: round to nearest even; NaN keeps its
/// sign and becomes the quiet NaN 0x7E00.
#[inline]
pub fn f32_to_f16(x: f32) -> u16 {
    if x.is_nan() {
        return 0x7e00 | ((x.to_bits() >> 16) as u16 & 0x8000);
    }
    f16::from_f32(x).to_bits()
}

/// bf16 bits to f32 (exact).
#[inline]
pub fn bf16_to_f32(h: u16) -> f32 {
    bf16::from_bits(h).to_f32()
}

/// f32 to bf16 bits as ggml does: round to nearest even, NaN to a quiet NaN with the sign kept.
#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}

/// `1.5·2^23`: added to an f32 of magnitude below `2^22`, it leaves the nearest integer (ties
/// to even) in the low mantissa bits, ggml's `nearest_int` trick.
pub(crate) const ROUND_MAGIC: f32 = 12_582_912.0;

/// ggml's `nearest_int`: round half to even through the `ROUND_MAGIC` (`1.5·2^23`) trick;
/// valid for |f| ≤ 4194303.
#[inline]
pub fn nearest_int(f: f32) -> i32 {
    let v = f + ROUND_MAGIC;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-2.6), -3);
    }

    #[test]
    fn half_conversions() {
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(f32::NAN), 0x7e00);
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
    }
}
