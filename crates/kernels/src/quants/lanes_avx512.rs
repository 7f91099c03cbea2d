//! The AVX-512 backend of the lane searches in [`super::lanes`]: 16 groups per 512-bit vector
//! (`N / 16` vectors per row of the transposed data), where AVX2 holds 8. As
//! [`super::lanes_avx2`], with mask registers in place of blend masks.
//!
//! Everything here requires AVX-512F; [`super::lanes::Avx512`] is the token proving it is
//! present.

#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use std::arch::x86_64::*;

use super::lanes::{self, Avx512, Slots};
use super::search::GROUP_MAX_EPS;
use super::vector::{intrinsics, Vector, MAX_GROUPS};
use crate::fp::ROUND_MAGIC;

/// Vectors per row at most (32 groups: two super-blocks of 16 sub-blocks).
const KMAX: usize = 2;

/// The 16-lane operations of the shared searches (AVX-512F, which the token proves).
impl Vector for Avx512 {
    const LANES: usize = 16;
    type F = __m512;
    type M = __mmask16;
    type I = __m512i;
    type Row = [__m512; MAX_GROUPS / 16];
    type Ints = [i32; 16];
    type Tile = [__m512; 16];

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
    fn tile(self, f: impl FnMut(usize) -> __m512) -> [__m512; 16] {
        std::array::from_fn(f)
    }
    intrinsics! {
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

/// See [`super::lanes::q3`]; same contract, 16 groups per vector.
///
/// Each refinement pass first asks, per row, whether any lane could change its level
/// ([`q3_unsure`]): with the row's state fixed, the new level `nearest_int(x·sl2/slx)` equals
/// the current one whenever an estimate of the quotient (`x·sl2` times the 14-bit reciprocal
/// of `slx`, within `|q|·2^-13` of the true quotient) lies inside the current level's rounding
/// cell shrunk by [`Q3_CELL_TOL`] (open-ended at the clamp limits, up to ±2^20, below where
/// ggml's `nearest_int` stays exact). Only rows where some lane fails that test run ggml's
/// step with the true division, so the rare rows that change pay for the division and the
/// selects. A pass also stops early once it reaches the last row changed in the previous pass
/// without a change of its own: every later row was checked with the same state then.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn q3<const N: usize, const M: usize>(
    t: Avx512,
    x: &[[f32; N]; M],
    nmax: i32,
    scale_out: &mut [f32; N],
    l_out: &mut [[i8; N]; M],
) {
    let vx = Avx512::within();
    let kk = N / 16;
    let zero = _mm512_setzero_ps();
    let mut st3 = Q3Start::new(N / 16);
    st3.fill(t, x, nmax);
    let Q3Start {
        rows, sumlx, suml2, ..
    } = &mut st3;
    let mut last_change = M - 1;
    for _itry in 0..5 {
        let mut changed_at = None;
        for i in 0..M {
            if changed_at.is_none() && i > last_change {
                break;
            }
            let mut unsure: __mmask16 = 0;
            for k in 0..kk {
                let e = rows[k].get(i);
                let slx0 = _mm512_sub_ps(sumlx[k], e.wxl);
                let sl20 = _mm512_sub_ps(suml2[k], e.wl2);
                unsure |= q3_unsure(vx.ld(&x[i], k), e.l, slx0, sl20, nmax);
            }
            if unsure == 0 {
                continue;
            }
            for k in 0..kk {
                let xv = vx.ld(&x[i], k);
                let e = rows[k].get(i);
                let li = e.l;
                let wv = _mm512_mul_ps(xv, xv);
                let wx = _mm512_mul_ps(wv, xv);
                let slx0 = _mm512_sub_ps(sumlx[k], e.wxl);
                let sl20 = _mm512_sub_ps(suml2[k], e.wl2);
                let new_l = vx.round_clamp_f(
                    _mm512_div_ps(_mm512_mul_ps(xv, sl20), slx0),
                    -nmax,
                    nmax - 1,
                );
                let new_wxl = _mm512_mul_ps(wx, new_l);
                let new_wl2 = _mm512_mul_ps(_mm512_mul_ps(wv, new_l), new_l);
                let slx = _mm512_add_ps(slx0, new_wxl);
                let sl2 = _mm512_add_ps(sl20, new_wl2);
                let cand = vx.gt(slx0, zero)
                    & _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(new_l, li)
                    & vx.gt(sl2, zero);
                let better = products_gt(
                    cand,
                    _mm512_mul_ps(slx, slx),
                    suml2[k],
                    _mm512_mul_ps(sumlx[k], sumlx[k]),
                    sl2,
                );
                let acc = cand & better;
                if acc == 0 {
                    continue;
                }
                rows[k].set(
                    i,
                    Q3Elem {
                        l: vx.sel(acc, new_l, li),
                        wxl: vx.sel(acc, new_wxl, e.wxl),
                        wl2: vx.sel(acc, new_wl2, e.wl2),
                    },
                );
                sumlx[k] = vx.sel(acc, slx, sumlx[k]);
                suml2[k] = vx.sel(acc, sl2, suml2[k]);
                changed_at = Some(i);
            }
        }
        match changed_at {
            Some(i) => last_change = i,
            None => break,
        }
    }
    st3.finish(nmax, scale_out, l_out);
}

/// `fl(a·b) > fl(c·d)` in f32 on the lanes of `care` (ggml's acceptance test `slx*slx*suml2 >
/// sumlx*sumlx*sl2`; other lanes' bits are meaningless), without forming a denormal float. With
/// tiny weights those products fall below 2^-126, and every instruction that rounds a result
/// into the denormal range costs a microcode assist of a hundred-odd cycles.
///
/// First both products are formed scaled by 2^64 (`b·2^64` is exact): where each scaled
/// product is finite and at least 2^-62, the unscaled product is a normal float, scaling
/// commutes with its rounding, and comparing the scaled products is comparing ggml's.
/// Otherwise (a tiny, zero, huge or NaN product on a lane that matters) the vector is redone in
/// f64: the products are exact there (24 + 24 bits), and each is rounded as f32 would round
/// it, by a conversion where the result is a normal f32 and by rounding to a multiple of
/// 2^-149 (round to nearest even) below 2^-126.
#[inline]
#[target_feature(enable = "avx512f")]
fn products_gt(care: __mmask16, a: __m512, b: __m512, c: __m512, d: __m512) -> __mmask16 {
    let vx = Avx512::within();
    let scale = vx.splat(f32::from_bits((127 + 64) << 23)); // 2^64
    let s1 = _mm512_mul_ps(a, _mm512_mul_ps(b, scale));
    let s2 = _mm512_mul_ps(c, _mm512_mul_ps(d, scale));
    let (low, inf) = (
        vx.splat(f32::from_bits((127 - 62) << 23)),
        vx.splat(f32::INFINITY),
    ); // 2^-62
    let plain = _mm512_mask_cmp_ps_mask::<_CMP_GE_OQ>(care, vx.abs(s1), low);
    let plain = _mm512_mask_cmp_ps_mask::<_CMP_LT_OQ>(plain, vx.abs(s1), inf);
    let plain = _mm512_mask_cmp_ps_mask::<_CMP_GE_OQ>(plain, vx.abs(s2), low);
    let plain = _mm512_mask_cmp_ps_mask::<_CMP_LT_OQ>(plain, vx.abs(s2), inf);
    if plain == care {
        return vx.gt(s1, s2);
    }
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

/// Q3_K's 6-bit scale levels `clamp(nearest_int(iscale·scale) as int8_t, -32, 31) + 32` on
/// 16 lanes (ggml stores the rounded value in an `int8_t`, keeping its low byte, before
/// clamping).
#[inline]
#[target_feature(enable = "avx512f")]
fn scale_levels(iscale: __m512, scale: __m512) -> __m512i {
    let vx = Avx512::within();
    let t = _mm512_castps_si512(_mm512_add_ps(
        _mm512_mul_ps(iscale, scale),
        vx.splat(ROUND_MAGIC),
    ));
    let rounded = _mm512_sub_epi32(
        _mm512_and_si512(t, _mm512_set1_epi32(0x007f_ffff)),
        _mm512_set1_epi32(0x0040_0000),
    );
    let byte = _mm512_srai_epi32::<24>(_mm512_slli_epi32::<24>(rounded));
    let clamped = _mm512_min_epi32(
        _mm512_max_epi32(byte, _mm512_set1_epi32(-32)),
        _mm512_set1_epi32(31),
    );
    _mm512_add_epi32(clamped, _mm512_set1_epi32(32))
}

/// See [`super::lanes::Lanes::q3_headers`]: up to 16 blocks side by side, one per lane, with
/// their sub-block scales transposed into 16 vectors, so that each block's search for its
/// largest scale and its 16 roundings are plain vector steps rather than a horizontal
/// reduction, a scalar division and a chain of scalar packing per block. Every step is the
/// scalar one's (`q3_scales`, `pack_scales_q3`, fp16 round trip) on each lane.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn q3_headers(
    scales: &[[f32; 16]],
    y: &mut [crate::blocks::BlockQ3K],
    steps: &mut [[f32; 16]],
) {
    let vx = Avx512::within();
    let n = scales.len();
    assert!(n <= 16 && y.len() == n && steps.len() == n);
    let zero = _mm512_setzero_ps();
    let s = transpose_regs(std::array::from_fn(|b| {
        if b < n {
            vx.ld(&scales[b], 0)
        } else {
            zero
        }
    }));
    // The first scale of largest magnitude (a NaN never wins ggml's `>`).
    let (mut amax, mut max) = (zero, zero);
    for sj in s {
        let g = vx.gt(vx.abs(sj), amax);
        amax = vx.sel(g, vx.abs(sj), amax);
        max = vx.sel(g, sj, max);
    }
    let live = _mm512_cmp_ps_mask::<_CMP_NEQ_OQ>(max, zero);
    let iscale = _mm512_div_ps(vx.splat(-32.0), max);
    let l6: [__m512i; 16] =
        std::array::from_fn(|j| _mm512_maskz_mov_epi32(live, scale_levels(iscale, s[j])));
    // fp16 d = 1/iscale (0 for all-zero blocks), read back as the dequantizer reads it.
    let d16 = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_maskz_div_ps(live, vx.splat(1.0), iscale),
    );
    let dd = _mm512_cvtph_ps(d16);
    let per_sub = transpose_regs(std::array::from_fn(|j| {
        _mm512_mul_ps(
            dd,
            _mm512_cvtepi32_ps(_mm512_sub_epi32(l6[j], _mm512_set1_epi32(32))),
        )
    }));
    let mut d_bits = [0u16; 16];
    // SAFETY: `d_bits` is 32 writable bytes; the store is unaligned.
    unsafe { _mm256_storeu_si256(d_bits.as_mut_ptr().cast(), d16) };
    // The 12 bytes of `pack_scales_q3`, byte `k` of every block in vector `k`: low nibbles of
    // scales j and j + 8, then bits 4-5 of scales m, m + 4, m + 8, m + 12.
    let (nibble, two) = (_mm512_set1_epi32(0xF), _mm512_set1_epi32(3));
    let mut bytes = [[0i8; 16]; 16];
    for k in 0..12 {
        let v = if k < 8 {
            _mm512_or_si512(
                _mm512_and_si512(l6[k], nibble),
                _mm512_slli_epi32::<4>(_mm512_and_si512(l6[k + 8], nibble)),
            )
        } else {
            let top = |t: usize| _mm512_and_si512(_mm512_srli_epi32::<4>(l6[k - 8 + 4 * t]), two);
            _mm512_or_si512(
                _mm512_or_si512(top(0), _mm512_slli_epi32::<2>(top(1))),
                _mm512_or_si512(
                    _mm512_slli_epi32::<4>(top(2)),
                    _mm512_slli_epi32::<6>(top(3)),
                ),
            )
        };
        // SAFETY: `bytes[k]` is 16 writable bytes; the store is unaligned.
        unsafe { _mm_storeu_si128(bytes[k].as_mut_ptr().cast(), _mm512_cvtepi32_epi8(v)) };
    }
    let by_block = super::q3k::transpose_bytes(std::array::from_fn(|k| &bytes[k]));
    for b in 0..n {
        y[b].scales = std::array::from_fn(|k| by_block[b][k] as u8);
        y[b].d = d_bits[b];
        vx.st(&mut steps[b], 0, per_sub[b]);
    }
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
    Some((vx.to_ints(scale_levels(vx.splat(iscale), s)), 1.0 / iscale))
}

