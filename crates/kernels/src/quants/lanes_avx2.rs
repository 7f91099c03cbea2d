//! The AVX2 backend of the lane searches in [`super::lanes`] and [`super::q3_lanes`] (8 groups
//! per 256-bit vector, `N / 8` vectors per row of the transposed data): the [`Vector`]
//! operations, with the register transpose and the f64 product comparison they use, and the
//! `#[target_feature]` entries that instantiate the shared searches. Every lane operation is
//! one vector instruction (a few for fp16 rounding) with the scalar operation's IEEE semantics
//! (see [`super::vector`]); branches become `vblendvps`.
//!
//! Everything here requires AVX2; [`super::lanes::Avx2`] is the token proving it is present.

#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use std::arch::x86_64::*;

use super::lanes::{self, Avx2};
use super::vector::{intrinsics, Vector, MAX_GROUPS};
use crate::fp::{f16_to_f32, f32_to_f16, ROUND_MAGIC};

/// The 8-lane operations of the shared searches (AVX2, which the token proves).
impl Vector for Avx2 {
    const LANES: usize = 8;
    type F = __m256;
    type M = __m256;
    type I = __m256i;
    type Row = [__m256; MAX_GROUPS / 8];
    type Ints = [i32; 8];
    type Tile = [__m256; 8];
    type Sub16 = [__m256; 2];

    /// The 12-bit `vrcpps` estimate is within `|q|·(1.5·2^-12 + 2^-23)` of the quotient, under
    /// 1.7·10^-3 for `|q| ≤ 4.5`.
    const RCP_CELL_TOL: f32 = 1.0 / 256.0;

