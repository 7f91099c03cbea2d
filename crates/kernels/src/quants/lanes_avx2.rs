//! The AVX2 backend of the lane searches in [`super::lanes`] (8 groups per 256-bit vector,
//! `N / 8` vectors per row of the transposed data): the [`Vector`] operations, the
//! `#[target_feature]` entries that instantiate the shared searches, and the Q3_K searches
//! still written per backend. Every lane operation is one vector instruction with the scalar
//! operation's IEEE semantics (see [`super::vector`]); branches become `vblendvps`.
//!
//! Everything here requires AVX2; [`super::lanes::Avx2`] is the token proving it is present.

#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use std::arch::x86_64::*;

use super::lanes::{self, Avx2, Slots};
use super::search::GROUP_MAX_EPS;
use super::vector::{intrinsics, Vector, MAX_GROUPS};
use crate::fp::ROUND_MAGIC;

/// Vectors per row at most (32 groups: two super-blocks of 16 sub-blocks).
const KMAX: usize = 4;

/// The 8-lane operations of the shared searches (AVX2, which the token proves).
impl Vector for Avx2 {
    const LANES: usize = 8;
    type F = __m256;
    type M = __m256;
    type I = __m256i;
    type Row = [__m256; MAX_GROUPS / 8];
    type Ints = [i32; 8];
    type Tile = [__m256; 8];

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
        std::array::from_fn(f)
    }
    intrinsics! {
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

/// See [`super::lanes::q3`]; same contract, 8 groups per vector.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn q3<const N: usize, const M: usize>(
    t: Avx2,
    x: &[[f32; N]; M],
    nmax: i32,
    scale_out: &mut [f32; N],
    l_out: &mut [[i8; N]; M],
) {
    let vx = Avx2::within();
    let kk = N / 8;
    assert!(N.is_multiple_of(8) && kk <= KMAX);
    let zero = _mm256_setzero_ps();
    let (max, amax) = lanes::signed_absmax(t, x);
    let mut l = [[zero; KMAX]; M];
    let mut sumlx = [zero; KMAX];
    let mut suml2 = [zero; KMAX];
    let mut iscale = [zero; KMAX];
    for k in 0..kk {
        iscale[k] = _mm256_div_ps(vx.splat(-(nmax as f32)), max[k]);
    }
    for i in 0..M {
        for k in 0..kk {
            let xv = vx.ld(&x[i], k);
            let li = vx.round_clamp_f(_mm256_mul_ps(iscale[k], xv), -nmax, nmax - 1);
            l[i][k] = li;
            let wv = _mm256_mul_ps(xv, xv);
            sumlx[k] = _mm256_add_ps(sumlx[k], _mm256_mul_ps(_mm256_mul_ps(wv, xv), li));
            suml2[k] = _mm256_add_ps(suml2[k], _mm256_mul_ps(_mm256_mul_ps(wv, li), li));
        }
    }
    for _itry in 0..5 {
        let mut changed = [zero; KMAX];
        for i in 0..M {
            for k in 0..kk {
                let xv = vx.ld(&x[i], k);
                let li = l[i][k];
                let wv = _mm256_mul_ps(xv, xv);
                let wx = _mm256_mul_ps(wv, xv);
                let slx0 = _mm256_sub_ps(sumlx[k], _mm256_mul_ps(wx, li));
                let sl20 = _mm256_sub_ps(suml2[k], _mm256_mul_ps(_mm256_mul_ps(wv, li), li));
                let new_l = vx.round_clamp_f(
                    _mm256_div_ps(_mm256_mul_ps(xv, sl20), slx0),
                    -nmax,
                    nmax - 1,
                );
                let slx = _mm256_add_ps(slx0, _mm256_mul_ps(wx, new_l));
                let sl2 = _mm256_add_ps(sl20, _mm256_mul_ps(_mm256_mul_ps(wv, new_l), new_l));
                let cand = _mm256_and_ps(
                    _mm256_and_ps(vx.gt(slx0, zero), _mm256_cmp_ps::<_CMP_NEQ_UQ>(new_l, li)),
                    vx.gt(sl2, zero),
                );
                let acc = if _mm256_movemask_ps(cand) == 0 {
                    zero
                } else {
                    let better = products_gt(
                        cand,
                        _mm256_mul_ps(slx, slx),
                        suml2[k],
                        _mm256_mul_ps(sumlx[k], sumlx[k]),
                        sl2,
                    );
                    _mm256_and_ps(cand, better)
                };
                l[i][k] = vx.sel(acc, new_l, li);
                sumlx[k] = vx.sel(acc, slx, sumlx[k]);
                suml2[k] = vx.sel(acc, sl2, suml2[k]);
                changed[k] = _mm256_or_ps(changed[k], acc);
            }
        }
        let mut any = 0;
        for k in 0..kk {
            any |= _mm256_movemask_ps(changed[k]);
        }
        if any == 0 {
            break;
        }
    }
    let eps = vx.splat(GROUP_MAX_EPS);
    for i in 0..M {
        for k in 0..kk {
            let li = _mm256_add_epi32(_mm256_cvtps_epi32(l[i][k]), _mm256_set1_epi32(nmax));
            let li = _mm256_andnot_si256(_mm256_castps_si256(vx.lt(amax[k], eps)), li);
            let li = vx.to_ints(li);
            for t in 0..8 {
                l_out[i][8 * k + t] = li[t] as i8;
            }
        }
    }
    write_scales(&amax[..kk], &sumlx, &suml2, scale_out);
}