/// [`q3`]'s first refinement pass only, with every row checked against the initial state by the
/// same quotient estimate: a lane none of whose rows could change is final after that pass,
/// exactly as in ggml (whose pass then changes nothing and stops). Returns the mask of the
/// other lanes (bit `j` for lane `j`), whose outputs are not final; see
/// [`super::lanes::Lanes::q3_first`]. No row waits on another here, so the pass runs at full
/// throughput.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn q3_first<const N: usize, const M: usize>(
    t: Avx512,
    x: &[[f32; N]; M],
    nmax: i32,
    scale_out: &mut [f32; N],
    state: &mut [[f32; N]; 3],
) -> u64 {
    let vx = Avx512::within();
    let kk = N / 16;
    let mut st3 = Q3Start::new(N / 16);
    st3.fill(t, x, nmax);
    let mut unsure = 0u64;
    for k in 0..kk {
        let mut lane_unsure: __mmask16 = 0;
        for i in 0..M {
            let e = st3.rows[k].get(i);
            let slx0 = _mm512_sub_ps(st3.sumlx[k], e.wxl);
            let sl20 = _mm512_sub_ps(st3.suml2[k], e.wl2);
            lane_unsure |= q3_unsure(vx.ld(&x[i], k), e.l, slx0, sl20, nmax);
        }
        let live = !vx.lt(st3.amax[k], vx.splat(GROUP_MAX_EPS));
        unsure |= ((lane_unsure & live) as u64) << (16 * k);
        vx.st(
            &mut state[0],
            k,
            _mm512_mask_mov_ps(vx.splat(f32::NAN), live, st3.iscale[k]),
        );
        vx.st(&mut state[1], k, st3.sumlx[k]);
        vx.st(&mut state[2], k, st3.suml2[k]);
    }
    st3.scales(scale_out);
    unsure
}

