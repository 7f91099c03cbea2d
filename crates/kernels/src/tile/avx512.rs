//! Register-tiled products on AVX-512 (F/BW/VL + VNNI): `R` weight rows × `P` token pairs per
//! call, every 512-bit register holding one row's 8 lanes for both tokens of a pair. Per
//! 32-value group a row's packed weights are broadcast once and meet `P` pairs; a pair's
//! activations are loaded once and meet `R` rows. The integer sums go through `vpmaddubsw`
//! and `vpdpwssd` (scale per 16 or 32 values) or `vpdpbusd` (legacy blocks), exact in i32.
//!
//! Each output's float work is the per-pair dot's, lane for lane: the same 8 i32 lanes per
//! super-block (or block), converted and FMA'd with the same `dx · dy` in the same order into
//! the same accumulators, and the same horizontal sum at the end. So every output is
//! bit-identical to `vec_dot` on the AVX2 and AVX-512 paths.

// The tiles index several arrays by the same row and pair counters.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::pack::*;
use super::Tile;
use crate::GgmlType;
// The dots' horizontal sums, so each output ends in the dot's order.
use crate::simd::avx512::k256::{hsum_f32x4 as hsum4, hsum_f32x8 as hsum8};

/// [`pack_weights`] compiled for this path, so its byte loops vectorize.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) fn pack(fam: Family, ty: GgmlType, w: &[u8], row_bytes: usize, out: &mut [u8]) {
    pack_weights(fam, ty, w, row_bytes, out)
}

/// The two 8-lane halves of a pair's accumulator.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn halves(x: __m512) -> [__m256; 2] {
    let hi = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x));
    [_mm512_castps512_ps256(x), _mm256_castpd_ps(hi)]
}

/// 32 bytes at `p` in both halves of a register.
///
/// # Safety
/// `p` must point at 32 readable bytes.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn bcast256(p: *const u8) -> __m512i {
    // SAFETY: the caller guarantees 32 readable bytes; the load is unaligned.
    _mm512_broadcast_i64x4(unsafe { _mm256_loadu_si256(p.cast()) })
}

/// 64 bytes at `p`.
///
/// # Safety
/// `p` must point at 64 readable bytes.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn load512(p: *const u8) -> __m512i {
    // SAFETY: the caller guarantees 64 readable bytes; the load is unaligned.
    unsafe { _mm512_loadu_si512(p.cast()) }
}

/// K16 (Q6_K, Q3_K) over an `R × P` tile.
///
/// # Safety
/// The CPU must have this module's features; `tl.w` must address `R` packed rows of
/// `tl.units` K16 units `tl.ws` bytes apart and `tl.a` `P` packed pairs `tl.as_` apart.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn k16<const R: usize, const P: usize>(tl: &mut Tile) {
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    for u in 0..tl.units {
        // SAFETY: all pointer arithmetic and loads below stay inside unit `u` of a row
        // `r < R` or pair `p < P`, which the caller guarantees readable.
        unsafe {
            let wu: [*const u8; R] = std::array::from_fn(|r| tl.w.add(r * tl.ws + u * K16_W_UNIT));
            let au: [*const u8; P] = std::array::from_fn(|p| tl.a.add(p * tl.as_ + u * K16_A_UNIT));
            let mut sumi = [[_mm512_setzero_si512(); P]; R];
            for r in 0..R {
                let nc = bcast256(wu[r].add(K16_NEGCORR));
                sumi[r] = [nc; P];
            }
            for g in 0..8 {
                let wv: [__m512i; R] = std::array::from_fn(|r| bcast256(wu[r].add(32 * g)));
                let sv: [__m512i; R] = std::array::from_fn(|r| bcast256(wu[r].add(K16_S + 32 * g)));
                for p in 0..P {
                    let av = load512(au[p].add(KA_A + 64 * g));
                    for r in 0..R {
                        let t = _mm512_maddubs_epi16(av, wv[r]);
                        sumi[r][p] = _mm512_dpwssd_epi32(sumi[r][p], t, sv[r]);
                    }
                }
            }
            for p in 0..P {
                let dy = _mm512_castsi512_ps(load512(au[p].add(KA_DY)));
                for r in 0..R {
                    let d = _mm512_mul_ps(_mm512_set1_ps(f32p(wu[r].add(K16_DX))), dy);
                    acc[r][p] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi[r][p]), acc[r][p]);
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (p, a) in row.iter().enumerate() {
            for (h, x) in halves(*a).into_iter().enumerate() {
                tl.put(r, p, h, hsum8(x));
            }
        }
    }
}

