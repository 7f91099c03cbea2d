//! Register-tiled products on AVX2 (+FMA, F16C): `R` weight rows × `P` token pairs per call,
//! one 256-bit register per row and token. As on AVX-512, a row's packed group is loaded once
//! for every token of the tile and a token's group once for every row; the integer sums use
//! `vpmaddubsw` + `vpmaddwd` (AVX2 has no VNNI), exact in i32, and each output's float work is
//! the per-pair dot's lane for lane, so outputs are bit-identical to `vec_dot` on this path.

// The tiles index several arrays by the same row and pair counters.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::pack::*;
use super::Tile;
use crate::GgmlType;
// The dots' horizontal sums, so each output ends in the dot's order.
use crate::simd::avx2::{hsum_f32x4 as hsum4, hsum_f32x8 as hsum8};

/// [`pack_weights`] compiled for this path, so its byte loops vectorize.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn pack(fam: Family, ty: GgmlType, w: &[u8], row_bytes: usize, out: &mut [u8]) {
    pack_weights(fam, ty, w, row_bytes, out)
}

/// 32 bytes at `p`.
///
/// # Safety
/// `p` must point at 32 readable bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(p.cast()) }
}

/// K16 (Q6_K, Q3_K) over an `R × P` tile (`2P` tokens).
///
/// # Safety
/// The CPU must have avx2, fma and f16c; `tl.w` must address `R` packed rows of `tl.units`
/// K16 units `tl.ws` bytes apart and `tl.a` `P` packed pairs `tl.as_` apart.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn k16<const R: usize, const P: usize>(tl: &mut Tile) {
    let mut acc = [[[_mm256_setzero_ps(); 2]; P]; R];
    for u in 0..tl.units {
        // SAFETY: all pointer arithmetic and loads below stay inside unit `u` of a row
        // `r < R` or pair `p < P`, which the caller guarantees readable.
        unsafe {
            let wu: [*const u8; R] = std::array::from_fn(|r| tl.w.add(r * tl.ws + u * K16_W_UNIT));
            let au: [*const u8; P] = std::array::from_fn(|p| tl.a.add(p * tl.as_ + u * K16_A_UNIT));
            let mut sumi = [[[_mm256_setzero_si256(); 2]; P]; R];
            for r in 0..R {
                let nc = load(wu[r].add(K16_NEGCORR));
                sumi[r] = [[nc; 2]; P];
            }
            for g in 0..8 {
                let wv: [__m256i; R] = std::array::from_fn(|r| load(wu[r].add(32 * g)));
                let sv: [__m256i; R] = std::array::from_fn(|r| load(wu[r].add(K16_S + 32 * g)));
                for p in 0..P {
                    for h in 0..2 {
                        let av = load(au[p].add(KA_A + 64 * g + 32 * h));
                        for r in 0..R {
                            let t = _mm256_madd_epi16(_mm256_maddubs_epi16(av, wv[r]), sv[r]);
                            sumi[r][p][h] = _mm256_add_epi32(sumi[r][p][h], t);
                        }
                    }
                }
            }
            for p in 0..P {
                for h in 0..2 {
                    let dy = _mm256_loadu_ps(au[p].add(KA_DY + 32 * h).cast());
                    for r in 0..R {
                        let d = _mm256_mul_ps(_mm256_set1_ps(f32p(wu[r].add(K16_DX))), dy);
                        let s = _mm256_cvtepi32_ps(sumi[r][p][h]);
                        acc[r][p][h] = _mm256_fmadd_ps(d, s, acc[r][p][h]);
                    }
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (p, pair) in row.iter().enumerate() {
            for (h, x) in pair.iter().enumerate() {
                tl.put(r, p, h, hsum8(*x));
            }
        }
    }
}

/// K32 (Q4_K, Q5_K) over an `R × P` tile (`2P` tokens).
///
/// # Safety
/// As for [`k16`], with K32 units.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn k32<const R: usize, const P: usize>(tl: &mut Tile) {
    let mut acc = [[[_mm256_setzero_ps(); 2]; P]; R];
    let mut accm = [[[_mm_setzero_ps(); 2]; P]; R];
    for u in 0..tl.units {
        // SAFETY: all pointer arithmetic and loads below stay inside unit `u` of a row
        // `r < R` or pair `p < P`, which the caller guarantees readable.
        unsafe {
            let wu: [*const u8; R] = std::array::from_fn(|r| tl.w.add(r * tl.ws + u * K32_W_UNIT));
            let au: [*const u8; P] = std::array::from_fn(|p| tl.a.add(p * tl.as_ + u * K32_A_UNIT));
            let mut sumi = [[[_mm256_setzero_si256(); 2]; P]; R];
            for g in 0..8 {
                let wv: [__m256i; R] = std::array::from_fn(|r| load(wu[r].add(32 * g)));
                let sv: [__m256i; R] = std::array::from_fn(|r| {
                    _mm256_set1_epi32(wu[r].add(K32_SP + 4 * g).cast::<i32>().read_unaligned())
                });
                for p in 0..P {
                    for h in 0..2 {
                        let av = load(au[p].add(KA_A + 64 * g + 32 * h));
                        for r in 0..R {
                            let t = _mm256_madd_epi16(_mm256_maddubs_epi16(wv[r], av), sv[r]);
                            sumi[r][p][h] = _mm256_add_epi32(sumi[r][p][h], t);
                        }
                    }
                }
            }
            for p in 0..P {
                for h in 0..2 {
                    let dy = _mm256_loadu_ps(au[p].add(KA_DY + 32 * h).cast());
                    let bp = _mm_loadu_si128(au[p].add(KA_BP + 16 * h).cast());
                    let ndy = _mm_loadu_ps(au[p].add(KA_NEGDY + 16 * h).cast());
                    for r in 0..R {
                        let d = _mm256_mul_ps(_mm256_set1_ps(f32p(wu[r].add(K32_DX))), dy);
                        let s = _mm256_cvtepi32_ps(sumi[r][p][h]);
                        acc[r][p][h] = _mm256_fmadd_ps(d, s, acc[r][p][h]);
                        let mins = _mm_loadu_si128(wu[r].add(K32_MINS).cast());
                        let prod = _mm_cvtepi32_ps(_mm_madd_epi16(mins, bp));
                        let dm = _mm_mul_ps(_mm_set1_ps(f32p(wu[r].add(K32_DMX))), ndy);
                        accm[r][p][h] = _mm_fmadd_ps(dm, prod, accm[r][p][h]);
                    }
                }
            }
        }
    }
    for r in 0..R {
        for p in 0..P {
            for h in 0..2 {
                tl.put(r, p, h, hsum8(acc[r][p][h]) + hsum4(accm[r][p][h]));
            }
        }
    }
}

/// B32 (Q8_0, Q4_0, Q5_0, IQ4_NL) over an `R × P` tile (`2P` tokens), with the legacy dots'
/// four accumulators (see `avx512::b32`). Without VNNI the u8 × i8 product of the offset
/// activations could saturate, so the activations are flipped back to i8 and multiplied by the
/// sign trick the dot uses (`|w| · sign(a, w)`).
///
/// # Safety
/// As for [`k16`], with B32 units; `tl.nb_tail` as in `avx512::b32`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn b32<const R: usize, const P: usize>(tl: &mut Tile) {
    let mut acc = [[[[_mm256_setzero_ps(); 4]; 2]; P]; R];
    let whole = tl.units - usize::from(tl.nb_tail > 0);
    let flip = _mm256_set1_epi8(0x80u8 as i8);
    let ones = _mm256_set1_epi16(1);
    macro_rules! block {
        ($u:expr, $k:expr, $slot:expr) => {{
            let (u, k, slot): (usize, usize, usize) = ($u, $k, $slot);
            // SAFETY: every offset stays inside unit `u` of a row `r < R` or pair `p < P`,
            // which the caller guarantees readable.
            unsafe {
                let wu: [*const u8; R] =
                    std::array::from_fn(|r| tl.w.add(r * tl.ws + u * B32_W_UNIT));
                let au: [*const u8; P] =
                    std::array::from_fn(|p| tl.a.add(p * tl.as_ + u * B32_A_UNIT));
                let wv: [__m256i; R] = std::array::from_fn(|r| load(wu[r].add(B32_W + 32 * k)));
                let aw: [__m256i; R] = std::array::from_fn(|r| _mm256_sign_epi8(wv[r], wv[r]));
                for p in 0..P {
                    for h in 0..2 {
                        let av = _mm256_xor_si256(load(au[p].add(BA_A + 64 * k + 32 * h)), flip);
                        let dy = _mm256_loadu_ps(au[p].add(BA_DY + 64 * k + 32 * h).cast());
                        for r in 0..R {
                            let sy = _mm256_sign_epi8(av, wv[r]);
                            let i = _mm256_madd_epi16(ones, _mm256_maddubs_epi16(aw[r], sy));
                            let dx = _mm256_set1_ps(f32p(wu[r].add(B32_DX + 4 * k)));
                            let d = _mm256_mul_ps(dx, dy);
                            let a = &mut acc[r][p][h][slot];
                            *a = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(i), *a);
                        }
                    }
                }
            }
        }};
    }
    for u in 0..whole {
        for k in 0..4 {
            block!(u, k, k);
        }
    }
    for k in 0..tl.nb_tail {
        block!(whole, k, 0);
    }
    for (r, row) in acc.iter().enumerate() {
        for (p, pair) in row.iter().enumerate() {
            for (h, a) in pair.iter().enumerate() {
                let s = _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3]));
                tl.put(r, p, h, hsum8(s));
            }
        }
    }
}