/// See [`super::lanes::Lanes::q3_rest`]: ggml's refinement passes, one sub-block per vector
/// (its 16 values in the lanes) instead of one per lane.
///
/// ggml's pass is sixteen dependent steps, yet a step changes the state only when it accepts
/// a new level, and most do not. So each "round" evaluates the steps of all sixteen positions
/// at once against the current state and applies the first accepted one the pass has yet to
/// reach: every position before it, checked against that same state, is exactly what ggml's
/// pass does there (nothing). When none is left the pass ends, and the next pass starts from
/// position 0 with the same state, whose first change the same round has already found. A
/// sub-block thus costs one round per accepted change, plus one to find that nothing is left,
/// instead of sixteen dependent steps per pass; and the rounds of different sub-blocks, which
/// do not wait on one another, overlap.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn q3_rest(jobs: &mut [super::lanes::Q3Job<'_>], nmax: i32) {
    for batch in jobs.chunks_mut(Q3_BATCH) {
        q3_rounds(batch, nmax);
    }
}

/// Jobs [`q3_rounds`] interleaves: one row's worth of unsettled sub-blocks is typically 50.
const Q3_BATCH: usize = 64;

/// [`q3_rest`] on at most [`Q3_BATCH`] jobs.
#[inline]
#[target_feature(enable = "avx512f")]
fn q3_rounds(jobs: &mut [super::lanes::Q3Job<'_>], nmax: i32) {
    let vx = Avx512::within();
    let n = jobs.len();
    assert!(n <= Q3_BATCH);
    let zero = _mm512_setzero_ps();
    // Per job: values, ggml's w = x² and w·x, the current levels with their products w·x·l and
    // w·l·l, and sums; the positions the current pass has yet to visit (a mask), whether the
    // pass changed anything, the pass number (ggml runs at most five), and whether the
    // acceptance test may multiply in f32 directly (see `plain_products`).
    let mut x = [zero; Q3_BATCH];
    let (mut w, mut wx) = ([zero; Q3_BATCH], [zero; Q3_BATCH]);
    let (mut l, mut wxl, mut wl2) = ([zero; Q3_BATCH], [zero; Q3_BATCH], [zero; Q3_BATCH]);
    let mut sums = [[0f32; 2]; Q3_BATCH];
    let mut ahead = [u16::MAX; Q3_BATCH];
    let mut changed = [false; Q3_BATCH];
    let mut pass = [0u8; Q3_BATCH];
    let mut plain = [false; Q3_BATCH];
    let mut active = [0u8; Q3_BATCH];
    let (lo, hi) = (-nmax, nmax - 1);
    for (j, job) in jobs.iter().enumerate() {
        let xv = vx.ld(job.x, 0);
        let wv = _mm512_mul_ps(xv, xv);
        let wxv = _mm512_mul_ps(wv, xv);
        let lv = vx.round_clamp_f(_mm512_mul_ps(vx.splat(job.iscale), xv), lo, hi);
        (x[j], w[j], wx[j], l[j]) = (xv, wv, wxv, lv);
        wxl[j] = _mm512_mul_ps(wxv, lv);
        wl2[j] = _mm512_mul_ps(_mm512_mul_ps(wv, lv), lv);
        sums[j] = job.sums;
        plain[j] = plain_products(job.iscale);
        active[j] = j as u8;
    }
    // Each sweep over the jobs runs one round of each in two loops: up to the candidate
    // levels and sums (the division's long chain), then the acceptance test and the
    // bookkeeping. Split so, each loop's chains are short enough for the out-of-order core
    // to overlap many jobs; one loop holds fewer rounds in flight, every round's operations
    // waiting on its own chain.
    let (mut cand_l, mut cand_slx, mut cand_sl2) =
        ([zero; Q3_BATCH], [zero; Q3_BATCH], [zero; Q3_BATCH]);
    let mut cands = [0u16; Q3_BATCH];
    let mut n_active = n;
    while n_active > 0 {
        for a in 0..n_active {
            let j = active[a] as usize;
            let [sx, s2] = sums[j];
            let (xv, wv, wxv) = (x[j], w[j], wx[j]);
            let slx0 = _mm512_sub_ps(vx.splat(sx), wxl[j]);
            let sl20 = _mm512_sub_ps(vx.splat(s2), wl2[j]);
            let new_l = vx.round_clamp_f(_mm512_div_ps(_mm512_mul_ps(xv, sl20), slx0), lo, hi);
            let slx = _mm512_add_ps(slx0, _mm512_mul_ps(wxv, new_l));
            let sl2 = _mm512_add_ps(sl20, _mm512_mul_ps(_mm512_mul_ps(wv, new_l), new_l));
            cands[a] = vx.gt(slx0, zero)
                & _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(new_l, l[j])
                & vx.gt(sl2, zero);
            (cand_l[a], cand_slx[a], cand_sl2[a]) = (new_l, slx, sl2);
        }
        let mut kept = 0;
        for a in 0..n_active {
            let j = active[a] as usize;
            let [sx, s2] = sums[j];
            let (sumlx, suml2) = (vx.splat(sx), vx.splat(s2));
            let (new_l, slx, sl2, cand) = (cand_l[a], cand_slx[a], cand_sl2[a], cands[a]);
            // ggml's `slx*slx*suml2 > sumlx*sumlx*sl2`.
            let (p, c) = (_mm512_mul_ps(slx, slx), vx.splat(sx * sx));
            let better = if plain[j] {
                vx.gt(_mm512_mul_ps(p, suml2), _mm512_mul_ps(c, sl2))
            } else {
                products_gt(cand, p, suml2, c, sl2)
            };
            // The positions whose step ggml accepts with this state. The first one the pass
            // has yet to reach is its next change; with none, the pass ends, and the next
            // pass (which runs if this one changed a level and fewer than five have run)
            // starts from position 0 with this same state, so its first change is the first
            // accepted position overall. Bit arithmetic, not branches: whether a round finds
            // a change is a coin toss for the branch predictor.
            let accepted = (cand & better) as u32;
            let ahead_accepted = accepted & ahead[j] as u32;
            let next_pass = (ahead_accepted == 0) as u32 & changed[j] as u32 & (pass[j] < 4) as u32;
            let take = ahead_accepted | (accepted & 0u32.wrapping_sub(next_pass));
            let step = (take & take.wrapping_neg()) as u16;
            l[j] = _mm512_mask_mov_ps(l[j], step, new_l);
            let new_wxl = _mm512_mul_ps(wx[j], new_l);
            let new_wl2 = _mm512_mul_ps(_mm512_mul_ps(w[j], new_l), new_l);
            wxl[j] = _mm512_mask_mov_ps(wxl[j], step, new_wxl);
            wl2[j] = _mm512_mask_mov_ps(wl2[j], step, new_wl2);
            sums[j] = [
                _mm512_cvtss_f32(_mm512_mask_compress_ps(sumlx, step, slx)),
                _mm512_cvtss_f32(_mm512_mask_compress_ps(suml2, step, sl2)),
            ];
            pass[j] += next_pass as u8;
            // A round without a change ends ggml's search: its pass changed nothing.
            changed[j] = step != 0;
            ahead[j] = !(step | step.wrapping_sub(1));
            active[kept] = j as u8;
            kept += (step != 0) as usize;
        }
        n_active = kept;
    }
    for (j, job) in jobs.iter_mut().enumerate() {
        let li = _mm512_add_epi32(_mm512_cvtps_epi32(l[j]), _mm512_set1_epi32(nmax));
        // SAFETY: `job.l` is 16 writable bytes; the store is unaligned.
        unsafe { _mm_storeu_si128(job.l.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(li)) };
        let [sumlx, suml2] = sums[j];
        job.scale = if suml2 > 0.0 { sumlx / suml2 } else { 0.0 };
    }
}

/// Whether [`q3_rounds`] may evaluate ggml's acceptance products in f32 for a sub-block whose
/// first rounding used `iscale = -nmax/max` (`|max|` its largest |x|), rather than with
/// [`products_gt`]. Both give ggml's result (f32 arithmetic is ggml's); the difference is
/// speed. With tiny values the products fall into the denormal range, where each f32
/// multiplication costs a microcode assist, and `products_gt` avoids forming them; otherwise
/// its extra tests cost more than the rare product that cancels down to a denormal. The
/// products scale as `|max|^8` (and overflow to infinity, which is fast, above about 2^16):
/// this asks for `|max| >= 2^-10`.
pub(crate) fn plain_products(iscale: f32) -> bool {
    iscale.abs() <= 4096.0
}

/// See [`super::lanes::first_levels`]; the sixteen roundings side by side.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn first_levels(x: &[f32; 16], iscale: f32, nmax: i32) -> [i8; 16] {
    let vx = Avx512::within();
    let mut out = [0i8; 16];
    if !iscale.is_nan() {
        let l = vx.round_clamp(
            _mm512_mul_ps(vx.splat(iscale), vx.ld(x, 0)),
            -nmax,
            nmax - 1,
        );
        let bytes = _mm512_cvtepi32_epi8(_mm512_add_epi32(l, _mm512_set1_epi32(nmax)));
        // SAFETY: `out` is 16 writable bytes; the store is unaligned.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), bytes) };
    }
    out
}

