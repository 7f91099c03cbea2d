//! The AVX-512 backend of the lane searches in [`super::lanes`] and [`super::q3_lanes`]: 16
//! groups per 512-bit vector (`N / 16` vectors per row of the transposed data), where AVX2
//! holds 8. As [`super::lanes_avx2`], with mask registers in place of blend masks; plus two
//! searches only this backend has its own version of (Q3_K's weighted scale of scales,
//! [`qx16_candidates`], and one block's header scales, [`q3_scales`]).
//!
//! Everything here requires AVX-512F; [`super::lanes::Avx512`] is the token proving it is
//! present.

#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use std::arch::x86_64::*;

use super::lanes::{self, Avx512};
use super::vector::{intrinsics, Vector, MAX_GROUPS};
use crate::fp::ROUND_MAGIC;

/// The 16-lane operations of the shared searches (AVX-512F, which the token proves).
impl Vector for Avx512 {
    const LANES: usize = 16;
    type F = __m512;
    type M = __mmask16;
    type I = __m512i;
    type Row = [__m512; MAX_GROUPS / 16];
    type Ints = [i32; 16];
    type Tile = [__m512; 16];
    type Sub16 = [__m512; 1];

    /// The 14-bit `vrcp14ps` estimate is within `|q|·(2^-14 + 2^-23) < 3·10^-4` of the
    /// quotient for `|q| ≤ 4.5`.
    const RCP_CELL_TOL: f32 = 1.0 / 1024.0;

