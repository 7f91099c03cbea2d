//! AVX-512 versions of the lane searches in [`super::lanes`] for 16 groups: one 512-bit vector
//! per row of the transposed data, where AVX2 needs two. Written operation for operation like
//! [`super::lanes_avx2`] (same IEEE semantics per lane, nothing fused or reassociated), with
//! mask registers in place of blend masks.
//!
//! Everything here requires AVX-512F; [`super::lanes::Avx512`] is the token proving it is
//! present.

#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use std::arch::x86_64::*;

use super::search::GROUP_MAX_EPS;

#[inline]
#[target_feature(enable = "avx512f")]
fn ld(row: &[f32; 16]) -> __m512 {
    // SAFETY: `row` holds 16 readable floats; the load is unaligned.
    unsafe { _mm512_loadu_ps(row.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn st(row: &mut [f32; 16], v: __m512) {
    // SAFETY: `row` holds 16 writable floats; the store is unaligned.
    unsafe { _mm512_storeu_ps(row.as_mut_ptr(), v) }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn to_i32(v: __m512i) -> [i32; 16] {
    let mut out = [0i32; 16];
    // SAFETY: `out` is 64 writable bytes; the store is unaligned.
    unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), v) };
    out
}

#[inline]
#[target_feature(enable = "avx512f")]
fn splat(v: f32) -> __m512 {
    _mm512_set1_ps(v)
}

/// ggml's `nearest_int` on 16 lanes, then `clamp(lo, hi)`.
#[inline]
#[target_feature(enable = "avx512f")]
fn round_clamp(v: __m512, lo: i32, hi: i32) -> __m512i {
    let t = _mm512_castps_si512(_mm512_add_ps(v, _mm512_set1_ps(12_582_912.0)));
    let i = _mm512_sub_epi32(
        _mm512_and_si512(t, _mm512_set1_epi32(0x007f_ffff)),
        _mm512_set1_epi32(0x0040_0000),
    );
    _mm512_min_epi32(
        _mm512_max_epi32(i, _mm512_set1_epi32(lo)),
        _mm512_set1_epi32(hi),
    )
}

#[inline]
#[target_feature(enable = "avx512f")]
fn round_clamp_f(v: __m512, lo: i32, hi: i32) -> __m512 {
    _mm512_cvtepi32_ps(round_clamp(v, lo, hi))
}

#[inline]
#[target_feature(enable = "avx512f")]
fn neg(v: __m512) -> __m512 {
    _mm512_castsi512_ps(_mm512_xor_si512(
        _mm512_castps_si512(v),
        _mm512_set1_epi32(i32::MIN),
    ))
}

#[inline]
#[target_feature(enable = "avx512f")]
fn lt(a: __m512, b: __m512) -> __mmask16 {
    _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn gt(a: __m512, b: __m512) -> __mmask16 {
    _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, b)
}

/// `if mask { t } else { f }` per lane.
#[inline]
#[target_feature(enable = "avx512f")]
fn sel(mask: __mmask16, t: __m512, f: __m512) -> __m512 {
    _mm512_mask_blend_ps(mask, f, t)
}

/// The error term of one element: |d| with `use_mad`, d² otherwise.
#[inline]
#[target_feature(enable = "avx512f")]
fn err(d: __m512, use_mad: bool) -> __m512 {
    if use_mad {
        _mm512_abs_ps(d)
    } else {
        _mm512_mul_ps(d, d)
    }
}

/// Writes levels (`i32` lanes, zeroed where `zero` is set) to one row of a level array.
#[inline]
#[target_feature(enable = "avx512f")]
fn store_levels<T: Copy>(row: &mut [T; 16], l: __m512i, zero: __mmask16, conv: fn(i32) -> T) {
    let l = to_i32(_mm512_maskz_mov_epi32(!zero, l));
    for t in 0..16 {
        row[t] = conv(l[t]);
    }
}

/// See [`super::lanes::qkx`]; same contract, 16 groups in one vector.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn qkx<const M: usize>(
    x: &[[f32; 16]; M],
    w: &[[f32; 16]; M],
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
    strict_degenerate: bool,
    scale_out: &mut [f32; 16],
    the_min: &mut [f32; 16],
    l_out: &mut [[u8; 16]; M],
) {
    assert!(M > 0);
    let zero = _mm512_setzero_ps();
    let mut min = ld(&x[0]);
    let mut max = min;
    let mut sum_w = ld(&w[0]);
    let mut sum_x = _mm512_mul_ps(sum_w, min);
    for i in 1..M {
        let v = ld(&x[i]);
        min = sel(lt(v, min), v, min);
        max = sel(gt(v, max), v, max);
        let wv = ld(&w[i]);
        sum_w = _mm512_add_ps(sum_w, wv);
        sum_x = _mm512_add_ps(sum_x, _mm512_mul_ps(wv, v));
    }
    min = sel(gt(min, zero), zero, min);
    let degenerate = if strict_degenerate {
        _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(max, min)
    } else {
        _mm512_cmp_ps_mask::<_CMP_LE_OQ>(max, min)
    };
    let mut iscale = _mm512_div_ps(splat(nmax as f32), _mm512_sub_ps(max, min));
    let mut scale = _mm512_div_ps(splat(1.0), iscale);
    let min0 = min;
    let mut best_error = zero;
    for i in 0..M {
        let xv = ld(&x[i]);
        let l = round_clamp_f(_mm512_mul_ps(iscale, _mm512_sub_ps(xv, min)), 0, nmax);
        let diff = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(scale, l), min), xv);
        best_error = _mm512_add_ps(best_error, _mm512_mul_ps(ld(&w[i]), err(diff, use_mad)));
    }
    let mut best_iscale = iscale;
    let mut best_min = min;
    if nstep >= 1 {
        let mut lf = [zero; M];
        for is in 0..=nstep {
            let num = splat(rmin + rdelta * is as f32 + nmax as f32);
            iscale = _mm512_div_ps(num, _mm512_sub_ps(max, min));
            let (mut sum_l, mut sum_l2, mut sum_xl) = (zero, zero, zero);
            for i in 0..M {
                let xv = ld(&x[i]);
                let l = round_clamp_f(_mm512_mul_ps(iscale, _mm512_sub_ps(xv, min)), 0, nmax);
                lf[i] = l;
                let wl = _mm512_mul_ps(ld(&w[i]), l);
                sum_l = _mm512_add_ps(sum_l, wl);
                sum_l2 = _mm512_add_ps(sum_l2, _mm512_mul_ps(wl, l));
                sum_xl = _mm512_add_ps(sum_xl, _mm512_mul_ps(wl, xv));
            }
            let d = _mm512_sub_ps(_mm512_mul_ps(sum_w, sum_l2), _mm512_mul_ps(sum_l, sum_l));
            let valid = gt(d, zero);
            let ts = _mm512_div_ps(
                _mm512_sub_ps(_mm512_mul_ps(sum_w, sum_xl), _mm512_mul_ps(sum_x, sum_l)),
                d,
            );
            let tm = _mm512_div_ps(
                _mm512_sub_ps(_mm512_mul_ps(sum_l2, sum_x), _mm512_mul_ps(sum_l, sum_xl)),
                d,
            );
            let clip = gt(tm, zero);
            let this_min = sel(clip, zero, tm);
            let this_scale = sel(clip, _mm512_div_ps(sum_xl, sum_l2), ts);
            let mut cur = zero;
            for i in 0..M {
                let xv = ld(&x[i]);
                let diff = _mm512_sub_ps(
                    _mm512_add_ps(_mm512_mul_ps(this_scale, lf[i]), this_min),
                    xv,
                );
                cur = _mm512_add_ps(cur, _mm512_mul_ps(ld(&w[i]), err(diff, use_mad)));
            }
            let acc = valid & lt(cur, best_error);
            best_error = sel(acc, cur, best_error);
            scale = sel(acc, this_scale, scale);
            best_iscale = sel(acc, iscale, best_iscale);
            best_min = sel(acc, min, best_min);
            min = sel(acc, this_min, min);
        }
    }
    for i in 0..M {
        let xv = ld(&x[i]);
        let l = round_clamp(
            _mm512_mul_ps(best_iscale, _mm512_sub_ps(xv, best_min)),
            0,
            nmax,
        );
        store_levels(&mut l_out[i], l, degenerate, |v| v as u8);
    }
    st(scale_out, sel(degenerate, zero, scale));
    st(the_min, neg(sel(degenerate, min0, min)));
}

