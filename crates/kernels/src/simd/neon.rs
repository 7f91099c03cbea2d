//! The NEON path: ggml-cpu's `arch/arm/quants.c` algorithms (nibble masks, `vqtbl1q` code-book
//! lookups, `vdotq_s32`-style i8 dot products per 16 or 32 values, one float multiply-add per
//! block) written over the op set in [`super::ops128`]. On AArch64 every op is one NEON
//! instruction; elsewhere the same code runs on the op set's emulation, which is how it is
//! tested on x86 (`neon-emulated`).
//!
//! Dequantization uses plain multiplies and adds, so it is bit-identical to the scalar path; the
//! dot products differ from it only in float summation order. F16 values are widened with the
//! scalar conversion: Rust's stable `core::arch::aarch64` has no f16 vector types yet.

use super::layout::*;
use super::ops128::*;
use super::scalar;
use crate::blocks::KVALUES_IQ4NL;
use crate::GgmlType;

/// Dequantizes whole blocks of `ty` (lengths checked by the dispatcher).
pub fn dequantize(ty: GgmlType, x: &[u8], out: &mut [f32]) {
    use GgmlType::*;
    let ts = ty.type_size();
    let bs = ty.block_size();
    if ty == BF16 {
        return deq_bf16(x, out);
    }
    let f: fn(&[u8], &mut [f32]) = match ty {
        Q4_0 => deq_q4_0,
        Q4_1 => deq_q4_1,
        Q5_0 => deq_q5_0,
        Q5_1 => deq_q5_1,
        Q8_0 => deq_q8_0,
        IQ4NL => deq_iq4_nl,
        IQ4XS => deq_iq4_xs,
        Q2K => deq_q2_k,
        Q3K => deq_q3_k,
        Q4K => deq_q4_k,
        Q5K => deq_q5_k,
        Q6K => deq_q6_k,
        F32 | F16 | BF16 | Q8_1 | Q8K => return scalar::dequantize(ty, x, out),
    };
    for (b, y) in x.chunks_exact(ts).zip(out.chunks_exact_mut(bs)) {
        f(b, y);
    }
}

/// Dot product of weight blocks `x` with activation blocks `y` (lengths checked by the
/// dispatcher).
pub fn vec_dot(ty: GgmlType, x: &[u8], y: &[u8]) -> f32 {
    use GgmlType::*;
    match ty {
        F32 => dot_float(ty, x, y, |b, k| load_f32(b, 16 * k)),
        F16 => dot_float(ty, x, y, |b, k| {
            from_f32(std::array::from_fn(|i| f16_at(b, 8 * k + 2 * i)))
        }),
        BF16 => dot_float(ty, x, y, |b, k| {
            bf16_bits_to_f32(load_widen_u16(b, 16 * (k / 2), k % 2 == 1))
        }),
        Q4_0 => dot_q4_0(x, y),
        Q4_1 => dot_q4_1(x, y),
        Q5_0 => dot_q5_0(x, y),
        Q5_1 => dot_q5_1(x, y),
        Q8_0 => dot_q8_0(x, y),
        IQ4NL => dot_iq4_nl(x, y),
        Q2K => dot_q2_k(x, y),
        Q3K => dot_q3_k(x, y),
        Q4K => dot_q4_k(x, y),
        Q5K => dot_q5_k(x, y),
        Q6K => dot_q6_k(x, y),
        IQ4XS => dot_iq4_xs(x, y),
        Q8_1 | Q8K => scalar::vec_dot(ty, x, y),
    }
}

// -------------------------------------------------------------------- helpers

/// The low and high nibbles of 16 packed bytes.
#[inline(always)]
fn nibbles(b: &[u8], off: usize) -> (U8x16, U8x16) {
    let v = load_u8(b, off);
    let m4 = splat_u8(0x0f);
    (and_u8(v, m4), shr_u8(v, 4))
}

#[inline(always)]
fn splat_i8(v: i8) -> I8x16 {
    as_i8(splat_u8(v as u8))
}

/// 16 i8 lanes widened to four f32 vectors.
#[inline(always)]
fn to_f32x16(q: I8x16) -> [F32x4; 4] {
    let lo = widen_lo_i8(q);
    let hi = widen_hi_i8(q);
    [
        cvt_f32(widen_lo_i16(lo)),
        cvt_f32(widen_hi_i16(lo)),
        cvt_f32(widen_lo_i16(hi)),
        cvt_f32(widen_hi_i16(hi)),
    ]
}