    #[inline(always)]
    fn row(self, v: __m256) -> Self::Row {
        [v; MAX_GROUPS / 8]
    }
    #[inline(always)]
    fn load(self, s: &[f32]) -> __m256 {
        let s = &s[..8];
        // SAFETY: AVX2 (the token); `s` holds 8 readable floats and the load is unaligned.
        unsafe { _mm256_loadu_ps(s.as_ptr()) }
    }
    #[inline(always)]
    fn store(self, v: __m256, s: &mut [f32]) {
        let s = &mut s[..8];
        // SAFETY: AVX2 (the token); `s` holds 8 writable floats and the store is unaligned.
        unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) }
    }
    #[inline(always)]
    fn to_ints(self, i: __m256i) -> [i32; 8] {
        let mut out = [0i32; 8];
        // SAFETY: AVX2 (the token); `out` is 32 writable bytes and the store is unaligned.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), i) };
        out
    }
    #[inline(always)]
    fn store_bytes(self, i: __m256i, out: &mut [i8]) {
        let out = &mut out[..8];
        // SAFETY: AVX2 (the token); `out` is 8 writable bytes and the store is unaligned.
        unsafe {
            // Low bytes: pack to u16 (per 128-bit half), restore the order, pack to bytes.
            let i = _mm256_and_si256(i, _mm256_set1_epi32(0xff));
            let w = _mm256_permute4x64_epi64::<0xD8>(_mm256_packus_epi32(i, i));
            let b = _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_castsi256_si128(w));
            _mm_storel_epi64(out.as_mut_ptr().cast(), b)
        }
    }
    #[inline(always)]
    fn tile(self, f: impl FnMut(usize) -> __m256) -> [__m256; 8] {
        // Eight lanes: `std::array::from_fn` inlines here (checked with `objdump`: no intrinsic
        // is left a call), unlike the 16-lane tile, which needs a plain loop.
        std::array::from_fn(f)
    }
    #[inline(always)]
    fn sub16(self, v: __m256) -> [__m256; 2] {
        [v; 2]
    }
    #[inline(always)]
    fn lane_at(self, s: [__m256; 2], at: u32, default: f32) -> f32 {
        // Entry 16: no step.
        let mut lanes = [0f32; 24];
        self.store(s[0], &mut lanes[..8]);
        self.store(s[1], &mut lanes[8..]);
        lanes[16] = default;
        lanes[(at | 1 << 16).trailing_zeros() as usize]
    }
    #[inline(always)]
    fn shl<const S: u32>(self, i: __m256i) -> __m256i {
        // SAFETY: the token proves the CPU has the instruction set.
        unsafe { _mm256_sll_epi32(i, _mm_cvtsi32_si128(S as i32)) }
    }
    #[inline(always)]
    fn shr<const S: u32>(self, i: __m256i) -> __m256i {
        // SAFETY: the token proves the CPU has the instruction set.
        unsafe { _mm256_srl_epi32(i, _mm_cvtsi32_si128(S as i32)) }
    }
    #[inline(always)]
    fn to_f16(self, f: __m256, bits: &mut [u16]) -> __m256 {
        // The scalar conversion, lane by lane (F16C is not assumed).
        let mut v = [0f32; 8];
        self.store(f, &mut v);
        for j in 0..8 {
            bits[j] = f32_to_f16(v[j]);
        }
        let back: [f32; 8] = std::array::from_fn(|j| f16_to_f32(bits[j]));
        self.load(&back)
    }
    intrinsics! {
        nearest(v: __m256) -> __m256i {
            let t = _mm256_castps_si256(_mm256_add_ps(v, _mm256_set1_ps(ROUND_MAGIC)));
            _mm256_sub_epi32(
                _mm256_and_si256(t, _mm256_set1_epi32(0x007f_ffff)),
                _mm256_set1_epi32(0x0040_0000),
            )
        }
        low_byte(i: __m256i) -> __m256i { _mm256_srai_epi32::<24>(_mm256_slli_epi32::<24>(i)) }
        clamp_i(i: __m256i, lo: i32, hi: i32) -> __m256i {
            _mm256_min_epi32(_mm256_max_epi32(i, _mm256_set1_epi32(lo)), _mm256_set1_epi32(hi))
        }
        and_i(i: __m256i, c: i32) -> __m256i { _mm256_and_si256(i, _mm256_set1_epi32(c)) }
        or_i(a: __m256i, b: __m256i) -> __m256i { _mm256_or_si256(a, b) }
        ge(a: __m256, b: __m256) -> __m256 { _mm256_cmp_ps::<_CMP_GE_OQ>(a, b) }
        or(a: __m256, b: __m256) -> __m256 { _mm256_or_ps(a, b) }
        and_not(a: __m256, b: __m256) -> __m256 { _mm256_andnot_ps(b, a) }
        lanes_set(bits: u32) -> __m256 { lane_mask(bits) }
        rcp(a: __m256) -> __m256 { _mm256_rcp_ps(a) }
        to_i(f: __m256) -> __m256i { _mm256_cvtps_epi32(f) }
        products_gt_exact(a: __m256, b: __m256, c: __m256, d: __m256) -> __m256 {
            products_gt_f64(a, b, c, d)
        }
        transpose(t: [__m256; 8]) -> [__m256; 8] { transpose8(t) }
        bits(m: __m256) -> u32 { _mm256_movemask_ps(m) as u32 }
        cast_i(f: __m256) -> __m256i { _mm256_castps_si256(f) }
        splat(v: f32) -> __m256 { _mm256_set1_ps(v) }
        add(a: __m256, b: __m256) -> __m256 { _mm256_add_ps(a, b) }
        sub(a: __m256, b: __m256) -> __m256 { _mm256_sub_ps(a, b) }
        mul(a: __m256, b: __m256) -> __m256 { _mm256_mul_ps(a, b) }
        div(a: __m256, b: __m256) -> __m256 { _mm256_div_ps(a, b) }
        min(a: __m256, b: __m256) -> __m256 { _mm256_min_ps(a, b) }
        max(a: __m256, b: __m256) -> __m256 { _mm256_max_ps(a, b) }
        abs(a: __m256) -> __m256 { _mm256_andnot_ps(_mm256_set1_ps(-0.0), a) }
        neg(a: __m256) -> __m256 { _mm256_xor_ps(_mm256_set1_ps(-0.0), a) }
        lt(a: __m256, b: __m256) -> __m256 { _mm256_cmp_ps::<_CMP_LT_OQ>(a, b) }
        gt(a: __m256, b: __m256) -> __m256 { _mm256_cmp_ps::<_CMP_GT_OQ>(a, b) }
        eq(a: __m256, b: __m256) -> __m256 { _mm256_cmp_ps::<_CMP_EQ_OQ>(a, b) }
        le(a: __m256, b: __m256) -> __m256 { _mm256_cmp_ps::<_CMP_LE_OQ>(a, b) }
        ne(a: __m256, b: __m256) -> __m256 { _mm256_cmp_ps::<_CMP_NEQ_UQ>(a, b) }
        none() -> __m256 { _mm256_setzero_ps() }
        and(a: __m256, b: __m256) -> __m256 { _mm256_and_ps(a, b) }
        sel(m: __m256, t: __m256, f: __m256) -> __m256 { _mm256_blendv_ps(f, t, m) }
        to_f(i: __m256i) -> __m256 { _mm256_cvtepi32_ps(i) }
        add_i(i: __m256i, c: i32) -> __m256i { _mm256_add_epi32(i, _mm256_set1_epi32(c)) }
        zero_where(m: __m256, i: __m256i) -> __m256i { _mm256_andnot_si256(_mm256_castps_si256(m), i) }
        round_clamp(v: __m256, lo: i32, hi: i32) -> __m256i {
            let t = _mm256_castps_si256(_mm256_add_ps(v, _mm256_set1_ps(ROUND_MAGIC)));
            let i = _mm256_sub_epi32(
                _mm256_and_si256(t, _mm256_set1_epi32(0x007f_ffff)),
                _mm256_set1_epi32(0x0040_0000),
            );
            _mm256_min_epi32(_mm256_max_epi32(i, _mm256_set1_epi32(lo)), _mm256_set1_epi32(hi))
        }
    }
}