/// The state of [`q3`]'s search after its first rounding: per element (`rows[k]` holds row
/// `i`'s for lanes `16k..16k + 16`) the level and ggml's products `w·x·l` and `w·l·l`, per
/// lane the sums of those, the largest |x| and `iscale`.
struct Q3Start<const M: usize> {
    rows: [Slots<Q3Elem, M>; KMAX],
    sumlx: [__m512; KMAX],
    suml2: [__m512; KMAX],
    amax: [__m512; KMAX],
    iscale: [__m512; KMAX],
    kk: usize,
}

/// One row's level and products in [`Q3Start`], for 16 lanes.
#[derive(Clone, Copy)]
struct Q3Elem {
    l: __m512,
    wxl: __m512,
    wl2: __m512,
}

impl<const M: usize> Q3Start<M> {
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn new(kk: usize) -> Self {
        let zero = _mm512_setzero_ps();
        Q3Start {
            rows: std::array::from_fn(|_| Slots::new()),
            sumlx: [zero; KMAX],
            suml2: [zero; KMAX],
            amax: [zero; KMAX],
            iscale: [zero; KMAX],
            kk,
        }
    }

    /// The first rounding of `x`, into an empty state for `N / 16` vectors per row (a step of
    /// its own so that the kilobytes of rows are written where they stay, not built and
    /// moved).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn fill<const N: usize>(&mut self, t: Avx512, x: &[[f32; N]; M], nmax: i32) {
        let vx = Avx512::within();
        let kk = N / 16;
        assert!(N.is_multiple_of(16) && kk <= KMAX && kk == self.kk && self.rows[0].len == 0);
        let zero = _mm512_setzero_ps();
        let (max, amax) = lanes::signed_absmax(t, x);
        self.amax = amax;
        for k in 0..kk {
            let iscale = _mm512_div_ps(vx.splat(-(nmax as f32)), max[k]);
            self.iscale[k] = iscale;
            // The sums stay in registers: accumulating into the struct would put a store and a
            // reload on each step of the chain.
            let (mut sumlx, mut suml2) = (zero, zero);
            for i in 0..M {
                let xv = vx.ld(&x[i], k);
                let l = vx.round_clamp_f(_mm512_mul_ps(iscale, xv), -nmax, nmax - 1);
                let wv = _mm512_mul_ps(xv, xv);
                let wxl = _mm512_mul_ps(_mm512_mul_ps(wv, xv), l);
                let wl2 = _mm512_mul_ps(_mm512_mul_ps(wv, l), l);
                sumlx = _mm512_add_ps(sumlx, wxl);
                suml2 = _mm512_add_ps(suml2, wl2);
                self.rows[k].push(Q3Elem { l, wxl, wl2 });
            }
            (self.sumlx[k], self.suml2[k]) = (sumlx, suml2);
        }
    }

    /// Writes the scales `sumlx/suml2` and the levels offset by `nmax` (zero for all-zero
    /// groups, as ggml's early return gives).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn finish<const N: usize>(
        &self,
        nmax: i32,
        scale_out: &mut [f32; N],
        l_out: &mut [[i8; N]; M],
    ) {
        let vx = Avx512::within();
        let eps = vx.splat(GROUP_MAX_EPS);
        for k in 0..self.kk {
            let live = !vx.lt(self.amax[k], eps);
            for i in 0..M {
                let li = _mm512_add_epi32(
                    _mm512_cvtps_epi32(self.rows[k].get(i).l),
                    _mm512_set1_epi32(nmax),
                );
                let out = &mut l_out[i][16 * k..16 * k + 16];
                let bytes = _mm512_cvtepi32_epi8(_mm512_maskz_mov_epi32(live, li));
                // SAFETY: `out` is 16 writable bytes; the store is unaligned.
                unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), bytes) };
            }
        }
        self.scales(scale_out);
    }

    /// Writes the scales `sumlx/suml2` (zero for all-zero groups).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn scales<const N: usize>(&self, scale_out: &mut [f32; N]) {
        let vx = Avx512::within();
        let (zero, eps) = (_mm512_setzero_ps(), vx.splat(GROUP_MAX_EPS));
        for k in 0..self.kk {
            let ok = !vx.lt(self.amax[k], eps) & vx.gt(self.suml2[k], zero);
            let scale = _mm512_div_ps(self.sumlx[k], self.suml2[k]);
            vx.st(scale_out, k, vx.sel(ok, scale, zero));
        }
    }
}