/// `out[off..off + 16] = q * d`.
#[inline(always)]
fn store16_mul(out: &mut [f32], off: usize, q: I8x16, d: f32) {
    let d = splat_f32(d);
    for (k, v) in to_f32x16(q).into_iter().enumerate() {
        store_f32(out, off + 4 * k, mul_f32(v, d));
    }
}

/// `out[off..off + 16] = q * d + m` (two roundings, as ggml's scalar code).
#[inline(always)]
fn store16_mul_add(out: &mut [f32], off: usize, q: I8x16, d: f32, m: f32) {
    let (d, m) = (splat_f32(d), splat_f32(m));
    for (k, v) in to_f32x16(q).into_iter().enumerate() {
        store_f32(out, off + 4 * k, add_f32(mul_f32(v, d), m));
    }
}

/// The fifth bits of 16 elements of a Q5_0/Q5_1 block (`first` = 0 or 16) as 0x10 bytes: the
/// two `qh` bytes holding them are spread over 8 lanes each by a table lookup, then each lane
/// tests its own bit (ggml uses a 256-entry table instead; this needs no memory beyond `qh`).
#[inline(always)]
fn q5_high(b: &[u8], qh_off: usize, first: usize) -> U8x16 {
    const MASKS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let k = (first / 8) as u8;
    let idx: [u8; 16] = std::array::from_fn(|i| k + (i / 8) as u8);
    // `qh` is followed by the 16 `qs` bytes, so 16 bytes from `qh_off` stay inside the block.
    let bytes = as_u8(lookup_i8(as_i8(load_u8(b, qh_off)), from_u8(idx)));
    and_u8(test_u8(bytes, from_u8(MASKS)), splat_u8(0x10))
}

fn kvalues() -> I8x16 {
    from_i8(KVALUES_IQ4NL)
}

/// Σ over 16 values of the i8 products.
#[inline(always)]
fn dot16(a: I8x16, b: I8x16) -> i32 {
    hsum_i32(dot_i8(zero_i32(), a, b))
}

/// Σ over the 16 bsums of a Q8_K block of `bsums[j] * mins[j / per]`.
#[inline(always)]
fn bsum_dot(yb: &[u8], mins: &[u8], per: usize) -> i32 {
    (0..16)
        .map(|j| i16_at(yb, Q8K_BSUMS + 2 * j) as i32 * mins[j / per] as i32)
        .sum()
}

// ----------------------------------------------------------------- dequantize

fn deq_bf16(x: &[u8], out: &mut [f32]) {
    let mut xc = x.chunks_exact(16);
    let mut oc = out.chunks_exact_mut(8);
    for (b, y) in (&mut xc).zip(&mut oc) {
        store_f32(y, 0, bf16_bits_to_f32(load_widen_u16(b, 0, false)));
        store_f32(y, 4, bf16_bits_to_f32(load_widen_u16(b, 0, true)));
    }
    scalar::dequantize(GgmlType::BF16, xc.remainder(), oc.into_remainder());
}

fn deq_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let (lo, hi) = nibbles(b, Q4_0_QS);
    store16_mul(y, 0, sub_i8(as_i8(lo), splat_i8(8)), d);
    store16_mul(y, 16, sub_i8(as_i8(hi), splat_i8(8)), d);
}

fn deq_q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, Q4_1_M));
    let (lo, hi) = nibbles(b, Q4_1_QS);
    store16_mul_add(y, 0, as_i8(lo), d, m);
    store16_mul_add(y, 16, as_i8(hi), d, m);
}

fn deq_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let (lo, hi) = nibbles(b, Q5_0_QS);
    let lo = sub_i8(as_i8(or_u8(lo, q5_high(b, Q5_0_QH, 0))), splat_i8(16));
    let hi = sub_i8(as_i8(or_u8(hi, q5_high(b, Q5_0_QH, 16))), splat_i8(16));
    store16_mul(y, 0, lo, d);
    store16_mul(y, 16, hi, d);
}