/// See [`super::lanes_avx512::q3_headers`]; up to 8 blocks side by side, their sub-block
/// scales transposed as two 8×8 tiles. The fp16 round trip of `d` is the scalar one (one
/// conversion per block).
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn q3_headers(
    scales: &[[f32; 16]],
    y: &mut [crate::blocks::BlockQ3K],
    steps: &mut [[f32; 16]],
) {
    let vx = Avx2::within();
    use crate::fp::{f16_to_f32, f32_to_f16};
    let n = scales.len();
    assert!(n <= 8 && y.len() == n && steps.len() == n);
    let zero = _mm256_setzero_ps();
    let tile = |h: usize| {
        transpose8(std::array::from_fn(|b| {
            if b < n {
                vx.ld(&scales[b], h)
            } else {
                zero
            }
        }))
    };
    let (lo, hi) = (tile(0), tile(1));
    let s: [__m256; 16] = std::array::from_fn(|j| if j < 8 { lo[j] } else { hi[j - 8] });
    // The first scale of largest magnitude (a NaN never wins ggml's `>`).
    let (mut amax, mut max) = (zero, zero);
    for sj in s {
        let g = vx.gt(vx.abs(sj), amax);
        amax = vx.sel(g, vx.abs(sj), amax);
        max = vx.sel(g, sj, max);
    }
    let live = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_NEQ_OQ>(max, zero));
    let iscale = _mm256_div_ps(vx.splat(-32.0), max);
    let l6: [__m256i; 16] = std::array::from_fn(|j| {
        let t = _mm256_castps_si256(_mm256_add_ps(
            _mm256_mul_ps(iscale, s[j]),
            vx.splat(ROUND_MAGIC),
        ));
        let rounded = _mm256_sub_epi32(
            _mm256_and_si256(t, _mm256_set1_epi32(0x007f_ffff)),
            _mm256_set1_epi32(0x0040_0000),
        );
        // ggml's int8_t store keeps the low byte, signed.
        let byte = _mm256_srai_epi32::<24>(_mm256_slli_epi32::<24>(rounded));
        let clamped = _mm256_min_epi32(
            _mm256_max_epi32(byte, _mm256_set1_epi32(-32)),
            _mm256_set1_epi32(31),
        );
        _mm256_and_si256(live, _mm256_add_epi32(clamped, _mm256_set1_epi32(32)))
    });
    // fp16 d = 1/iscale (0 for all-zero blocks), read back as the dequantizer reads it.
    let mut d = [0f32; 8];
    vx.st(
        &mut d,
        0,
        _mm256_and_ps(
            _mm256_castsi256_ps(live),
            _mm256_div_ps(vx.splat(1.0), iscale),
        ),
    );
    let d_bits = d.map(f32_to_f16);
    let dd = vx.ld(&d_bits.map(f16_to_f32), 0);
    let per_sub: [__m256; 16] = std::array::from_fn(|j| {
        _mm256_mul_ps(
            dd,
            _mm256_cvtepi32_ps(_mm256_sub_epi32(l6[j], _mm256_set1_epi32(32))),
        )
    });
    let (d_lo, d_hi) = (
        transpose8(std::array::from_fn(|j| per_sub[j])),
        transpose8(std::array::from_fn(|j| per_sub[8 + j])),
    );
    // The 12 bytes of `pack_scales_q3`, byte `k` of every block in vector `k` (see the
    // AVX-512 version).
    let (nibble, two) = (_mm256_set1_epi32(0xF), _mm256_set1_epi32(3));
    let bytes: [[i32; 8]; 12] = std::array::from_fn(|k| {
        vx.to_ints(if k < 8 {
            _mm256_or_si256(
                _mm256_and_si256(l6[k], nibble),
                _mm256_slli_epi32::<4>(_mm256_and_si256(l6[k + 8], nibble)),
            )
        } else {
            let top = |t: usize| _mm256_and_si256(_mm256_srli_epi32::<4>(l6[k - 8 + 4 * t]), two);
            _mm256_or_si256(
                _mm256_or_si256(top(0), _mm256_slli_epi32::<2>(top(1))),
                _mm256_or_si256(
                    _mm256_slli_epi32::<4>(top(2)),
                    _mm256_slli_epi32::<6>(top(3)),
                ),
            )
        })
    });
    for b in 0..n {
        y[b].scales = std::array::from_fn(|k| bytes[k][b] as u8);
        y[b].d = d_bits[b];
        vx.st(&mut steps[b], 0, d_lo[b]);
        vx.st(&mut steps[b], 1, d_hi[b]);
    }
}

