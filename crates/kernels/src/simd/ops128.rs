//! The portable 128-bit op set the NEON kernels are written in. Each op is one NEON intrinsic on
//! AArch64 (named in its doc) and, elsewhere, a plain-Rust emulation with the same lane
//! semantics, so `neon.rs` compiles and is tested on x86 (the `neon-emulated` path) exactly as
//! it runs on ARM. Keep the set small: every op added here needs both halves.
//!
//! One op is deliberately loose: [`dot_i8`] defines only the *sum* of its four lanes (the 16
//! products added in), because ARM offers two lane layouts for it (`sdot` with FEAT_DotProd, and
//! ggml's `vmull_s8` + `vpaddlq_s16` fallback on baseline NEON) and kernels only ever reduce it
//! with [`hsum_i32`].

#[cfg(target_arch = "aarch64")]
pub use arm::*;
#[cfg(not(target_arch = "aarch64"))]
pub use emulated::*;

#[cfg(target_arch = "aarch64")]
// Register-only NEON intrinsics are safe to call on newer toolchains; the blocks stay for older
// ones that still mark them `unsafe`.
#[allow(unused_unsafe)]
mod arm {
    use std::arch::aarch64::*;

    pub type U8x16 = uint8x16_t;
    pub type I8x16 = int8x16_t;
    pub type I16x8 = int16x8_t;
    pub type I32x4 = int32x4_t;
    pub type U32x4 = uint32x4_t;
    pub type F32x4 = float32x4_t;