fn deq_q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, Q5_1_M));
    let (lo, hi) = nibbles(b, Q5_1_QS);
    store16_mul_add(y, 0, as_i8(or_u8(lo, q5_high(b, Q5_1_QH, 0))), d, m);
    store16_mul_add(y, 16, as_i8(or_u8(hi, q5_high(b, Q5_1_QH, 16))), d, m);
}

fn deq_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    store16_mul(y, 0, load_i8(b, Q8_0_QS), d);
    store16_mul(y, 16, load_i8(b, Q8_0_QS + 16), d);
}

fn deq_iq4_nl(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let (lo, hi) = nibbles(b, Q4_0_QS);
    store16_mul(y, 0, lookup_i8(kvalues(), lo), d);
    store16_mul(y, 16, lookup_i8(kvalues(), hi), d);
}

fn deq_iq4_xs(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for ib in 0..8 {
        let dl = d * iq4xs_scale(b, ib) as f32;
        let (lo, hi) = nibbles(b, IQ4XS_QS + 16 * ib);
        store16_mul(y, 32 * ib, lookup_i8(kvalues(), lo), dl);
        store16_mul(y, 32 * ib + 16, lookup_i8(kvalues(), hi), dl);
    }
}

/// The 2-bit field at `shift` of 16 Q2_K/Q3_K quant bytes.
#[inline(always)]
fn crumbs(v: U8x16, shift: u32) -> U8x16 {
    and_u8(shr_u8(v, shift), splat_u8(3))
}

fn deq_q2_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, Q2K_D);
    let min = f16_at(b, Q2K_DMIN);
    for half in 0..2 {
        for p in 0..2 {
            let bits = load_u8(b, Q2K_QS + 32 * half + 16 * p);
            for j in 0..4 {
                let sc = b[Q2K_SCALES + 8 * half + 2 * j + p];
                let dl = d * (sc & 0xf) as f32;
                let ml = min * (sc >> 4) as f32;
                let q = as_i8(crumbs(bits, 2 * j as u32));
                store16_mul_add(y, 128 * half + 32 * j + 16 * p, q, dl, -ml);
            }
        }
    }
}

/// Q3_K values `low - (hbit ? 0 : 4)` of 16 elements: half `half`, shift group `j`, part `p`.
#[inline(always)]
fn q3_values(b: &[u8], half: usize, j: usize, p: usize) -> I8x16 {
    let low = crumbs(load_u8(b, Q3K_QS + 32 * half + 16 * p), 2 * j as u32);
    let hm = load_u8(b, Q3K_HMASK + 16 * p);
    let set = test_u8(hm, splat_u8(1u8 << (4 * half + j)));
    sub_i8(as_i8(or_u8(low, and_u8(set, splat_u8(4)))), splat_i8(4))
}

fn deq_q3_k(b: &[u8], y: &mut [f32]) {
    let d_all = f16_at(b, Q3K_D);
    let scales = q3k_scales(&b[Q3K_SCALES..Q3K_SCALES + 12]);
    for half in 0..2 {
        for j in 0..4 {
            for p in 0..2 {
                let dl = d_all * scales[8 * half + 2 * j + p] as f32;
                store16_mul(
                    y,
                    128 * half + 32 * j + 16 * p,
                    q3_values(b, half, j, p),
                    dl,
                );
            }
        }
    }
}

/// The 16-value groups of a Q4_K/Q5_K chunk `c`: (element offset in the block, sub-block,
/// values), low nibbles first.
#[inline(always)]
fn k4_groups(b: &[u8], qs: usize, qh: Option<usize>, c: usize) -> [(usize, usize, I8x16); 4] {
    std::array::from_fn(|g| {
        let (nib_hi, p) = (g / 2, g % 2);
        let (lo, hi) = nibbles(b, qs + 32 * c + 16 * p);
        let mut v = if nib_hi == 0 { lo } else { hi };
        if let Some(qh) = qh {
            let bit = splat_u8(1u8 << (2 * c + nib_hi));
            let h = test_u8(load_u8(b, qh + 16 * p), bit);
            v = or_u8(v, and_u8(h, splat_u8(16)));
        }
        (64 * c + 32 * nib_hi + 16 * p, 2 * c + nib_hi, as_i8(v))
    })
}

