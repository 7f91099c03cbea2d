//! Byte offsets inside each ggml block and the small scalar unpacking steps every kernel path
//! shares. Kernels work on raw row bytes rather than on `&[Block*]` because rows come from
//! memory-mapped files at arbitrary alignment; reading fields through these helpers never needs
//! an aligned cast. Offsets follow `ggml-common.h` (see `crate::blocks` for the structs).

use crate::fp::{bf16_to_f32, f16_to_f32};

/// Reads the little-endian u16 at `off`.
#[inline(always)]
pub fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

/// Reads the fp16 at `off` as f32.
#[inline(always)]
pub fn f16_at(b: &[u8], off: usize) -> f32 {
    f16_to_f32(u16_at(b, off))
}

/// Reads the bf16 at `off` as f32.
#[inline(always)]
pub fn bf16_at(b: &[u8], off: usize) -> f32 {
    bf16_to_f32(u16_at(b, off))
}

/// Reads the little-endian f32 at `off`.
#[inline(always)]
pub fn f32_at(b: &[u8], off: usize) -> f32 {
    f32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Reads the little-endian u32 at `off`.
#[inline(always)]
pub fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Reads the little-endian i16 at `off`.
#[inline(always)]
pub fn i16_at(b: &[u8], off: usize) -> i16 {
    i16::from_le_bytes([b[off], b[off + 1]])
}

// Q4_0 {d; qs[16]}, IQ4_NL has the same shape.
pub const Q4_0_QS: usize = 2;
// Q4_1 {d; m; qs[16]}
pub const Q4_1_M: usize = 2;
pub const Q4_1_QS: usize = 4;
// Q5_0 {d; qh[4]; qs[16]}
pub const Q5_0_QH: usize = 2;
pub const Q5_0_QS: usize = 6;
// Q5_1 {d; m; qh[4]; qs[16]}
pub const Q5_1_M: usize = 2;
pub const Q5_1_QH: usize = 4;
pub const Q5_1_QS: usize = 8;
// Q8_0 {d; qs[32]}
pub const Q8_0_QS: usize = 2;
// Q8_1 {d; s; qs[32]}
pub const Q8_1_S: usize = 2;
pub const Q8_1_QS: usize = 4;
// Q2_K {scales[16]; qs[64]; d; dmin}
pub const Q2K_SCALES: usize = 0;
pub const Q2K_QS: usize = 16;
pub const Q2K_D: usize = 80;
pub const Q2K_DMIN: usize = 82;
// Q3_K {hmask[32]; qs[64]; scales[12]; d}
pub const Q3K_HMASK: usize = 0;
pub const Q3K_QS: usize = 32;
pub const Q3K_SCALES: usize = 96;
pub const Q3K_D: usize = 108;
// Q4_K {d; dmin; scales[12]; qs[128]}
pub const Q4K_DMIN: usize = 2;
pub const Q4K_SCALES: usize = 4;
pub const Q4K_QS: usize = 16;
// Q5_K {d; dmin; scales[12]; qh[32]; qs[128]}
pub const Q5K_DMIN: usize = 2;
pub const Q5K_SCALES: usize = 4;
pub const Q5K_QH: usize = 16;
pub const Q5K_QS: usize = 48;
// Q6_K {ql[128]; qh[64]; scales[16] (i8); d}
pub const Q6K_QL: usize = 0;
pub const Q6K_QH: usize = 128;
pub const Q6K_SCALES: usize = 192;
pub const Q6K_D: usize = 208;
// Q8_K {d (f32); qs[256]; bsums[16] (i16)}
pub const Q8K_QS: usize = 4;
pub const Q8K_BSUMS: usize = 260;
// IQ4_XS {d; scales_h; scales_l[4]; qs[128]}
pub const IQ4XS_SCALES_H: usize = 2;
pub const IQ4XS_SCALES_L: usize = 4;
pub const IQ4XS_QS: usize = 8;

/// Unpacks the 12 packed 6-bit (scale, min) pairs of Q4_K/Q5_K into 8 scales then 8 mins, with
/// the same mask arithmetic ggml-cpu uses (`kmask1..3` on four u32 words), so every path sees the
/// same integers as `get_scale_min_k4`.
#[inline(always)]
pub fn k4_scales_mins(s: &[u8]) -> [u8; 16] {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let mut u = [u32_at(s, 0), u32_at(s, 4), u32_at(s, 8), 0];
    u[3] = ((u[2] >> 4) & KMASK2) | (((u[1] >> 6) & KMASK3) << 4);
    let uaux = u[1] & KMASK1;
    u[1] = (u[2] & KMASK2) | (((u[0] >> 6) & KMASK3) << 4);
    u[2] = uaux;
    u[0] &= KMASK1;
    let mut out = [0u8; 16];
    for (i, w) in u.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// The 16 6-bit Q3_K scales (stored +32) as four little-endian words of four bytes each, by
/// ggml's `kmask1`/`kmask2` word shuffle; [`q3k_scales`] removes the offset.
#[inline(always)]
pub fn q3k_scale_words(s: &[u8]) -> [u32; 4] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let a0 = u32_at(s, 0);
    let a1 = u32_at(s, 4);
    let tmp = u32_at(s, 8);
    [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ]
}

/// Unpacks the 16 6-bit Q3_K scales (stored +32) into signed values with the 32 offset removed.
#[inline(always)]
pub fn q3k_scales(s: &[u8]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (i, w) in q3k_scale_words(s).iter().enumerate() {
        for (k, byte) in w.to_le_bytes().iter().enumerate() {
            out[4 * i + k] = *byte as i8 - 32;
        }
    }
    out
}

/// The 6-bit IQ4_XS scale of sub-block `ib` with its 32 offset removed.
#[inline(always)]
pub fn iq4xs_scale(b: &[u8], ib: usize) -> i32 {
    let h = u16_at(b, IQ4XS_SCALES_H) as i32;
    let l = b[IQ4XS_SCALES_L + ib / 2] as i32;
    (((l >> (4 * (ib % 2))) & 0xf) | (((h >> (2 * ib)) & 3) << 4)) - 32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `get_scale_min_k4` as ggml writes it, to check the word-shuffle version against.
    fn get_scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
        if j < 4 {
            (q[j] & 63, q[j + 4] & 63)
        } else {
            (
                (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
                (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
            )
        }
    }

    #[test]
    fn k4_unpack_matches_get_scale_min() {
        let mut s = [0u8; 12];
        for seed in 0u32..2000 {
            for (i, b) in s.iter_mut().enumerate() {
                *b = (seed.wrapping_mul(2_654_435_761).rotate_left(i as u32 * 5) >> 3) as u8;
            }
            let u = k4_scales_mins(&s);
            for j in 0..8 {
                assert_eq!(get_scale_min_k4(j, &s), (u[j], u[8 + j]));
            }
        }
    }

    #[test]
    fn q3k_unpack_matches_ggml() {
        let mut s = [0u8; 12];
        for seed in 0u32..2000 {
            for (i, b) in s.iter_mut().enumerate() {
                *b = (seed.wrapping_mul(2_246_822_519).rotate_left(i as u32 * 7) >> 5) as u8;
            }
            let u = q3k_scales(&s);
            for j in 0..16 {
                let low = if j < 8 { s[j] & 0xf } else { s[j - 8] >> 4 };
                let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
                assert_eq!(u[j] as i32, (low | (high << 4)) as i32 - 32);
            }
        }
    }
}