/// Largest |x| per lane and the signed value holding it (first one wins).
#[inline]
#[target_feature(enable = "avx512f")]
fn signed_absmax<const M: usize>(x: &[[f32; 16]; M]) -> (__m512, __m512) {
    let mut max = _mm512_setzero_ps();
    let mut amax = max;
    for i in 0..M {
        let v = ld(&x[i]);
        let ax = _mm512_abs_ps(v);
        let g = gt(ax, amax);
        amax = sel(g, ax, amax);
        max = sel(g, v, max);
    }
    (max, amax)
}

/// Σ w·x·l and Σ w·l·l per lane for levels `clamp(nearest_int(iscale·x), -nmax, nmax-1)`.
#[inline]
#[target_feature(enable = "avx512f")]
fn qx_sums<const M: usize>(
    x: &[[f32; 16]; M],
    w: &[[f32; 16]; M],
    nmax: i32,
    iscale: __m512,
) -> (__m512, __m512) {
    let mut sumlx = _mm512_setzero_ps();
    let mut suml2 = sumlx;
    for i in 0..M {
        let xv = ld(&x[i]);
        let wv = ld(&w[i]);
        let l = round_clamp_f(_mm512_mul_ps(iscale, xv), -nmax, nmax - 1);
        sumlx = _mm512_add_ps(sumlx, _mm512_mul_ps(_mm512_mul_ps(wv, xv), l));
        suml2 = _mm512_add_ps(suml2, _mm512_mul_ps(_mm512_mul_ps(wv, l), l));
    }
    (sumlx, suml2)
}