fn deq_k4(b: &[u8], y: &mut [f32], scales: usize, qs: usize, qh: Option<usize>) {
    let d = f16_at(b, 0);
    let min = f16_at(b, 2);
    let sm = k4_scales_mins(&b[scales..scales + 12]);
    for c in 0..4 {
        for (off, sub, q) in k4_groups(b, qs, qh, c) {
            let dl = d * sm[sub] as f32;
            let ml = min * sm[8 + sub] as f32;
            store16_mul_add(y, off, q, dl, -ml);
        }
    }
}

fn deq_q4_k(b: &[u8], y: &mut [f32]) {
    deq_k4(b, y, Q4K_SCALES, Q4K_QS, None)
}

fn deq_q5_k(b: &[u8], y: &mut [f32]) {
    deq_k4(b, y, Q5K_SCALES, Q5K_QS, Some(Q5K_QH))
}

/// The 8 groups of 16 values (q - 32) of Q6_K half `half`: (element offset in the half, values).
#[inline(always)]
fn q6_groups(b: &[u8], half: usize) -> [(usize, I8x16); 8] {
    let m4 = splat_u8(0x0f);
    let m30 = splat_u8(0x30);
    std::array::from_fn(|g| {
        let (quarter, p) = (g / 2, g % 2);
        // quarter 0: ql[l] low, qh bits 0-1; 1: ql[l+32] low, bits 2-3;
        // 2: ql[l] high, bits 4-5; 3: ql[l+32] high, bits 6-7.
        let ql = load_u8(b, Q6K_QL + 64 * half + 32 * (quarter % 2) + 16 * p);
        let qh = load_u8(b, Q6K_QH + 32 * half + 16 * p);
        let low = if quarter < 2 {
            and_u8(ql, m4)
        } else {
            shr_u8(ql, 4)
        };
        let shift = 2 * quarter as u32;
        let high = if shift <= 4 {
            and_u8(shl_u8(qh, 4 - shift), m30)
        } else {
            and_u8(shr_u8(qh, shift - 4), m30)
        };
        let q = sub_i8(as_i8(or_u8(low, high)), splat_i8(32));
        (32 * quarter + 16 * p, q)
    })
}

fn deq_q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, Q6K_D);
    for half in 0..2 {
        for (off, q) in q6_groups(b, half) {
            let sc = b[Q6K_SCALES + 8 * half + off / 16] as i8;
            store16_mul(y, 128 * half + off, q, d * sc as f32);
        }
    }
}

// ---------------------------------------------------------------- dot products

/// F32/F16/BF16: four 4-lane FMA accumulators over 16 values at a time, the tail by the
/// scalar loop. `load(chunk, k)` widens values `4k..4k + 4` of a 16-value chunk.
#[inline(always)]
fn dot_float(ty: GgmlType, x: &[u8], y: &[u8], load: impl Fn(&[u8], usize) -> F32x4) -> f32 {
    let step = 16 * ty.type_size();
    let mut acc = [splat_f32(0.0); 4];
    let mut xc = x.chunks_exact(step);
    let mut yc = y.chunks_exact(step);
    for (a, b) in (&mut xc).zip(&mut yc) {
        for (k, s) in acc.iter_mut().enumerate() {
            *s = fma_f32(*s, load(a, k), load(b, k));
        }
    }
    let s = add_f32(add_f32(acc[0], acc[1]), add_f32(acc[2], acc[3]));
    hsum_f32(s) + scalar::vec_dot(ty, xc.remainder(), yc.remainder())
}

fn dot_q4_0(x: &[u8], y: &[u8]) -> f32 {
    let mut sumv = splat_f32(0.0);
    for (xb, yb) in x.chunks_exact(18).zip(y.chunks_exact(34)) {
        let (lo, hi) = nibbles(xb, Q4_0_QS);
        let lo = sub_i8(as_i8(lo), splat_i8(8));
        let hi = sub_i8(as_i8(hi), splat_i8(8));
        let p = dot_i8(
            dot_i8(zero_i32(), lo, load_i8(yb, Q8_0_QS)),
            hi,
            load_i8(yb, Q8_0_QS + 16),
        );
        let d = f16_at(xb, 0) * f16_at(yb, 0);
        sumv = add_f32(sumv, mul_f32(cvt_f32(p), splat_f32(d)));
    }
    hsum_f32(sumv)
}

