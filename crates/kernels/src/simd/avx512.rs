//! The AVX-512 path (avx512f + avx512bw + avx512vl + avx512vnni on top of the AVX2 set). As in
//! ggml-cpu, the quantized kernels keep their 256-bit shape and gain VNNI: the u8 × i8 → i32
//! sums use one `vpdpbusd` instead of `maddubs` + `madd`. The float formats (F32, F16, BF16)
//! use full 512-bit registers for both dequantization and dot products.
//!
//! A CPU with AVX-512F/BW but without VNNI (Skylake-X) is not offered this path; it runs the
//! AVX2 one, which is what ggml's build for that CPU does for these kernels too.

use std::arch::x86_64::*;

use crate::simd::scalar;
use crate::GgmlType;

/// The shared x86 kernel bodies compiled for the AVX-512 + VNNI feature set.
pub(crate) mod k256 {
    x86_kernels!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni");

    /// u8 × i8 products summed four to an i32 lane and added to `acc` in one VNNI `vpdpbusd`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    fn mul_sum_us8_pairs(acc: __m256i, ax: __m256i, sy: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, ax, sy)
    }

    /// i16 × i16 products summed two to an i32 lane and added to `acc` in one VNNI
    /// `vpdpwssd` (non-saturating: the same wrapping sum as `madd` then `add`, one uop fewer
    /// per 32 values in the K-quant loops).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    fn madd_acc(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_dpwssd_epi32(acc, a, b)
    }

    /// The 32 bits of the u32 at `off` as 32 bytes, 0xFF where the bit is set: the bits go
    /// straight into a mask register (`kmovd`) and out as bytes (`vpmovm2b`), where AVX2 needs
    /// a broadcast, a shuffle, an or and a compare.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    fn bits32(b: &[u8], off: usize) -> __m256i {
        _mm256_movm_epi8(_cvtu32_mask32(u32_at(b, off)))
    }
}

/// Dequantizes whole blocks of `ty` (lengths checked by the dispatcher).
///
/// # Safety
/// The CPU must support avx2, fma, f16c, avx512f, avx512bw, avx512vl and avx512vnni.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn dequantize(ty: GgmlType, x: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F16 => {
            let mut xc = x.chunks_exact(32);
            let mut oc = out.chunks_exact_mut(16);
            for (b, y) in (&mut xc).zip(&mut oc) {
                store16(y, _mm512_cvtph_ps(load256(b)));
            }
            scalar::dequantize(ty, xc.remainder(), oc.into_remainder());
        }
        GgmlType::BF16 => {
            let mut xc = x.chunks_exact(32);
            let mut oc = out.chunks_exact_mut(16);
            for (b, y) in (&mut xc).zip(&mut oc) {
                let w = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(load256(b)));
                store16(y, _mm512_castsi512_ps(w));
            }
            scalar::dequantize(ty, xc.remainder(), oc.into_remainder());
        }
        // SAFETY: this function's features are the ones `k256` is compiled for.
        _ => unsafe { k256::dequantize(ty, x, out) },
    }
}

/// Dot product of weight blocks `x` with activation blocks `y` (lengths checked by the
/// dispatcher).
///
/// # Safety
/// The CPU must support avx2, fma, f16c, avx512f, avx512bw, avx512vl and avx512vnni.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn vec_dot(ty: GgmlType, x: &[u8], y: &[u8]) -> f32 {
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => dot_float(ty, x, y),
        // SAFETY: this function's features are the ones `k256` is compiled for.
        _ => unsafe { k256::vec_dot(ty, x, y) },
    }
}

/// Dot products of consecutive weight rows (`row_bytes` each, one per value of `out`) with one
/// activation row (lengths checked by the dispatcher); bit-identical to [`vec_dot`] per row.
///
/// # Safety
/// The CPU must support avx2, fma, f16c, avx512f, avx512bw, avx512vl and avx512vnni.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn vec_dot_rows(ty: GgmlType, x: &[u8], row_bytes: usize, y: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
            for (o, w) in out.iter_mut().zip(x.chunks_exact(row_bytes.max(1))) {
                *o = dot_float(ty, w, y);
            }
        }
        // SAFETY: this function's features are the ones `k256` is compiled for.
        _ => unsafe { k256::vec_dot_rows(ty, x, row_bytes, y, out) },
    }
}

/// 16 values of a float format at byte offset `off`, widened to f32.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn load16(ty: GgmlType, b: &[u8], off: usize) -> __m512 {
    match ty {
        GgmlType::F32 => {
            let s = &b[off..off + 64];
            // SAFETY: `s` holds 64 readable bytes; the load is unaligned.
            unsafe { _mm512_loadu_ps(s.as_ptr().cast()) }
        }
        GgmlType::F16 => _mm512_cvtph_ps(load256(&b[off..])),
        _ => {
            let h = load256(&b[off..]);
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        }
    }
}

/// The first 32 bytes of `b`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn load256(b: &[u8]) -> __m256i {
    let s = &b[..32];
    // SAFETY: `s` holds 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
}

/// Writes 16 floats to `out[..16]`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn store16(out: &mut [f32], v: __m512) {
    let s = &mut out[..16];
    // SAFETY: `s` holds 16 writable floats; the store is unaligned.
    unsafe { _mm512_storeu_ps(s.as_mut_ptr(), v) }
}

/// F32/F16/BF16 dot: four 16-lane FMA accumulators over 64 values at a time, the tail by the
/// scalar loop.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn dot_float(ty: GgmlType, x: &[u8], y: &[u8]) -> f32 {
    let step = 64 * ty.type_size();
    let lane = 16 * ty.type_size();
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut xc = x.chunks_exact(step);
    let mut yc = y.chunks_exact(step);
    for (a, b) in (&mut xc).zip(&mut yc) {
        for (k, s) in acc.iter_mut().enumerate() {
            *s = _mm512_fmadd_ps(load16(ty, a, lane * k), load16(ty, b, lane * k), *s);
        }
    }
    let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    _mm512_reduce_add_ps(s) + scalar::vec_dot(ty, xc.remainder(), yc.remainder())
}