/// See [`super::lanes::qx`]; same contract, 16 groups in one vector.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn qx<const M: usize>(
    x: &[[f32; 16]; M],
    w: &[[f32; 16]; M],
    nmax: i32,
    scale_out: &mut [f32; 16],
    l_out: &mut [[i8; 16]; M],
) {
    let zero = _mm512_setzero_ps();
    let (max, amax) = signed_absmax(x);
    let iscale0 = _mm512_div_ps(splat(-(nmax as f32)), max);
    let (sumlx, suml2) = qx_sums(x, w, nmax, iscale0);
    let nz = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(suml2, zero);
    let mut scale = sel(nz, _mm512_div_ps(sumlx, suml2), zero);
    let mut best = _mm512_mul_ps(scale, sumlx);
    let mut best_iscale = iscale0;
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        let num = splat(nmax as f32 + 0.1 * is as f32);
        let iscale = _mm512_div_ps(neg(num), max);
        let (sumlx, suml2) = qx_sums(x, w, nmax, iscale);
        let acc = gt(suml2, zero) & gt(_mm512_mul_ps(sumlx, sumlx), _mm512_mul_ps(best, suml2));
        let s = _mm512_div_ps(sumlx, suml2);
        scale = sel(acc, s, scale);
        best = sel(acc, _mm512_mul_ps(s, sumlx), best);
        best_iscale = sel(acc, iscale, best_iscale);
    }
    let all_zero = lt(amax, splat(GROUP_MAX_EPS));
    for i in 0..M {
        let l = round_clamp(_mm512_mul_ps(best_iscale, ld(&x[i])), -nmax, nmax - 1);
        let l = _mm512_add_epi32(l, _mm512_set1_epi32(nmax));
        store_levels(&mut l_out[i], l, all_zero, |v| v as i8);
    }
    st(scale_out, sel(all_zero, zero, scale));
}

/// See [`super::lanes::q3`]; same contract, 16 groups in one vector.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn q3<const M: usize>(
    x: &[[f32; 16]; M],
    nmax: i32,
    scale_out: &mut [f32; 16],
    l_out: &mut [[i8; 16]; M],
) {
    let zero = _mm512_setzero_ps();
    let (max, amax) = signed_absmax(x);
    let mut l = [zero; M];
    let (mut sumlx, mut suml2) = (zero, zero);
    let iscale = _mm512_div_ps(splat(-(nmax as f32)), max);
    for i in 0..M {
        let xv = ld(&x[i]);
        let li = round_clamp_f(_mm512_mul_ps(iscale, xv), -nmax, nmax - 1);
        l[i] = li;
        let wv = _mm512_mul_ps(xv, xv);
        sumlx = _mm512_add_ps(sumlx, _mm512_mul_ps(_mm512_mul_ps(wv, xv), li));
        suml2 = _mm512_add_ps(suml2, _mm512_mul_ps(_mm512_mul_ps(wv, li), li));
    }
    for _itry in 0..5 {
        let mut changed: __mmask16 = 0;
        for i in 0..M {
            let xv = ld(&x[i]);
            let li = l[i];
            let wv = _mm512_mul_ps(xv, xv);
            let wx = _mm512_mul_ps(wv, xv);
            let slx0 = _mm512_sub_ps(sumlx, _mm512_mul_ps(wx, li));
            let sl20 = _mm512_sub_ps(suml2, _mm512_mul_ps(_mm512_mul_ps(wv, li), li));
            let new_l = round_clamp_f(
                _mm512_div_ps(_mm512_mul_ps(xv, sl20), slx0),
                -nmax,
                nmax - 1,
            );
            let slx = _mm512_add_ps(slx0, _mm512_mul_ps(wx, new_l));
            let sl2 = _mm512_add_ps(sl20, _mm512_mul_ps(_mm512_mul_ps(wv, new_l), new_l));
            let better = gt(
                _mm512_mul_ps(_mm512_mul_ps(slx, slx), suml2),
                _mm512_mul_ps(_mm512_mul_ps(sumlx, sumlx), sl2),
            );
            let acc = gt(slx0, zero)
                & _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(new_l, li)
                & gt(sl2, zero)
                & better;
            l[i] = sel(acc, new_l, li);
            sumlx = sel(acc, slx, sumlx);
            suml2 = sel(acc, sl2, suml2);
            changed |= acc;
        }
        if changed == 0 {
            break;
        }
    }
    let eps = splat(GROUP_MAX_EPS);
    let all_zero = lt(amax, eps);
    for i in 0..M {
        let li = _mm512_add_epi32(_mm512_cvtps_epi32(l[i]), _mm512_set1_epi32(nmax));
        store_levels(&mut l_out[i], li, all_zero, |v| v as i8);
    }
    let ok = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(amax, eps) & gt(suml2, zero);
    st(scale_out, sel(ok, _mm512_div_ps(sumlx, suml2), zero));
}