fn dot_q4_1(x: &[u8], y: &[u8]) -> f32 {
    let mut sumv = splat_f32(0.0);
    let mut summs = 0f32;
    for (xb, yb) in x.chunks_exact(20).zip(y.chunks_exact(36)) {
        summs += f16_at(xb, Q4_1_M) * f16_at(yb, Q8_1_S);
        let (lo, hi) = nibbles(xb, Q4_1_QS);
        let p = dot_i8(
            dot_i8(zero_i32(), as_i8(lo), load_i8(yb, Q8_1_QS)),
            as_i8(hi),
            load_i8(yb, Q8_1_QS + 16),
        );
        let d = f16_at(xb, 0) * f16_at(yb, 0);
        sumv = add_f32(sumv, mul_f32(cvt_f32(p), splat_f32(d)));
    }
    hsum_f32(sumv) + summs
}

fn dot_q5_0(x: &[u8], y: &[u8]) -> f32 {
    let mut sumv = splat_f32(0.0);
    for (xb, yb) in x.chunks_exact(22).zip(y.chunks_exact(34)) {
        let (lo, hi) = nibbles(xb, Q5_0_QS);
        let lo = sub_i8(as_i8(or_u8(lo, q5_high(xb, Q5_0_QH, 0))), splat_i8(16));
        let hi = sub_i8(as_i8(or_u8(hi, q5_high(xb, Q5_0_QH, 16))), splat_i8(16));
        let p = dot_i8(
            dot_i8(zero_i32(), lo, load_i8(yb, Q8_0_QS)),
            hi,
            load_i8(yb, Q8_0_QS + 16),
        );
        let d = f16_at(xb, 0) * f16_at(yb, 0);
        sumv = add_f32(sumv, mul_f32(cvt_f32(p), splat_f32(d)));
    }
    hsum_f32(sumv)
}

fn dot_q5_1(x: &[u8], y: &[u8]) -> f32 {
    let mut sumv = splat_f32(0.0);
    let mut summs = 0f32;
    for (xb, yb) in x.chunks_exact(24).zip(y.chunks_exact(36)) {
        summs += f16_at(xb, Q5_1_M) * f16_at(yb, Q8_1_S);
        let (lo, hi) = nibbles(xb, Q5_1_QS);
        let lo = as_i8(or_u8(lo, q5_high(xb, Q5_1_QH, 0)));
        let hi = as_i8(or_u8(hi, q5_high(xb, Q5_1_QH, 16)));
        let p = dot_i8(
            dot_i8(zero_i32(), lo, load_i8(yb, Q8_1_QS)),
            hi,
            load_i8(yb, Q8_1_QS + 16),
        );
        let d = f16_at(xb, 0) * f16_at(yb, 0);
        sumv = add_f32(sumv, mul_f32(cvt_f32(p), splat_f32(d)));
    }
    hsum_f32(sumv) + summs
}

fn dot_q8_0(x: &[u8], y: &[u8]) -> f32 {
    let mut sumv = splat_f32(0.0);
    for (xb, yb) in x.chunks_exact(34).zip(y.chunks_exact(34)) {
        let p = dot_i8(
            dot_i8(zero_i32(), load_i8(xb, Q8_0_QS), load_i8(yb, Q8_0_QS)),
            load_i8(xb, Q8_0_QS + 16),
            load_i8(yb, Q8_0_QS + 16),
        );
        let d = f16_at(xb, 0) * f16_at(yb, 0);
        sumv = add_f32(sumv, mul_f32(cvt_f32(p), splat_f32(d)));
    }
    hsum_f32(sumv)
}

fn dot_iq4_nl(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (xb, yb) in x.chunks_exact(18).zip(y.chunks_exact(34)) {
        let (lo, hi) = nibbles(xb, Q4_0_QS);
        let p = dot_i8(
            dot_i8(zero_i32(), lookup_i8(kvalues(), lo), load_i8(yb, Q8_0_QS)),
            lookup_i8(kvalues(), hi),
            load_i8(yb, Q8_0_QS + 16),
        );
        sumf += f16_at(yb, 0) * f16_at(xb, 0) * hsum_i32(p) as f32;
    }
    sumf
}