    /// `vld1q_u8` of `b[off..off + 16]`.
    #[inline(always)]
    pub fn load_u8(b: &[u8], off: usize) -> U8x16 {
        let s = &b[off..off + 16];
        // SAFETY: `s` is 16 readable bytes (checked); NEON is in the AArch64 baseline.
        unsafe { vld1q_u8(s.as_ptr()) }
    }
    /// `vld1q_s8` of `b[off..off + 16]`.
    #[inline(always)]
    pub fn load_i8(b: &[u8], off: usize) -> I8x16 {
        let s = &b[off..off + 16];
        // SAFETY: `s` is 16 readable bytes (checked); NEON is in the AArch64 baseline.
        unsafe { vld1q_s8(s.as_ptr() as *const i8) }
    }
    /// `vld1q_u8` of an array.
    #[inline(always)]
    pub fn from_u8(a: [u8; 16]) -> U8x16 {
        // SAFETY: `a` is 16 readable bytes; NEON is in the AArch64 baseline.
        unsafe { vld1q_u8(a.as_ptr()) }
    }
    /// `vld1q_s8` of an array.
    #[inline(always)]
    pub fn from_i8(a: [i8; 16]) -> I8x16 {
        // SAFETY: `a` is 16 readable bytes; NEON is in the AArch64 baseline.
        unsafe { vld1q_s8(a.as_ptr()) }
    }
    /// `vdupq_n_u8`.
    #[inline(always)]
    pub fn splat_u8(v: u8) -> U8x16 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vdupq_n_u8(v) }
    }
    /// `vandq_u8`.
    #[inline(always)]
    pub fn and_u8(a: U8x16, b: U8x16) -> U8x16 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vandq_u8(a, b) }
    }
    /// `vorrq_u8`.
    #[inline(always)]
    pub fn or_u8(a: U8x16, b: U8x16) -> U8x16 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vorrq_u8(a, b) }
    }
    /// `vshlq_u8` by `-n`: logical right shift of every byte by `n` (0..8).
    #[inline(always)]
    pub fn shr_u8(a: U8x16, n: u32) -> U8x16 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vshlq_u8(a, vdupq_n_s8(-(n as i8))) }
    }
    /// `vshlq_u8` by `n`: left shift of every byte by `n` (0..8), bits shifted out are lost.
    #[inline(always)]
    pub fn shl_u8(a: U8x16, n: u32) -> U8x16 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vshlq_u8(a, vdupq_n_s8(n as i8)) }
    }
    /// `vtstq_u8`: 0xFF where `a & b` is non-zero, else 0.
    #[inline(always)]
    pub fn test_u8(a: U8x16, b: U8x16) -> U8x16 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vtstq_u8(a, b) }
    }
    /// `vreinterpretq_s8_u8`.
    #[inline(always)]
    pub fn as_i8(a: U8x16) -> I8x16 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vreinterpretq_s8_u8(a) }
    }
    /// `vreinterpretq_u8_s8`.
    #[inline(always)]
    pub fn as_u8(a: I8x16) -> U8x16 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vreinterpretq_u8_s8(a) }
    }
    /// `vsubq_s8` (wrapping).
    #[inline(always)]
    pub fn sub_i8(a: I8x16, b: I8x16) -> I8x16 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vsubq_s8(a, b) }
    }
    /// `vqtbl1q_s8`: `table[idx[i]]`, 0 for indices ≥ 16.
    #[inline(always)]
    pub fn lookup_i8(table: I8x16, idx: U8x16) -> I8x16 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vqtbl1q_s8(table, idx) }
    }
    /// Adds the 16 products `a[i]·b[i]` into `acc` (lane layout unspecified, see module docs):
    /// ggml's baseline-NEON `ggml_vdotq_s32` (`vmull_s8`, `vpaddlq_s16`, `vaddq_s32`).
    #[inline(always)]
    pub fn dot_i8(acc: I32x4, a: I8x16, b: I8x16) -> I32x4 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe {
            let p0 = vmull_s8(vget_low_s8(a), vget_low_s8(b));
            let p1 = vmull_high_s8(a, b);
            vaddq_s32(acc, vaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1)))
        }
    }
    /// `vdupq_n_s32(0)`.
    #[inline(always)]
    pub fn zero_i32() -> I32x4 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vdupq_n_s32(0) }
    }
    /// `vaddvq_s32` (wrapping).
    #[inline(always)]
    pub fn hsum_i32(a: I32x4) -> i32 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vaddvq_s32(a) }
    }
    /// `vmovl_s8` of the low half.
    #[inline(always)]
    pub fn widen_lo_i8(a: I8x16) -> I16x8 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vmovl_s8(vget_low_s8(a)) }
    }
    /// `vmovl_high_s8`.
    #[inline(always)]
    pub fn widen_hi_i8(a: I8x16) -> I16x8 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vmovl_high_s8(a) }
    }
    /// `vmovl_s16` of the low half.
    #[inline(always)]
    pub fn widen_lo_i16(a: I16x8) -> I32x4 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vmovl_s16(vget_low_s16(a)) }
    }
    /// `vmovl_high_s16`.
    #[inline(always)]
    pub fn widen_hi_i16(a: I16x8) -> I32x4 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vmovl_high_s16(a) }
    }
    /// The 8 u16 of `b[off..off + 16]` widened to u32 (`vmovl_u16` of the low half when `hi` is
    /// false, `vmovl_high_u16` otherwise).
    #[inline(always)]
    pub fn load_widen_u16(b: &[u8], off: usize, hi: bool) -> U32x4 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe {
            let v = vreinterpretq_u16_u8(load_u8(b, off));
            if hi {
                vmovl_high_u16(v)
            } else {
                vmovl_u16(vget_low_u16(v))
            }
        }
    }
    /// `vshlq_n_u32::<16>` then `vreinterpretq_f32_u32`: bf16 bits to f32.
    #[inline(always)]
    pub fn bf16_bits_to_f32(a: U32x4) -> F32x4 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vreinterpretq_f32_u32(vshlq_n_u32::<16>(a)) }
    }
    /// `vcvtq_f32_s32`.
    #[inline(always)]
    pub fn cvt_f32(a: I32x4) -> F32x4 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vcvtq_f32_s32(a) }
    }
    /// `vdupq_n_f32`.
    #[inline(always)]
    pub fn splat_f32(v: f32) -> F32x4 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vdupq_n_f32(v) }
    }
    /// `vmulq_f32`.
    #[inline(always)]
    pub fn mul_f32(a: F32x4, b: F32x4) -> F32x4 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vmulq_f32(a, b) }
    }
    /// `vaddq_f32`.
    #[inline(always)]
    pub fn add_f32(a: F32x4, b: F32x4) -> F32x4 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vaddq_f32(a, b) }
    }
    /// `vfmaq_f32`: `acc + a·b` with one rounding.
    #[inline(always)]
    pub fn fma_f32(acc: F32x4, a: F32x4, b: F32x4) -> F32x4 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vfmaq_f32(acc, a, b) }
    }
    /// `vaddvq_f32`: `(a0 + a1) + (a2 + a3)`.
    #[inline(always)]
    pub fn hsum_f32(a: F32x4) -> f32 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vaddvq_f32(a) }
    }
    /// `vld1q_u8` of `b[off..off + 16]` reinterpreted as four little-endian f32.
    #[inline(always)]
    pub fn load_f32(b: &[u8], off: usize) -> F32x4 {
        // SAFETY: NEON is part of the AArch64 baseline, and this touches no memory.
        unsafe { vreinterpretq_f32_u8(load_u8(b, off)) }
    }
    /// `vld1q_f32` of an array.
    #[inline(always)]
    pub fn from_f32(a: [f32; 4]) -> F32x4 {
        // SAFETY: `a` is 4 readable floats; NEON is in the AArch64 baseline.
        unsafe { vld1q_f32(a.as_ptr()) }
    }
    /// `vst1q_f32` into `out[off..off + 4]`.
    #[inline(always)]
    pub fn store_f32(out: &mut [f32], off: usize, v: F32x4) {
        let s = &mut out[off..off + 4];
        // SAFETY: `s` is 4 writable floats (checked); NEON is in the AArch64 baseline.
        unsafe { vst1q_f32(s.as_mut_ptr(), v) }
    }
}