/// K32 (Q4_K, Q5_K) over an `R × P` tile.
///
/// # Safety
/// As for [`k16`], with K32 units.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn k32<const R: usize, const P: usize>(tl: &mut Tile) {
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    let mut accm = [[_mm256_setzero_ps(); P]; R];
    for u in 0..tl.units {
        // SAFETY: all pointer arithmetic and loads below stay inside unit `u` of a row
        // `r < R` or pair `p < P`, which the caller guarantees readable.
        unsafe {
            let wu: [*const u8; R] = std::array::from_fn(|r| tl.w.add(r * tl.ws + u * K32_W_UNIT));
            let au: [*const u8; P] = std::array::from_fn(|p| tl.a.add(p * tl.as_ + u * K32_A_UNIT));
            let mut sumi = [[_mm512_setzero_si512(); P]; R];
            for g in 0..8 {
                let wv: [__m512i; R] = std::array::from_fn(|r| bcast256(wu[r].add(32 * g)));
                let sv: [__m512i; R] = std::array::from_fn(|r| {
                    _mm512_set1_epi32(wu[r].add(K32_SP + 4 * g).cast::<i32>().read_unaligned())
                });
                for p in 0..P {
                    let av = load512(au[p].add(KA_A + 64 * g));
                    for r in 0..R {
                        let t = _mm512_maddubs_epi16(wv[r], av);
                        sumi[r][p] = _mm512_dpwssd_epi32(sumi[r][p], t, sv[r]);
                    }
                }
            }
            for p in 0..P {
                let dy = _mm512_castsi512_ps(load512(au[p].add(KA_DY)));
                let bp = _mm256_loadu_si256(au[p].add(KA_BP).cast());
                let ndy = _mm256_loadu_ps(au[p].add(KA_NEGDY).cast());
                for r in 0..R {
                    let d = _mm512_mul_ps(_mm512_set1_ps(f32p(wu[r].add(K32_DX))), dy);
                    acc[r][p] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi[r][p]), acc[r][p]);
                    let mins = _mm256_loadu_si256(wu[r].add(K32_MINS).cast());
                    let prod = _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, bp));
                    let dm = _mm256_mul_ps(_mm256_set1_ps(f32p(wu[r].add(K32_DMX))), ndy);
                    accm[r][p] = _mm256_fmadd_ps(dm, prod, accm[r][p]);
                }
            }
        }
    }
    for r in 0..R {
        for p in 0..P {
            let m = accm[r][p];
            let ms = [_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m)];
            for (h, x) in halves(acc[r][p]).into_iter().enumerate() {
                tl.put(r, p, h, hsum8(x) + hsum4(ms[h]));
            }
        }
    }
}

/// B32 (Q8_0, Q4_0, Q5_0, IQ4_NL) over an `R × P` tile: four accumulators per output, block
/// `4i + k` into accumulator `k`, the blocks past the last whole four into accumulator 0 after
/// them, summed `(a0 + a1) + (a2 + a3)`, as the legacy dots do.
///
/// # Safety
/// As for [`k16`], with B32 units; `tl.nb_tail` (0..4) is the count of blocks in the last unit
/// when it is partial, 0 when every unit is whole.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn b32<const R: usize, const P: usize>(tl: &mut Tile) {
    let mut acc = [[[_mm512_setzero_ps(); 4]; P]; R];
    let whole = tl.units - usize::from(tl.nb_tail > 0);
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
                let wv: [__m512i; R] = std::array::from_fn(|r| bcast256(wu[r].add(B32_W + 32 * k)));
                let nc: [__m512i; R] =
                    std::array::from_fn(|r| bcast256(wu[r].add(B32_NEGCORR + 32 * k)));
                for p in 0..P {
                    let av = load512(au[p].add(BA_A + 64 * k));
                    let dy = _mm512_castsi512_ps(load512(au[p].add(BA_DY + 64 * k)));
                    for r in 0..R {
                        let s = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(nc[r], av, wv[r]));
                        let dx = _mm512_set1_ps(f32p(wu[r].add(B32_DX + 4 * k)));
                        let d = _mm512_mul_ps(dx, dy);
                        acc[r][p][slot] = _mm512_fmadd_ps(d, s, acc[r][p][slot]);
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
        for (p, a) in row.iter().enumerate() {
            let s = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]));
            for (h, x) in halves(s).into_iter().enumerate() {
                tl.put(r, p, h, hsum8(x));
            }
        }
    }
}
