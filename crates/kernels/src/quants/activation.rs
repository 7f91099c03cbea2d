//! Activation quantizers: the formats the *other* operand of a quantized dot product is
//! converted to (ggml-cpu's `vec_dot_type`): Q8_0 for Q4_0/Q5_0/Q8_0/IQ4_NL weights, Q8_1 for
//! Q4_1/Q5_1, Q8_K for the K-quants and IQ4_XS. They never appear in model files.
//!
//! Rounding differs by path in ggml: the x86 AVX/AVX2 `quantize_row_q8_0` and
//! `quantize_row_q8_1` of ggml-cpu scale by `id = 127 / amax` and round half to EVEN
//! (`_mm256_round_ps(_MM_ROUND_NEAREST)`, the same as NEON's `vcvtnq_s32_f32`), while the
//! scalar references use `id = 1 / (amax / 127)` and `roundf` (half AWAY from zero). We
//! reproduce the x86 path for dot products ([`quantize_row_q8_0_act`], [`quantize_row_q8_1`]),
//! keep the reference Q8_1 ([`quantize_row_q8_1_ref`]) for completeness, and Q8_K is the
//! scalar reference on every ggml path.

use crate::blocks::{BlockQ8K, BlockQ8_0, BlockQ8_1, QK, QK_K};
use crate::fp::{f16_to_f32, f32_to_f16, nearest_int};

/// `cvtps_epi32` of an already rounded value followed by the saturating `packs` to i8: NaN
/// (the "integer indefinite" 0x80000000) and anything below -128 become -128.
#[inline]
fn saturate_i8(v: f32) -> i8 {
    if v.is_nan() {
        i8::MIN
    } else {
        v.clamp(-128.0, 127.0) as i8
    }
}

/// The block scale and per-value factor of ggml-cpu's x86 Q8_0/Q8_1 path.
#[inline]
fn x86_scale(xb: &[f32]) -> (f32, f32) {
    let mut amax = 0.0f32;
    for &v in xb {
        amax = amax.max(v.abs());
    }
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    (d, id)
}

fn check(x: &[f32], per_block: usize, blocks: usize) {
    assert!(
        x.len().is_multiple_of(per_block) && x.len() / per_block == blocks,
        "{} values need {} blocks, got {blocks}",
        x.len(),
        x.len() / per_block
    );
}

/// Q8_0 activations as ggml-cpu's x86 AVX/AVX2 `quantize_row_q8_0`:
/// `d = fp16(amax/127)`, `q = round_half_even(x * (127/amax))`.
pub fn quantize_row_q8_0_act(x: &[f32], y: &mut [BlockQ8_0]) {
    check(x, QK, y.len());
    for (xb, b) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let (d, id) = x86_scale(xb);
        b.d = f32_to_f16(d);
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = saturate_i8((v * id).round_ties_even());
        }
    }
}

/// Q8_1 activations as ggml-cpu's x86 AVX/AVX2 `quantize_row_q8_1`: Q8_0's x86 rounding plus
/// `s = fp16(d * Σq)` with the sum taken in integers.
pub fn quantize_row_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    check(x, QK, y.len());
    for (xb, b) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let (d, id) = x86_scale(xb);
        b.d = f32_to_f16(d);
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = saturate_i8((v * id).round_ties_even());
            sum += *q as i32;
        }
        b.s = f32_to_f16(d * sum as f32);
    }
}

/// ggml's scalar `quantize_row_q8_1_ref`: `id = 1/d`, `roundf` (half away from zero).
pub fn quantize_row_q8_1_ref(x: &[f32], y: &mut [BlockQ8_1]) {
    check(x, QK, y.len());
    for (xb, b) in x.chunks_exact(QK).zip(y.iter_mut()) {
        let mut amax = 0.0f32;
        for &v in xb {
            amax = if amax > v.abs() { amax } else { v.abs() };
        }
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        b.d = f32_to_f16(d);
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = (v * id).round() as i8;
            sum += *q as i32;
        }
        b.s = f32_to_f16(sum as f32 * d);
    }
}