fn dot_q2_k(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (xb, yb) in x.chunks_exact(84).zip(y.chunks_exact(292)) {
        let dy = f32_at(yb, 0);
        let sc = &xb[Q2K_SCALES..Q2K_SCALES + 16];
        let mins: [u8; 16] = std::array::from_fn(|j| sc[j] >> 4);
        let summs = bsum_dot(yb, &mins, 1);
        let mut isum = 0i32;
        for half in 0..2 {
            for p in 0..2 {
                let bits = load_u8(xb, Q2K_QS + 32 * half + 16 * p);
                for j in 0..4 {
                    let q8 = load_i8(yb, Q8K_QS + 128 * half + 32 * j + 16 * p);
                    let s = (sc[8 * half + 2 * j + p] & 0xf) as i32;
                    isum += s * dot16(as_i8(crumbs(bits, 2 * j as u32)), q8);
                }
            }
        }
        sumf += dy * f16_at(xb, Q2K_D) * isum as f32 - dy * f16_at(xb, Q2K_DMIN) * summs as f32;
    }
    sumf
}

fn dot_q3_k(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (xb, yb) in x.chunks_exact(110).zip(y.chunks_exact(292)) {
        let scales = q3k_scales(&xb[Q3K_SCALES..Q3K_SCALES + 12]);
        let mut isum = 0i32;
        for half in 0..2 {
            for j in 0..4 {
                for p in 0..2 {
                    let q8 = load_i8(yb, Q8K_QS + 128 * half + 32 * j + 16 * p);
                    let s = scales[8 * half + 2 * j + p] as i32;
                    isum += s * dot16(q3_values(xb, half, j, p), q8);
                }
            }
        }
        sumf += f16_at(xb, Q3K_D) * f32_at(yb, 0) * isum as f32;
    }
    sumf
}

fn dot_k4(x: &[u8], y: &[u8], ts: usize, scales: usize, qs: usize, qh: Option<usize>) -> f32 {
    let mut sumf = 0f32;
    for (xb, yb) in x.chunks_exact(ts).zip(y.chunks_exact(292)) {
        let dy = f32_at(yb, 0);
        let sm = k4_scales_mins(&xb[scales..scales + 12]);
        let summs = bsum_dot(yb, &sm[8..], 2);
        let mut isum = 0i32;
        for c in 0..4 {
            for (off, sub, q) in k4_groups(xb, qs, qh, c) {
                isum += sm[sub] as i32 * dot16(q, load_i8(yb, Q8K_QS + off));
            }
        }
        sumf += dy * f16_at(xb, 0) * isum as f32 - dy * f16_at(xb, 2) * summs as f32;
    }
    sumf
}

fn dot_q4_k(x: &[u8], y: &[u8]) -> f32 {
    dot_k4(x, y, 144, Q4K_SCALES, Q4K_QS, None)
}

fn dot_q5_k(x: &[u8], y: &[u8]) -> f32 {
    dot_k4(x, y, 176, Q5K_SCALES, Q5K_QS, Some(Q5K_QH))
}

fn dot_q6_k(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (xb, yb) in x.chunks_exact(210).zip(y.chunks_exact(292)) {
        let mut isum = 0i32;
        for half in 0..2 {
            for (off, q) in q6_groups(xb, half) {
                let sc = xb[Q6K_SCALES + 8 * half + off / 16] as i8 as i32;
                isum += sc * dot16(q, load_i8(yb, Q8K_QS + 128 * half + off));
            }
        }
        sumf += f16_at(xb, Q6K_D) * f32_at(yb, 0) * isum as f32;
    }
    sumf
}

fn dot_iq4_xs(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (xb, yb) in x.chunks_exact(136).zip(y.chunks_exact(292)) {
        let d4d8 = f16_at(xb, 0) * f32_at(yb, 0);
        let mut isum = 0i32;
        for ib in 0..8 {
            let (lo, hi) = nibbles(xb, IQ4XS_QS + 16 * ib);
            let p = dot_i8(
                dot_i8(
                    zero_i32(),
                    lookup_i8(kvalues(), lo),
                    load_i8(yb, Q8K_QS + 32 * ib),
                ),
                lookup_i8(kvalues(), hi),
                load_i8(yb, Q8K_QS + 32 * ib + 16),
            );
            isum += iq4xs_scale(xb, ib) * hsum_i32(p);
        }
        sumf += d4d8 * isum as f32;
    }
    sumf
}