    #[inline(always)]
    fn row(self, v: __m512) -> Self::Row {
        [v; MAX_GROUPS / 16]
    }
    #[inline(always)]
    fn load(self, s: &[f32]) -> __m512 {
        let s = &s[..16];
        // SAFETY: AVX-512F (the token); `s` holds 16 readable floats and the load is unaligned.
        unsafe { _mm512_loadu_ps(s.as_ptr()) }
    }
    #[inline(always)]
    fn store(self, v: __m512, s: &mut [f32]) {
        let s = &mut s[..16];
        // SAFETY: AVX-512F (the token); `s` holds 16 writable floats and the store is unaligned.
        unsafe { _mm512_storeu_ps(s.as_mut_ptr(), v) }
    }
    #[inline(always)]
    fn to_ints(self, i: __m512i) -> [i32; 16] {
        let mut out = [0i32; 16];
        // SAFETY: AVX-512F (the token); `out` is 64 writable bytes and the store is unaligned.
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), i) };
        out
    }
    #[inline(always)]
    fn none(self) -> __mmask16 {
        0
    }
    #[inline(always)]
    fn and(self, a: __mmask16, b: __mmask16) -> __mmask16 {
        a & b
    }
    #[inline(always)]
    fn bits(self, m: __mmask16) -> u32 {
        m.into()
    }
    #[inline(always)]
    fn store_bytes(self, i: __m512i, out: &mut [i8]) {
        let out = &mut out[..16];
        // SAFETY: AVX-512F (the token); `out` is 16 writable bytes and the store is unaligned.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(i)) }
    }
    #[inline(always)]
    fn tile(self, mut f: impl FnMut(usize) -> __m512) -> [__m512; 16] {
        // A plain loop: `std::array::from_fn` would compile `f` apart from the caller's
        // instruction set, each intrinsic in it a call.
        let mut t = [self.zero(); 16];
        for (i, v) in t.iter_mut().enumerate() {
            *v = f(i);
        }
        t
    }
    #[inline(always)]
    fn sub16(self, v: __m512) -> [__m512; 1] {
        [v]
    }
    #[inline(always)]
    fn or(self, a: __mmask16, b: __mmask16) -> __mmask16 {
        a | b
    }
    #[inline(always)]
    fn and_not(self, a: __mmask16, b: __mmask16) -> __mmask16 {
        a & !b
    }
    #[inline(always)]
    fn lanes_set(self, bits: u32) -> __mmask16 {
        bits as __mmask16
    }
    #[inline(always)]
    fn shl<const S: u32>(self, i: __m512i) -> __m512i {
        // SAFETY: the token proves the CPU has the instruction set.
        unsafe { _mm512_slli_epi32::<S>(i) }
    }
    #[inline(always)]
    fn shr<const S: u32>(self, i: __m512i) -> __m512i {
        // SAFETY: the token proves the CPU has the instruction set.
        unsafe { _mm512_srli_epi32::<S>(i) }
    }
    #[inline(always)]
    fn to_f16(self, f: __m512, bits: &mut [u16]) -> __m512 {
        let bits = &mut bits[..16];
        // SAFETY: AVX-512F (the token); `bits` is 32 writable bytes and the store is unaligned.
        unsafe {
            let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(f);
            _mm256_storeu_si256(bits.as_mut_ptr().cast(), h);
            _mm512_cvtph_ps(h)
        }
    }
    intrinsics! {
        nearest(v: __m512) -> __m512i {
            let t = _mm512_castps_si512(_mm512_add_ps(v, _mm512_set1_ps(ROUND_MAGIC)));
            _mm512_sub_epi32(
                _mm512_and_si512(t, _mm512_set1_epi32(0x007f_ffff)),
                _mm512_set1_epi32(0x0040_0000),
            )
        }
        low_byte(i: __m512i) -> __m512i { _mm512_srai_epi32::<24>(_mm512_slli_epi32::<24>(i)) }
        clamp_i(i: __m512i, lo: i32, hi: i32) -> __m512i {
            _mm512_min_epi32(_mm512_max_epi32(i, _mm512_set1_epi32(lo)), _mm512_set1_epi32(hi))
        }
        and_i(i: __m512i, c: i32) -> __m512i { _mm512_and_si512(i, _mm512_set1_epi32(c)) }
        or_i(a: __m512i, b: __m512i) -> __m512i { _mm512_or_si512(a, b) }
        ge(a: __m512, b: __m512) -> __mmask16 { _mm512_cmp_ps_mask::<_CMP_GE_OQ>(a, b) }
        rcp(a: __m512) -> __m512 { _mm512_rcp14_ps(a) }
        to_i(f: __m512) -> __m512i { _mm512_cvtps_epi32(f) }
        lane_at(s: [__m512; 1], at: u32, default: f32) -> f32 {
            _mm512_cvtss_f32(_mm512_mask_compress_ps(_mm512_set1_ps(default), at as __mmask16, s[0]))
        }
        products_gt_exact(a: __m512, b: __m512, c: __m512, d: __m512) -> __mmask16 {
            products_gt_f64(a, b, c, d)
        }
        transpose(t: [__m512; 16]) -> [__m512; 16] { transpose_regs(t) }
        cast_i(f: __m512) -> __m512i { _mm512_castps_si512(f) }
        splat(v: f32) -> __m512 { _mm512_set1_ps(v) }
        add(a: __m512, b: __m512) -> __m512 { _mm512_add_ps(a, b) }
        sub(a: __m512, b: __m512) -> __m512 { _mm512_sub_ps(a, b) }
        mul(a: __m512, b: __m512) -> __m512 { _mm512_mul_ps(a, b) }
        div(a: __m512, b: __m512) -> __m512 { _mm512_div_ps(a, b) }
        min(a: __m512, b: __m512) -> __m512 { _mm512_min_ps(a, b) }
        max(a: __m512, b: __m512) -> __m512 { _mm512_max_ps(a, b) }
        abs(a: __m512) -> __m512 { _mm512_abs_ps(a) }
        neg(a: __m512) -> __m512 { _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_set1_epi32(i32::MIN))) }
        lt(a: __m512, b: __m512) -> __mmask16 { _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b) }
        gt(a: __m512, b: __m512) -> __mmask16 { _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, b) }
        eq(a: __m512, b: __m512) -> __mmask16 { _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(a, b) }
        le(a: __m512, b: __m512) -> __mmask16 { _mm512_cmp_ps_mask::<_CMP_LE_OQ>(a, b) }
        ne(a: __m512, b: __m512) -> __mmask16 { _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(a, b) }
        sel(m: __mmask16, t: __m512, f: __m512) -> __m512 { _mm512_mask_blend_ps(m, f, t) }
        to_f(i: __m512i) -> __m512 { _mm512_cvtepi32_ps(i) }
        add_i(i: __m512i, c: i32) -> __m512i { _mm512_add_epi32(i, _mm512_set1_epi32(c)) }
        zero_where(m: __mmask16, i: __m512i) -> __m512i { _mm512_maskz_mov_epi32(!m, i) }
        round_clamp(v: __m512, lo: i32, hi: i32) -> __m512i {
            let t = _mm512_castps_si512(_mm512_add_ps(v, _mm512_set1_ps(ROUND_MAGIC)));
            let i = _mm512_sub_epi32(
                _mm512_and_si512(t, _mm512_set1_epi32(0x007f_ffff)),
                _mm512_set1_epi32(0x0040_0000),
            );
            _mm512_min_epi32(_mm512_max_epi32(i, _mm512_set1_epi32(lo)), _mm512_set1_epi32(hi))
        }
    }
}