/// ggml's `quantize_row_q8_K_ref` (used by every ggml-cpu path): `iscale = -127/max` with
/// `max` the signed value of largest magnitude, `q = min(127, nearest_int(iscale*x))`,
/// `d = 1/iscale` kept in f32, and the 16-value sums in `bsums`. An all-zero block gets
/// `d = 0`, `qs = 0` and (where ggml leaves them unwritten) `bsums = 0`.
pub fn quantize_row_q8_k(x: &[f32], y: &mut [BlockQ8K]) {
    check(x, QK_K, y.len());
    for (xb, b) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut max = 0.0f32;
        let mut amax = 0.0f32;
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            b.d = 0.0;
            b.qs = [0; QK_K];
            b.bsums = [0; QK_K / 16];
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (s, qs) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = qs.iter().map(|&q| q as i16).sum();
        }
        b.d = 1.0 / iscale;
    }
}

/// Dequantizes Q8_1 as Q8_0 does (`q * d`); `s` is derived data and not needed.
pub fn dequantize_row_q8_1(x: &[BlockQ8_1], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK, "output needs 32 values per block");
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK)) {
        let d = f16_to_f32(b.d);
        for (o, &q) in yb.iter_mut().zip(&b.qs) {
            *o = q as f32 * d;
        }
    }
}

/// ggml's `dequantize_row_q8_K`: `d * q` with the f32 scale.
pub fn dequantize_row_q8_k(x: &[BlockQ8K], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K, "output needs 256 values per block");
    for (b, yb) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        for (o, &q) in yb.iter_mut().zip(&b.qs) {
            *o = b.d * q as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytemuck::Zeroable;

    #[test]
    fn act_path_rounds_half_to_even_ref_path_away() {
        // amax = 127 → id = 1 on both paths; 2.5 → 2 (x86) vs 3 (ref).
        let mut x = [0.0f32; QK];
        x[0] = 127.0;
        x[1] = 2.5;
        x[2] = -0.5;
        let mut a = [BlockQ8_0::zeroed()];
        quantize_row_q8_0_act(&x, &mut a);
        assert_eq!(&a[0].qs[..3], &[127, 2, 0]);
        let mut r = [BlockQ8_1::zeroed()];
        quantize_row_q8_1_ref(&x, &mut r);
        assert_eq!(&r[0].qs[..3], &[127, 3, -1]);
        assert_eq!(f16_to_f32(r[0].s), 129.0);
        let mut q = [BlockQ8_1::zeroed()];
        quantize_row_q8_1(&x, &mut q);
        assert_eq!(f16_to_f32(q[0].s), 129.0);
    }

    #[test]
    fn q8_k_sums_and_scale() {
        let x: Vec<f32> = (0..QK_K).map(|i| (i as f32 - 100.0) * 0.5).collect();
        let mut y = [BlockQ8K::zeroed()];
        quantize_row_q8_k(&x, &mut y);
        // The largest |x| is 77.5 (i = 255) → iscale = -127/77.5: q[255] = -127 and
        // q[0] = nearest_int(-127/77.5 * -50) = nearest_int(81.94) = 82.
        assert_eq!(y[0].qs[255], -127);
        assert_eq!(y[0].qs[0], 82);
        for g in 0..16 {
            let s: i32 = y[0].qs[16 * g..16 * g + 16].iter().map(|&q| q as i32).sum();
            assert_eq!(y[0].bsums[g] as i32, s);
        }
        let mut back = vec![0.0f32; QK_K];
        dequantize_row_q8_k(&y, &mut back);
        for (a, b) in x.iter().zip(&back) {
            assert!((a - b).abs() <= 0.5 * 77.5 / 127.0 + 1e-4);
        }
    }
}