lanes::search_entries!(Avx2, "avx2");

/// An 8×8 transpose in registers (`out[i]` lane `j` = `r[j]` lane `i`): 32-bit interleaves,
/// 64-bit shuffles within 128-bit lanes, then 128-bit lane swaps.
#[inline]
#[target_feature(enable = "avx2")]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let t: [__m256; 8] = std::array::from_fn(|k| {
        let (a, b) = (r[2 * (k / 2)], r[2 * (k / 2) + 1]);
        if k % 2 == 0 {
            _mm256_unpacklo_ps(a, b)
        } else {
            _mm256_unpackhi_ps(a, b)
        }
    });
    // u[4h + c], 128-bit half L: rows 4h..4h+4 of element c + 4L.
    let mut u = [_mm256_setzero_ps(); 8];
    for h in 0..2 {
        let (t0, t1, t2, t3) = (t[4 * h], t[4 * h + 1], t[4 * h + 2], t[4 * h + 3]);
        u[4 * h] = _mm256_shuffle_ps::<0x44>(t0, t2);
        u[4 * h + 1] = _mm256_shuffle_ps::<0xEE>(t0, t2);
        u[4 * h + 2] = _mm256_shuffle_ps::<0x44>(t1, t3);
        u[4 * h + 3] = _mm256_shuffle_ps::<0xEE>(t1, t3);
    }
    std::array::from_fn(|e| {
        let c = e % 4;
        if e < 4 {
            _mm256_permute2f128_ps::<0x20>(u[c], u[4 + c])
        } else {
            _mm256_permute2f128_ps::<0x31>(u[c], u[4 + c])
        }
    })
}

/// [`Vector::products_gt_exact`]: as the AVX-512 version, four lanes at a time.
#[inline]
#[target_feature(enable = "avx2")]
fn products_gt_f64(a: __m256, b: __m256, c: __m256, d: __m256) -> __m256 {
    let mut bits = 0;
    for h in 0..2 {
        let half = |v: __m256| -> __m256d {
            _mm256_cvtps_pd(if h == 0 {
                _mm256_castps256_ps128(v)
            } else {
                _mm256_extractf128_ps::<1>(v)
            })
        };
        let p1 = f32_rounded(_mm256_mul_pd(half(a), half(b)));
        let p2 = f32_rounded(_mm256_mul_pd(half(c), half(d)));
        bits |= _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_GT_OQ>(p1, p2)) << (4 * h);
    }
    lane_mask(bits as u32)
}

/// Lane `j` all ones where bit `j` of `bits` is set (bits 8 and up are ignored).
#[inline]
#[target_feature(enable = "avx2")]
fn lane_mask(bits: u32) -> __m256 {
    let lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    let set = _mm256_and_si256(_mm256_set1_epi32((bits & 0xFF) as i32), lane_bits);
    _mm256_castsi256_ps(_mm256_cmpeq_epi32(set, lane_bits))
}

/// See [`super::lanes_avx512`]'s `f32_rounded`: an exact f64 product of two f32 values rounded
/// as f32 multiplication rounds it, denormal range included, with no f32 denormal formed.
#[inline]
#[target_feature(enable = "avx2")]
fn f32_rounded(p: __m256d) -> __m256d {
    let abs_p = _mm256_andnot_pd(_mm256_set1_pd(-0.0), p);
    let tiny = _mm256_cmp_pd::<_CMP_LT_OQ>(abs_p, _mm256_set1_pd(f64::from(f32::MIN_POSITIVE)));
    let normal = _mm256_cvtps_pd(_mm256_cvtpd_ps(_mm256_blendv_pd(
        p,
        _mm256_set1_pd(1.0),
        tiny,
    )));
    // Multiples of 2^-149, the f32 denormal spacing; both scalings are exact.
    let (up, down) = (
        _mm256_set1_pd(f64::from_bits((1023 + 149) << 52)),
        _mm256_set1_pd(f64::from_bits((1023 - 149) << 52)),
    );
    let steps =
        _mm256_round_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_pd(p, up));
    _mm256_blendv_pd(normal, _mm256_mul_pd(steps, down), tiny)
}