lanes::search_entries!(Avx512, "avx512f");

/// [`Vector::products_gt_exact`]: the products in f64, where they are exact (24 + 24 bits),
/// each rounded as f32 would round it ([`f32_rounded`]), eight lanes at a time.
#[inline]
#[target_feature(enable = "avx512f")]
fn products_gt_f64(a: __m512, b: __m512, c: __m512, d: __m512) -> __mmask16 {
    let mut out: __mmask16 = 0;
    for h in 0..2 {
        let half = |v: __m512| -> __m512d {
            let bits = _mm512_castps_si512(v);
            let part = if h == 0 {
                _mm512_castsi512_si256(bits)
            } else {
                _mm512_extracti64x4_epi64::<1>(bits)
            };
            _mm512_cvtps_pd(_mm256_castsi256_ps(part))
        };
        let p1 = f32_rounded(_mm512_mul_pd(half(a), half(b)));
        let p2 = f32_rounded(_mm512_mul_pd(half(c), half(d)));
        out |= (_mm512_cmp_pd_mask::<_CMP_GT_OQ>(p1, p2) as u16) << (8 * h);
    }
    out
}

/// `p` (an exact product of two f32 values, in f64) rounded as an f32 multiplication rounds it,
/// denormal range included, as an exact f64; no f32 denormal is formed on the way.
#[inline]
#[target_feature(enable = "avx512f")]
fn f32_rounded(p: __m512d) -> __m512d {
    let tiny = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(
        _mm512_abs_pd(p),
        _mm512_set1_pd(f64::from(f32::MIN_POSITIVE)),
    );
    let normal = _mm512_cvtps_pd(_mm512_cvtpd_ps(_mm512_mask_mov_pd(
        p,
        tiny,
        _mm512_set1_pd(1.0),
    )));
    // Multiples of 2^-149, the f32 denormal spacing; both scalings are exact.
    let (up, down) = (
        _mm512_set1_pd(f64::from_bits((1023 + 149) << 52)),
        _mm512_set1_pd(f64::from_bits((1023 - 149) << 52)),
    );
    let steps = _mm512_roundscale_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_pd(p, up),
    );
    let denormal = _mm512_mul_pd(steps, down);
    _mm512_mask_blend_pd(tiny, normal, denormal)
}