#[cfg(not(target_arch = "aarch64"))]
mod emulated {
    /// 16 u8 lanes.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct U8x16(pub [u8; 16]);
    /// 16 i8 lanes.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct I8x16(pub [i8; 16]);
    /// 8 i16 lanes.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct I16x8(pub [i16; 8]);
    /// 4 i32 lanes.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct I32x4(pub [i32; 4]);
    /// 4 u32 lanes.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct U32x4(pub [u32; 4]);
    /// 4 f32 lanes.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub struct F32x4(pub [f32; 4]);

    #[inline(always)]
    pub fn load_u8(b: &[u8], off: usize) -> U8x16 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&b[off..off + 16]);
        U8x16(a)
    }
    #[inline(always)]
    pub fn load_i8(b: &[u8], off: usize) -> I8x16 {
        as_i8(load_u8(b, off))
    }
    #[inline(always)]
    pub fn from_u8(a: [u8; 16]) -> U8x16 {
        U8x16(a)
    }
    #[inline(always)]
    pub fn from_i8(a: [i8; 16]) -> I8x16 {
        I8x16(a)
    }
    #[inline(always)]
    pub fn splat_u8(v: u8) -> U8x16 {
        U8x16([v; 16])
    }
    #[inline(always)]
    pub fn and_u8(a: U8x16, b: U8x16) -> U8x16 {
        U8x16(std::array::from_fn(|i| a.0[i] & b.0[i]))
    }
    #[inline(always)]
    pub fn or_u8(a: U8x16, b: U8x16) -> U8x16 {
        U8x16(std::array::from_fn(|i| a.0[i] | b.0[i]))
    }
    #[inline(always)]
    pub fn shr_u8(a: U8x16, n: u32) -> U8x16 {
        U8x16(std::array::from_fn(|i| a.0[i].checked_shr(n).unwrap_or(0)))
    }
    #[inline(always)]
    pub fn shl_u8(a: U8x16, n: u32) -> U8x16 {
        U8x16(std::array::from_fn(|i| a.0[i].checked_shl(n).unwrap_or(0)))
    }
    #[inline(always)]
    pub fn test_u8(a: U8x16, b: U8x16) -> U8x16 {
        U8x16(std::array::from_fn(|i| {
            if a.0[i] & b.0[i] != 0 {
                0xff
            } else {
                0
            }
        }))
    }
    #[inline(always)]
    pub fn as_i8(a: U8x16) -> I8x16 {
        I8x16(a.0.map(|v| v as i8))
    }
    #[inline(always)]
    pub fn as_u8(a: I8x16) -> U8x16 {
        U8x16(a.0.map(|v| v as u8))
    }
    #[inline(always)]
    pub fn sub_i8(a: I8x16, b: I8x16) -> I8x16 {
        I8x16(std::array::from_fn(|i| a.0[i].wrapping_sub(b.0[i])))
    }
    #[inline(always)]
    pub fn lookup_i8(table: I8x16, idx: U8x16) -> I8x16 {
        I8x16(idx.0.map(|k| if k < 16 { table.0[k as usize] } else { 0 }))
    }
    /// Emulated with `sdot`'s layout: lane `i` gains products `4i..4i+4`.
    #[inline(always)]
    pub fn dot_i8(acc: I32x4, a: I8x16, b: I8x16) -> I32x4 {
        I32x4(std::array::from_fn(|l| {
            let s: i32 = (4 * l..4 * l + 4)
                .map(|k| a.0[k] as i32 * b.0[k] as i32)
                .sum();
            acc.0[l].wrapping_add(s)
        }))
    }
    #[inline(always)]
    pub fn zero_i32() -> I32x4 {
        I32x4([0; 4])
    }
    #[inline(always)]
    pub fn hsum_i32(a: I32x4) -> i32 {
        a.0.iter().fold(0i32, |s, v| s.wrapping_add(*v))
    }
    #[inline(always)]
    pub fn widen_lo_i8(a: I8x16) -> I16x8 {
        I16x8(std::array::from_fn(|i| a.0[i] as i16))
    }
    #[inline(always)]
    pub fn widen_hi_i8(a: I8x16) -> I16x8 {
        I16x8(std::array::from_fn(|i| a.0[8 + i] as i16))
    }
    #[inline(always)]
    pub fn widen_lo_i16(a: I16x8) -> I32x4 {
        I32x4(std::array::from_fn(|i| a.0[i] as i32))
    }
    #[inline(always)]
    pub fn widen_hi_i16(a: I16x8) -> I32x4 {
        I32x4(std::array::from_fn(|i| a.0[4 + i] as i32))
    }
    #[inline(always)]
    pub fn load_widen_u16(b: &[u8], off: usize, hi: bool) -> U32x4 {
        let base = off + if hi { 8 } else { 0 };
        U32x4(std::array::from_fn(|i| {
            u16::from_le_bytes([b[base + 2 * i], b[base + 2 * i + 1]]) as u32
        }))
    }
    #[inline(always)]
    pub fn bf16_bits_to_f32(a: U32x4) -> F32x4 {
        F32x4(a.0.map(|v| f32::from_bits(v << 16)))
    }
    #[inline(always)]
    pub fn cvt_f32(a: I32x4) -> F32x4 {
        F32x4(a.0.map(|v| v as f32))
    }
    #[inline(always)]
    pub fn splat_f32(v: f32) -> F32x4 {
        F32x4([v; 4])
    }
    #[inline(always)]
    pub fn mul_f32(a: F32x4, b: F32x4) -> F32x4 {
        F32x4(std::array::from_fn(|i| a.0[i] * b.0[i]))
    }
    #[inline(always)]
    pub fn add_f32(a: F32x4, b: F32x4) -> F32x4 {
        F32x4(std::array::from_fn(|i| a.0[i] + b.0[i]))
    }
    #[inline(always)]
    pub fn fma_f32(acc: F32x4, a: F32x4, b: F32x4) -> F32x4 {
        F32x4(std::array::from_fn(|i| a.0[i].mul_add(b.0[i], acc.0[i])))
    }
    #[inline(always)]
    pub fn hsum_f32(a: F32x4) -> f32 {
        (a.0[0] + a.0[1]) + (a.0[2] + a.0[3])
    }
    #[inline(always)]
    pub fn load_f32(b: &[u8], off: usize) -> F32x4 {
        F32x4(std::array::from_fn(|i| {
            let o = off + 4 * i;
            f32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
        }))
    }
    #[inline(always)]
    pub fn from_f32(a: [f32; 4]) -> F32x4 {
        F32x4(a)
    }
    #[inline(always)]
    pub fn store_f32(out: &mut [f32], off: usize, v: F32x4) {
        out[off..off + 4].copy_from_slice(&v.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_adds_all_products() {
        let a: [i8; 16] = std::array::from_fn(|i| (i as i8 - 8) * 15);
        let b: [i8; 16] = std::array::from_fn(|i| 127 - 17 * i as i8);
        let want: i32 = (0..16).map(|i| a[i] as i32 * b[i] as i32).sum();
        let acc = dot_i8(zero_i32(), from_i8(a), from_i8(b));
        assert_eq!(hsum_i32(acc), want);
        assert_eq!(hsum_i32(dot_i8(acc, from_i8(a), from_i8(b))), 2 * want);
    }

    #[test]
    fn lookup_shift_and_test() {
        let t: [i8; 16] = std::array::from_fn(|i| i as i8 * 3 - 20);
        let idx = from_u8(std::array::from_fn(|i| (15 - i) as u8));
        let got = lookup_i8(from_i8(t), idx);
        let expect = from_i8(std::array::from_fn(|i| t[15 - i]));
        let lanes = |v: I8x16| -> [i8; 16] {
            let mut out = [0f32; 16];
            store_i8_as_f32(v, &mut out);
            out.map(|x| x as i8)
        };
        assert_eq!(lanes(got), lanes(expect));
        let s = shr_u8(splat_u8(0xb4), 2);
        let m = test_u8(s, splat_u8(0x01));
        assert_eq!(lanes(as_i8(and_u8(m, splat_u8(7)))), [7i8; 16]);
    }

    /// i8 lanes → f32 through the widening ops (what the dequantizers do).
    fn store_i8_as_f32(v: I8x16, out: &mut [f32; 16]) {
        let lo = widen_lo_i8(v);
        let hi = widen_hi_i8(v);
        store_f32(out, 0, cvt_f32(widen_lo_i16(lo)));
        store_f32(out, 4, cvt_f32(widen_hi_i16(lo)));
        store_f32(out, 8, cvt_f32(widen_lo_i16(hi)));
        store_f32(out, 12, cvt_f32(widen_hi_i16(hi)));
    }
}