/// The lanes of one row whose level the refinement step might change: those with `slx > 0`
/// (ggml skips the others) where the quotient estimate `x·sl2·rcp14(slx)`, clamped to the
/// levels' range, is not within `0.5 - Q3_CELL_TOL` of the current level `l` (or the estimate
/// is not usable: `slx` too large for the reciprocal's error bound, the quotient too large for
/// ggml's `nearest_int`, or NaN). Every other lane provably keeps its level.
#[inline]
#[target_feature(enable = "avx512f")]
fn q3_unsure(x: __m512, l: __m512, slx: __m512, sl2: __m512, nmax: i32) -> __mmask16 {
    let vx = Avx512::within();
    let q = _mm512_mul_ps(_mm512_mul_ps(x, sl2), _mm512_rcp14_ps(slx));
    let (lmin, lmax) = (vx.splat(-(nmax as f32)), vx.splat(nmax as f32 - 1.0));
    let off = vx.abs(_mm512_sub_ps(
        _mm512_min_ps(_mm512_max_ps(q, lmin), lmax),
        l,
    ));
    let pos = vx.gt(slx, _mm512_setzero_ps());
    let sure = _mm512_mask_cmp_ps_mask::<_CMP_LT_OQ>(pos, slx, vx.splat(Q3_SLX_MAX));
    let sure = _mm512_mask_cmp_ps_mask::<_CMP_LT_OQ>(sure, vx.abs(q), vx.splat(Q3_FAR));
    let sure = _mm512_mask_cmp_ps_mask::<_CMP_LT_OQ>(sure, off, vx.splat(0.5 - Q3_CELL_TOL));
    pos & !sure
}