/// [`super::lanes::qx16_candidates`] with the candidates' sums in the lanes of two vectors
/// (19 candidates, 32 lanes), each lane adding the 16 values in order as the scalar loop does;
/// the comparison in ggml's order is the shared scalar one.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn qx16_candidates(x: &[f32; 16], w: &[f32; 16], nmax: i32, l: &mut [i8; 16]) -> f32 {
    let vx = Avx512::within();
    use super::lanes::{qx16_iscales, qx16_pick, QX16_LANES};
    let Some(iscale) = qx16_iscales(x, nmax) else {
        *l = [0; 16];
        return 0.0;
    };
    let iv = [vx.ld(&iscale, 0), vx.ld(&iscale, 1)];
    let zero = _mm512_setzero_ps();
    let (mut sx, mut s2) = ([zero; 2], [zero; 2]);
    for i in 0..16 {
        let (xv, wv, wx) = (vx.splat(x[i]), vx.splat(w[i]), vx.splat(w[i] * x[i]));
        for h in 0..2 {
            let li = vx.round_clamp_f(_mm512_mul_ps(iv[h], xv), -nmax, nmax - 1);
            sx[h] = _mm512_add_ps(sx[h], _mm512_mul_ps(wx, li));
            s2[h] = _mm512_add_ps(s2[h], _mm512_mul_ps(_mm512_mul_ps(wv, li), li));
        }
    }
    let (mut sumlx, mut suml2) = ([0f32; QX16_LANES], [0f32; QX16_LANES]);
    for h in 0..2 {
        vx.st(&mut sumlx, h, sx[h]);
        vx.st(&mut suml2, h, s2[h]);
    }
    qx16_pick(x, nmax, &iscale, &sumlx, &suml2, l)
}

/// [`super::q3k::q3_scales`] on one vector: the largest |scale| as an integer maximum of the
/// bit patterns (which order like the values; NaN lanes count as zero, as ggml's `>` skips
/// them) and its first lane, then the sixteen roundings side by side.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn q3_scales(scales: &[f32; 16]) -> Option<([i32; 16], f32)> {
    let vx = Avx512::within();
    let s = vx.ld(scales, 0);
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(s, s);
    let bits = _mm512_maskz_mov_epi32(!nan, _mm512_castps_si512(vx.abs(s)));
    let top = _mm512_reduce_max_epu32(bits);
    if top == 0 {
        return None;
    }
    let first = _mm512_cmpeq_epi32_mask(bits, _mm512_set1_epi32(top as i32)).trailing_zeros();
    let iscale = -32.0 / scales[first as usize];
    let levels = super::q3_lanes::scale_levels(vx, vx.splat(iscale), s);
    Some((vx.to_ints(levels), 1.0 / iscale))
}

/// A 16×16 transpose in registers (`out[i]` lane `j` = `r[j]` lane `i`), in the usual four
/// stages of 16 shuffles: 32-bit and 64-bit interleaves within 128-bit lanes, then two rounds
/// of 128-bit lane shuffles.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose_regs(r: [__m512; 16]) -> [__m512; 16] {
    let mut t = [_mm512_setzero_ps(); 16];
    for k in 0..8 {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    // u[4m + c], 128-bit lane L: rows 4m..4m+4 of column c + 4L.
    let mut u = [_mm512_setzero_ps(); 16];
    for m in 0..4 {
        let pd = |v: __m512| _mm512_castps_pd(v);
        let (t0, t1, t2, t3) = (
            pd(t[4 * m]),
            pd(t[4 * m + 1]),
            pd(t[4 * m + 2]),
            pd(t[4 * m + 3]),
        );
        u[4 * m] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        u[4 * m + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        u[4 * m + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        u[4 * m + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    let mut out = [_mm512_setzero_ps(); 16];
    for c in 0..4 {
        let even01 = _mm512_shuffle_f32x4::<0x88>(u[c], u[4 + c]);
        let odd01 = _mm512_shuffle_f32x4::<0xDD>(u[c], u[4 + c]);
        let even23 = _mm512_shuffle_f32x4::<0x88>(u[8 + c], u[12 + c]);
        let odd23 = _mm512_shuffle_f32x4::<0xDD>(u[8 + c], u[12 + c]);
        out[c] = _mm512_shuffle_f32x4::<0x88>(even01, even23);
        out[c + 4] = _mm512_shuffle_f32x4::<0x88>(odd01, odd23);
        out[c + 8] = _mm512_shuffle_f32x4::<0xDD>(even01, even23);
        out[c + 12] = _mm512_shuffle_f32x4::<0xDD>(odd01, odd23);
    }
    out
}