/// See [`super::lanes_avx512::q3_rest`]: the same rounds, one sub-block per pair of vectors.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn q3_rest(jobs: &mut [super::lanes::Q3Job<'_>], nmax: i32) {
    for batch in jobs.chunks_mut(Q3_BATCH) {
        q3_rounds(batch, nmax);
    }
}

/// Jobs [`q3_rounds`] interleaves (see the AVX-512 version).
const Q3_BATCH: usize = 64;

/// A sub-block's 16 values as two vectors.
type Pair = [__m256; 2];

/// [`q3_rest`] on at most [`Q3_BATCH`] jobs; see the AVX-512 `q3_rounds` for the scheme.
#[inline]
#[target_feature(enable = "avx2")]
fn q3_rounds(jobs: &mut [super::lanes::Q3Job<'_>], nmax: i32) {
    let vx = Avx2::within();
    let n = jobs.len();
    assert!(n <= Q3_BATCH);
    let zero = _mm256_setzero_ps();
    let z2: Pair = [zero; 2];
    let mut x = [z2; Q3_BATCH];
    let (mut w, mut wx) = ([z2; Q3_BATCH], [z2; Q3_BATCH]);
    let (mut l, mut wxl, mut wl2) = ([z2; Q3_BATCH], [z2; Q3_BATCH], [z2; Q3_BATCH]);
    let mut sums = [[0f32; 2]; Q3_BATCH];
    let mut ahead = [u16::MAX; Q3_BATCH];
    let mut changed = [false; Q3_BATCH];
    let mut pass = [0u8; Q3_BATCH];
    let mut plain = [false; Q3_BATCH];
    let mut active = [0u8; Q3_BATCH];
    let (lo, hi) = (-nmax, nmax - 1);
    for (j, job) in jobs.iter().enumerate() {
        for h in 0..2 {
            let xv = vx.ld(job.x, h);
            let wv = _mm256_mul_ps(xv, xv);
            let wxv = _mm256_mul_ps(wv, xv);
            let lv = vx.round_clamp_f(_mm256_mul_ps(vx.splat(job.iscale), xv), lo, hi);
            (x[j][h], w[j][h], wx[j][h], l[j][h]) = (xv, wv, wxv, lv);
            wxl[j][h] = _mm256_mul_ps(wxv, lv);
            wl2[j][h] = _mm256_mul_ps(_mm256_mul_ps(wv, lv), lv);
        }
        sums[j] = job.sums;
        plain[j] = super::lanes_avx512::plain_products(job.iscale);
        active[j] = j as u8;
    }
    let (mut cand_l, mut cand_slx, mut cand_sl2) = ([z2; Q3_BATCH], [z2; Q3_BATCH], [z2; Q3_BATCH]);
    let mut cands = [0u32; Q3_BATCH];
    // A 16-bit lane mask as two vector masks.
    let lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    let mask_of = |bits: u32, h: usize| -> __m256 {
        let b = _mm256_set1_epi32(((bits >> (8 * h)) & 0xFF) as i32);
        _mm256_castsi256_ps(_mm256_cmpeq_epi32(
            _mm256_and_si256(b, lane_bits),
            lane_bits,
        ))
    };
    let mut n_active = n;
    while n_active > 0 {
        for a in 0..n_active {
            let j = active[a] as usize;
            let [sx, s2] = sums[j];
            let mut cand = 0u32;
            for h in 0..2 {
                let slx0 = _mm256_sub_ps(vx.splat(sx), wxl[j][h]);
                let sl20 = _mm256_sub_ps(vx.splat(s2), wl2[j][h]);
                let q = _mm256_div_ps(_mm256_mul_ps(x[j][h], sl20), slx0);
                let new_l = vx.round_clamp_f(q, lo, hi);
                let slx = _mm256_add_ps(slx0, _mm256_mul_ps(wx[j][h], new_l));
                let sl2 = _mm256_add_ps(sl20, _mm256_mul_ps(_mm256_mul_ps(w[j][h], new_l), new_l));
                let c = _mm256_and_ps(
                    _mm256_and_ps(
                        vx.gt(slx0, zero),
                        _mm256_cmp_ps::<_CMP_NEQ_UQ>(new_l, l[j][h]),
                    ),
                    vx.gt(sl2, zero),
                );
                cand |= (_mm256_movemask_ps(c) as u32) << (8 * h);
                (cand_l[a][h], cand_slx[a][h], cand_sl2[a][h]) = (new_l, slx, sl2);
            }
            cands[a] = cand;
        }
        let mut kept = 0;
        for a in 0..n_active {
            let j = active[a] as usize;
            let [sx, s2] = sums[j];
            let suml2 = vx.splat(s2);
            let cand = cands[a];
            let mut better = 0u32;
            for h in 0..2 {
                // ggml's `slx*slx*suml2 > sumlx*sumlx*sl2`.
                let (p, c) = (
                    _mm256_mul_ps(cand_slx[a][h], cand_slx[a][h]),
                    vx.splat(sx * sx),
                );
                let g = if plain[j] {
                    vx.gt(_mm256_mul_ps(p, suml2), _mm256_mul_ps(c, cand_sl2[a][h]))
                } else {
                    products_gt(mask_of(cand, h), p, suml2, c, cand_sl2[a][h])
                };
                better |= (_mm256_movemask_ps(g) as u32) << (8 * h);
            }
            // As in the AVX-512 rounds: the first accepted position the pass has yet to
            // reach, or, where the pass ends and another follows, the first overall.
            let accepted = cand & better;
            let ahead_accepted = accepted & ahead[j] as u32;
            let next_pass = (ahead_accepted == 0) as u32 & changed[j] as u32 & (pass[j] < 4) as u32;
            let take = ahead_accepted | (accepted & 0u32.wrapping_sub(next_pass));
            let step = take & take.wrapping_neg();
            // Where the step lands, its sums become the state (entry 16: no step).
            let (mut slx_at, mut sl2_at) = ([0f32; 24], [0f32; 24]);
            for h in 0..2 {
                let m = mask_of(step, h);
                let new_l = cand_l[a][h];
                l[j][h] = vx.sel(m, new_l, l[j][h]);
                let new_wxl = _mm256_mul_ps(wx[j][h], new_l);
                let new_wl2 = _mm256_mul_ps(_mm256_mul_ps(w[j][h], new_l), new_l);
                wxl[j][h] = vx.sel(m, new_wxl, wxl[j][h]);
                wl2[j][h] = vx.sel(m, new_wl2, wl2[j][h]);
                vx.st(&mut slx_at, h, cand_slx[a][h]);
                vx.st(&mut sl2_at, h, cand_sl2[a][h]);
            }
            (slx_at[16], sl2_at[16]) = (sx, s2);
            let at = (step | 1 << 16).trailing_zeros() as usize;
            sums[j] = [slx_at[at], sl2_at[at]];
            pass[j] += next_pass as u8;
            changed[j] = step != 0;
            ahead[j] = !(step | step.wrapping_sub(1)) as u16;
            active[kept] = j as u8;
            kept += (step != 0) as usize;
        }
        n_active = kept;
    }
    for (j, job) in jobs.iter_mut().enumerate() {
        for h in 0..2 {
            let li = vx.to_ints(_mm256_add_epi32(
                _mm256_cvtps_epi32(l[j][h]),
                _mm256_set1_epi32(nmax),
            ));
            for t in 0..8 {
                job.l[8 * h + t] = li[t] as i8;
            }
        }
        let [sumlx, suml2] = sums[j];
        job.scale = if suml2 > 0.0 { sumlx / suml2 } else { 0.0 };
    }
}

/// The scales `sumlx/suml2` of [`q3`]'s lanes, 8 per vector (zero for all-zero groups, and
/// where `suml2` is not positive, as ggml's early return and division give).
#[inline]
#[target_feature(enable = "avx2")]
fn write_scales<const N: usize>(
    amax: &[__m256],
    sumlx: &[__m256],
    suml2: &[__m256],
    scale_out: &mut [f32; N],
) {
    let vx = Avx2::within();
    let (zero, eps) = (_mm256_setzero_ps(), vx.splat(GROUP_MAX_EPS));
    for (k, &amax) in amax.iter().enumerate() {
        let ok = _mm256_and_ps(
            _mm256_cmp_ps::<_CMP_GE_OQ>(amax, eps),
            vx.gt(suml2[k], zero),
        );
        vx.st(
            scale_out,
            k,
            vx.sel(ok, _mm256_div_ps(sumlx[k], suml2[k]), zero),
        );
    }
}

/// See [`super::lanes_avx512::q3_first`]: the first refinement pass against the initial state,
/// returning the lanes it cannot settle. The 12-bit `vrcpps` estimate is within
/// `|q|·(1.5·2^-12 + 2^-23)` of the quotient, under 1.7·10^-3 for `|q| ≤ 4.5`, hence the wider
/// [`Q3_CELL_TOL`] here.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn q3_first<const N: usize, const M: usize>(
    t: Avx2,
    x: &[[f32; N]; M],
    nmax: i32,
    scale_out: &mut [f32; N],
    state: &mut [[f32; N]; 3],
) -> u64 {
    let vx = Avx2::within();
    let kk = N / 8;
    assert!(N.is_multiple_of(8) && kk <= KMAX);
    let zero = _mm256_setzero_ps();
    let (max, amax) = lanes::signed_absmax(t, x);
    // Per row, the level and ggml's products `w·x·l` and `w·l·l`, written in place rather
    // than zeroed first (see `Slots`).
    let mut rows: [Slots<[__m256; 3], M>; KMAX] = std::array::from_fn(|_| Slots::new());
    let mut sumlx = [zero; KMAX];
    let mut suml2 = [zero; KMAX];
    let mut iscale = [zero; KMAX];
    for k in 0..kk {
        iscale[k] = _mm256_div_ps(vx.splat(-(nmax as f32)), max[k]);
        let (mut sx, mut s2) = (zero, zero);
        for i in 0..M {
            let xv = vx.ld(&x[i], k);
            let li = vx.round_clamp_f(_mm256_mul_ps(iscale[k], xv), -nmax, nmax - 1);
            let wv = _mm256_mul_ps(xv, xv);
            let wxl = _mm256_mul_ps(_mm256_mul_ps(wv, xv), li);
            let wl2 = _mm256_mul_ps(_mm256_mul_ps(wv, li), li);
            sx = _mm256_add_ps(sx, wxl);
            s2 = _mm256_add_ps(s2, wl2);
            rows[k].push([li, wxl, wl2]);
        }
        (sumlx[k], suml2[k]) = (sx, s2);
    }
    let (lmin, lmax) = (vx.splat(-(nmax as f32)), vx.splat(nmax as f32 - 1.0));
    let (huge, far, half) = (
        vx.splat(1.0e37),
        vx.splat(1_048_576.0),
        vx.splat(0.5 - Q3_CELL_TOL),
    );
    let mut unsure = 0u64;
    for k in 0..kk {
        let mut lane_unsure = zero;
        for i in 0..M {
            let [li, wxl, wl2] = rows[k].get(i);
            let slx0 = _mm256_sub_ps(sumlx[k], wxl);
            let sl20 = _mm256_sub_ps(suml2[k], wl2);
            let q = _mm256_mul_ps(_mm256_mul_ps(vx.ld(&x[i], k), sl20), _mm256_rcp_ps(slx0));
            let off = vx.abs(_mm256_sub_ps(
                _mm256_min_ps(_mm256_max_ps(q, lmin), lmax),
                li,
            ));
            let pos = vx.gt(slx0, zero);
            let sure = _mm256_and_ps(
                _mm256_and_ps(vx.lt(slx0, huge), vx.lt(vx.abs(q), far)),
                vx.lt(off, half),
            );
            lane_unsure = _mm256_or_ps(lane_unsure, _mm256_andnot_ps(sure, pos));
        }
        let live = _mm256_cmp_ps::<_CMP_GE_OQ>(amax[k], vx.splat(GROUP_MAX_EPS));
        unsure |= (_mm256_movemask_ps(_mm256_and_ps(lane_unsure, live)) as u64) << (8 * k);
        vx.st(
            &mut state[0],
            k,
            _mm256_blendv_ps(vx.splat(f32::NAN), iscale[k], live),
        );
        vx.st(&mut state[1], k, sumlx[k]);
        vx.st(&mut state[2], k, suml2[k]);
    }
    write_scales(&amax[..kk], &sumlx, &suml2, scale_out);
    unsure
}