/// How far inside a level's rounding cell [`q3`]'s quotient estimate must lie: above its error
/// `|q|·(2^-14 + 2^-23) < 3·10^-4` for `|q| ≤ 4.5` (cells of larger levels are not used), plus
/// half an ulp of the true quotient.
const Q3_CELL_TOL: f32 = 1.0 / 1024.0;

/// The largest quotient estimate [`q3_unsure`] trusts: ggml's `nearest_int` is exact below
/// 2^22, and the estimate is within 2^-13 of the quotient.
const Q3_FAR: f32 = 1_048_576.0;

/// The largest `slx` [`q3_unsure`] estimates with: the reciprocal stays a normal float, where the
/// 14-bit reciprocal's error bound holds.
const Q3_SLX_MAX: f32 = 1.0e37;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_gt_matches_f32_arithmetic() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let mut seed = 0x2545_f491u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let value = |next: &mut dyn FnMut() -> u32| -> f32 {
            let r = next();
            match r % 64 {
                0 => 0.0,
                1 => -0.0,
                2 => f32::INFINITY,
                3 => f32::NAN,
                4 => f32::from_bits(r >> 9), // a denormal
                _ => {
                    // Exponents from 2^-90 to 2^60: products from overflow to below 2^-149.
                    let exp = 37 + (r >> 8) % 151;
                    f32::from_bits((r & 0x8000_0000) | (exp << 23) | (next() & 0x7f_ffff))
                }
            }
        };
        let mut checked = 0;
        for _ in 0..20_000 {
            let v: [[f32; 16]; 4] =
                std::array::from_fn(|_| std::array::from_fn(|_| value(&mut next)));
            let want = (0..16).fold(0u16, |m, j| {
                m | ((((v[0][j] * v[1][j]) > (v[2][j] * v[3][j])) as u16) << j)
            });
            // SAFETY: AVX-512F was detected above.
            let got = unsafe {
                let ld = |r: &[f32; 16]| _mm512_loadu_ps(r.as_ptr());
                products_gt(u16::MAX, ld(&v[0]), ld(&v[1]), ld(&v[2]), ld(&v[3]))
            };
            assert_eq!(got, want, "{v:?}");
            checked += 16;
        }
        println!("products_gt: checked {checked} lanes");
    }
}