/// How far inside a level's rounding cell [`q3_first`]'s estimate must lie (see there).
const Q3_CELL_TOL: f32 = 1.0 / 256.0;

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

/// See [`super::lanes_avx512`]'s `products_gt`: `fl(a·b) > fl(c·d)` (all ones where true) on
/// the lanes of `care`, without forming a denormal float; scaled by 2^64 where that is exact,
/// else in f64.
#[inline]
#[target_feature(enable = "avx2")]
fn products_gt(care: __m256, a: __m256, b: __m256, c: __m256, d: __m256) -> __m256 {
    let vx = Avx2::within();
    let scale = vx.splat(f32::from_bits((127 + 64) << 23)); // 2^64
    let s1 = _mm256_mul_ps(a, _mm256_mul_ps(b, scale));
    let s2 = _mm256_mul_ps(c, _mm256_mul_ps(d, scale));
    let (low, inf) = (
        vx.splat(f32::from_bits((127 - 62) << 23)),
        vx.splat(f32::INFINITY),
    ); // 2^-62
    let plain = |s: __m256| {
        _mm256_and_ps(
            _mm256_cmp_ps::<_CMP_GE_OQ>(vx.abs(s), low),
            vx.lt(vx.abs(s), inf),
        )
    };
    let plain = _mm256_and_ps(plain(s1), plain(s2));
    if _mm256_movemask_ps(_mm256_andnot_ps(plain, care)) == 0 {
        return vx.gt(s1, s2);
    }
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
    let lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    let set = _mm256_and_si256(_mm256_set1_epi32(bits), lane_bits);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// [`products_gt`] against f32 arithmetic (see the AVX-512 test of the same name).
    #[test]
    fn products_gt_matches_f32_arithmetic() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let mut seed = 0x9e37_79b9u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let mut value = || -> f32 {
            let r = next();
            match r % 64 {
                0 => 0.0,
                1 => -0.0,
                2 => f32::INFINITY,
                3 => f32::NAN,
                4 => f32::from_bits(r >> 9),
                _ => {
                    let exp = 37 + (r >> 8) % 151;
                    f32::from_bits(
                        (r & 0x8000_0000) | (exp << 23) | (r.rotate_left(11) & 0x7f_ffff),
                    )
                }
            }
        };
        let mut checked = 0;
        for _ in 0..40_000 {
            let v: [[f32; 8]; 4] = std::array::from_fn(|_| std::array::from_fn(|_| value()));
            let want: [bool; 8] =
                std::array::from_fn(|j| (v[0][j] * v[1][j]) > (v[2][j] * v[3][j]));
            // SAFETY: AVX2 was detected above.
            let got = unsafe {
                let ld = |r: &[f32; 8]| _mm256_loadu_ps(r.as_ptr());
                let all = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
                _mm256_movemask_ps(products_gt(all, ld(&v[0]), ld(&v[1]), ld(&v[2]), ld(&v[3])))
            };
            let want_bits = (0..8).fold(0, |m, j| m | ((want[j] as i32) << j));
            assert_eq!(got, want_bits, "{v:?}");
            checked += 8;
        }
        println!("products_gt (avx2): checked {checked} lanes");
    }
}
