//! The scalar path: dequantizers that are literal ports of ggml's `dequantize_row_*` and the
//! generic `ggml_vec_dot_*` functions of `ggml-cpu/quants.c` and `vec.cpp`, kept in ggml's
//! evaluation order. They are the reference every SIMD kernel is tested against, and the path
//! used where no SIMD unit is available.
//!
//! Every function takes rows whose lengths the dispatcher has already checked: `x` holds whole
//! blocks of its type, `y` the matching activation blocks and `out` room for every value.

use super::layout::*;
use crate::blocks::KVALUES_IQ4NL;
use crate::GgmlType;

/// Dequantizes whole blocks of `ty` from `x` into `out` (`out.len()` = values in `x`).
pub fn dequantize(ty: GgmlType, x: &[u8], out: &mut [f32]) {
    use GgmlType::*;
    let ts = ty.type_size();
    let bs = ty.block_size();
    let blocks = x.chunks_exact(ts).zip(out.chunks_exact_mut(bs));
    match ty {
        F32 => blocks.for_each(|(b, y)| y[0] = f32_at(b, 0)),
        F16 => blocks.for_each(|(b, y)| y[0] = f16_at(b, 0)),
        BF16 => blocks.for_each(|(b, y)| y[0] = bf16_at(b, 0)),
        Q4_0 => blocks.for_each(|(b, y)| dequant_q4_0(b, y)),
        Q4_1 => blocks.for_each(|(b, y)| dequant_q4_1(b, y)),
        Q5_0 => blocks.for_each(|(b, y)| dequant_q5_0(b, y)),
        Q5_1 => blocks.for_each(|(b, y)| dequant_q5_1(b, y)),
        Q8_0 => blocks.for_each(|(b, y)| dequant_q8_0(b, y)),
        Q8_1 => blocks.for_each(|(b, y)| dequant_q8_1(b, y)),
        Q2K => blocks.for_each(|(b, y)| dequant_q2_k(b, y)),
        Q3K => blocks.for_each(|(b, y)| dequant_q3_k(b, y)),
        Q4K => blocks.for_each(|(b, y)| dequant_q4_k(b, y)),
        Q5K => blocks.for_each(|(b, y)| dequant_q5_k(b, y)),
        Q6K => blocks.for_each(|(b, y)| dequant_q6_k(b, y)),
        Q8K => blocks.for_each(|(b, y)| dequant_q8_k(b, y)),
        IQ4NL => blocks.for_each(|(b, y)| dequant_iq4_nl(b, y)),
        IQ4XS => blocks.for_each(|(b, y)| dequant_iq4_xs(b, y)),
    }
}

fn dequant_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..16 {
        let q = b[Q4_0_QS + j];
        y[j] = ((q & 0xf) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

fn dequant_q4_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, Q4_1_M);
    for j in 0..16 {
        let q = b[Q4_1_QS + j];
        y[j] = (q & 0xf) as f32 * d + m;
        y[j + 16] = (q >> 4) as f32 * d + m;
    }
}

fn dequant_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32_at(b, Q5_0_QH);
    for j in 0..16 {
        let q = b[Q5_0_QS + j] as u32;
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        y[j] = (((q & 0xf) | h0) as i32 - 16) as f32 * d;
        y[j + 16] = (((q >> 4) | h1) as i32 - 16) as f32 * d;
    }
}

fn dequant_q5_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, Q5_1_M);
    let qh = u32_at(b, Q5_1_QH);
    for j in 0..16 {
        let q = b[Q5_1_QS + j] as u32;
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        y[j] = ((q & 0xf) | h0) as f32 * d + m;
        y[j + 16] = ((q >> 4) | h1) as f32 * d + m;
    }
}

fn dequant_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..32 {
        y[j] = b[Q8_0_QS + j] as i8 as f32 * d;
    }
}

fn dequant_q8_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..32 {
        y[j] = b[Q8_1_QS + j] as i8 as f32 * d;
    }
}

fn dequant_q2_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, Q2K_D);
    let min = f16_at(b, Q2K_DMIN);
    let mut is = 0;
    for half in 0..2 {
        let q = &b[Q2K_QS + 32 * half..Q2K_QS + 32 * half + 32];
        for j in 0..4 {
            let shift = 2 * j;
            for part in 0..2 {
                let sc = b[Q2K_SCALES + is];
                is += 1;
                let dl = d * (sc & 0xf) as f32;
                let ml = min * (sc >> 4) as f32;
                let base = 128 * half + 32 * j + 16 * part;
                for l in 0..16 {
                    let v = (q[16 * part + l] >> shift) & 3;
                    y[base + l] = dl * v as f32 - ml;
                }
            }
        }
    }
}

fn dequant_q3_k(b: &[u8], y: &mut [f32]) {
    let d_all = f16_at(b, Q3K_D);
    let scales = q3k_scales(&b[Q3K_SCALES..Q3K_SCALES + 12]);
    let hm = &b[Q3K_HMASK..Q3K_HMASK + 32];
    let mut is = 0;
    let mut m = 1u8;
    for half in 0..2 {
        let q = &b[Q3K_QS + 32 * half..Q3K_QS + 32 * half + 32];
        for j in 0..4 {
            let shift = 2 * j;
            for part in 0..2 {
                let dl = d_all * scales[is] as f32;
                is += 1;
                let base = 128 * half + 32 * j + 16 * part;
                for l in 0..16 {
                    let k = 16 * part + l;
                    let lo = ((q[k] >> shift) & 3) as i32;
                    let v = lo - if hm[k] & m != 0 { 0 } else { 4 };
                    y[base + l] = dl * v as f32;
                }
            }
            m <<= 1;
        }
    }
}

fn dequant_q4_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let min = f16_at(b, Q4K_DMIN);
    let sm = k4_scales_mins(&b[Q4K_SCALES..Q4K_SCALES + 12]);
    for c in 0..4 {
        let q = &b[Q4K_QS + 32 * c..Q4K_QS + 32 * c + 32];
        let d1 = d * sm[2 * c] as f32;
        let m1 = min * sm[8 + 2 * c] as f32;
        let d2 = d * sm[2 * c + 1] as f32;
        let m2 = min * sm[8 + 2 * c + 1] as f32;
        for l in 0..32 {
            y[64 * c + l] = d1 * (q[l] & 0xf) as f32 - m1;
            y[64 * c + 32 + l] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

fn dequant_q5_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let min = f16_at(b, Q5K_DMIN);
    let sm = k4_scales_mins(&b[Q5K_SCALES..Q5K_SCALES + 12]);
    let qh = &b[Q5K_QH..Q5K_QH + 32];
    for c in 0..4 {
        let q = &b[Q5K_QS + 32 * c..Q5K_QS + 32 * c + 32];
        let d1 = d * sm[2 * c] as f32;
        let m1 = min * sm[8 + 2 * c] as f32;
        let d2 = d * sm[2 * c + 1] as f32;
        let m2 = min * sm[8 + 2 * c + 1] as f32;
        let u1 = 1u8 << (2 * c);
        let u2 = 2u8 << (2 * c);
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[64 * c + l] = d1 * ((q[l] & 0xf) + h1) as f32 - m1;
            y[64 * c + 32 + l] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
        }
    }
}

fn dequant_q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, Q6K_D);
    for half in 0..2 {
        let ql = &b[Q6K_QL + 64 * half..Q6K_QL + 64 * half + 64];
        let qh = &b[Q6K_QH + 32 * half..Q6K_QH + 32 * half + 32];
        let sc = &b[Q6K_SCALES + 8 * half..Q6K_SCALES + 8 * half + 8];
        let y = &mut y[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * sc[is] as i8 as f32 * q1 as f32;
            y[l + 32] = d * sc[is + 2] as i8 as f32 * q2 as f32;
            y[l + 64] = d * sc[is + 4] as i8 as f32 * q3 as f32;
            y[l + 96] = d * sc[is + 6] as i8 as f32 * q4 as f32;
        }
    }
}

fn dequant_q8_k(b: &[u8], y: &mut [f32]) {
    let d = f32_at(b, 0);
    for j in 0..256 {
        y[j] = d * b[Q8K_QS + j] as i8 as f32;
    }
}

fn dequant_iq4_nl(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..16 {
        let q = b[Q4_0_QS + j];
        y[j] = d * KVALUES_IQ4NL[(q & 0xf) as usize] as f32;
        y[j + 16] = d * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
    }
}

fn dequant_iq4_xs(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for ib in 0..8 {
        let dl = d * iq4xs_scale(b, ib) as f32;
        let qs = &b[IQ4XS_QS + 16 * ib..IQ4XS_QS + 16 * ib + 16];
        for j in 0..16 {
            y[32 * ib + j] = dl * KVALUES_IQ4NL[(qs[j] & 0xf) as usize] as f32;
            y[32 * ib + 16 + j] = dl * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as f32;
        }
    }
}

/// Dot product of `nb` blocks of weight type `ty` (in `x`) with their activation blocks in the
/// type's `vec_dot_type` (in `y`), as ggml's generic `ggml_vec_dot_*` computes it.
pub fn vec_dot(ty: GgmlType, x: &[u8], y: &[u8]) -> f32 {
    use GgmlType::*;
    match ty {
        F32 => dot_f32(x, y),
        F16 => dot_half(x, y, f16_at),
        BF16 => dot_half(x, y, bf16_at),
        Q4_0 => dot_q4_0(x, y),
        Q4_1 => dot_q4_1(x, y),
        Q5_0 => dot_q5_0(x, y),
        Q5_1 => dot_q5_1(x, y),
        Q8_0 => dot_q8_0(x, y),
        Q8_1 | Q8K => dot_activation(ty, x, y),
        Q2K => dot_q2_k(x, y),
        Q3K => dot_q3_k(x, y),
        Q4K => dot_q4_k(x, y),
        Q5K => dot_q5_k(x, y),
        Q6K => dot_q6_k(x, y),
        IQ4NL => dot_iq4_nl(x, y),
        IQ4XS => dot_iq4_xs(x, y),
    }
}

/// `ggml_vec_dot_f32`'s scalar loop: f32 products summed in double.
fn dot_f32(x: &[u8], y: &[u8]) -> f32 {
    let mut sum = 0f64;
    for (a, b) in x.chunks_exact(4).zip(y.chunks_exact(4)) {
        sum += (f32_at(a, 0) * f32_at(b, 0)) as f64;
    }
    sum as f32
}

/// `ggml_vec_dot_f16` / `_bf16`'s scalar loop: f32 products of the widened halves, summed in
/// double.
fn dot_half(x: &[u8], y: &[u8], load: fn(&[u8], usize) -> f32) -> f32 {
    let mut sum = 0f64;
    for (a, b) in x.chunks_exact(2).zip(y.chunks_exact(2)) {
        sum += (load(a, 0) * load(b, 0)) as f64;
    }
    sum as f32
}

/// Q8_1 and Q8_K are activation-only types: ggml has no dot for them as weights, so g4q pairs
/// them with themselves (Σ dequantized products), which keeps the API total.
fn dot_activation(ty: GgmlType, x: &[u8], y: &[u8]) -> f32 {
    let bs = ty.block_size();
    let mut a = vec![0f32; bs];
    let mut b = vec![0f32; bs];
    let mut sum = 0f32;
    for (xb, yb) in x
        .chunks_exact(ty.type_size())
        .zip(y.chunks_exact(ty.type_size()))
    {
        dequantize(ty, xb, &mut a);
        dequantize(ty, yb, &mut b);
        sum += a.iter().zip(&b).map(|(p, q)| p * q).sum::<f32>();
    }
    sum
}

fn dot_q4_0(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (xb, yb) in x.chunks_exact(18).zip(y.chunks_exact(34)) {
        let (mut s0, mut s1) = (0i32, 0i32);
        for j in 0..16 {
            let q = xb[Q4_0_QS + j];
            s0 += ((q & 0xf) as i32 - 8) * yb[Q8_0_QS + j] as i8 as i32;
            s1 += ((q >> 4) as i32 - 8) * yb[Q8_0_QS + 16 + j] as i8 as i32;
        }
        sumf += (s0 + s1) as f32 * f16_at(xb, 0) * f16_at(yb, 0);
    }
    sumf
}

fn dot_q4_1(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (xb, yb) in x.chunks_exact(20).zip(y.chunks_exact(36)) {
        let (mut s0, mut s1) = (0i32, 0i32);
        for j in 0..16 {
            let q = xb[Q4_1_QS + j];
            s0 += (q & 0xf) as i32 * yb[Q8_1_QS + j] as i8 as i32;
            s1 += (q >> 4) as i32 * yb[Q8_1_QS + 16 + j] as i8 as i32;
        }
        sumf += (f16_at(xb, 0) * f16_at(yb, 0)) * (s0 + s1) as f32
            + f16_at(xb, Q4_1_M) * f16_at(yb, Q8_1_S);
    }
    sumf
}

fn dot_q5_0(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (xb, yb) in x.chunks_exact(22).zip(y.chunks_exact(34)) {
        let qh = u32_at(xb, Q5_0_QH);
        let (mut s0, mut s1) = (0i32, 0i32);
        for j in 0..16 {
            let q = xb[Q5_0_QS + j] as u32;
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            s0 += (((q & 0xf) | h0) as i32 - 16) * yb[Q8_0_QS + j] as i8 as i32;
            s1 += (((q >> 4) | h1) as i32 - 16) * yb[Q8_0_QS + 16 + j] as i8 as i32;
        }
        sumf += (f16_at(xb, 0) * f16_at(yb, 0)) * (s0 + s1) as f32;
    }
    sumf
}

fn dot_q5_1(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (xb, yb) in x.chunks_exact(24).zip(y.chunks_exact(36)) {
        let qh = u32_at(xb, Q5_1_QH);
        let (mut s0, mut s1) = (0i32, 0i32);
        for j in 0..16 {
            let q = xb[Q5_1_QS + j] as u32;
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + 16)) & 1) << 4;
            s0 += ((q & 0xf) | h0) as i32 * yb[Q8_1_QS + j] as i8 as i32;
            s1 += ((q >> 4) | h1) as i32 * yb[Q8_1_QS + 16 + j] as i8 as i32;
        }
        sumf += (f16_at(xb, 0) * f16_at(yb, 0)) * (s0 + s1) as f32
            + f16_at(xb, Q5_1_M) * f16_at(yb, Q8_1_S);
    }
    sumf
}

fn dot_q8_0(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (xb, yb) in x.chunks_exact(34).zip(y.chunks_exact(34)) {
        let mut s = 0i32;
        for j in 0..32 {
            s += xb[Q8_0_QS + j] as i8 as i32 * yb[Q8_0_QS + j] as i8 as i32;
        }
        sumf += s as f32 * (f16_at(xb, 0) * f16_at(yb, 0));
    }
    sumf
}

fn dot_iq4_nl(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (xb, yb) in x.chunks_exact(18).zip(y.chunks_exact(34)) {
        let d = f16_at(yb, 0) * f16_at(xb, 0);
        let (mut s1, mut s2) = (0i32, 0i32);
        for j in 0..16 {
            let q = xb[Q4_0_QS + j];
            s1 += yb[Q8_0_QS + j] as i8 as i32 * KVALUES_IQ4NL[(q & 0xf) as usize] as i32;
            s2 += yb[Q8_0_QS + 16 + j] as i8 as i32 * KVALUES_IQ4NL[(q >> 4) as usize] as i32;
        }
        sumf += d * (s1 + s2) as f32;
    }
    sumf
}

/// The Q8_K activation block's quants as i8.
#[inline(always)]
fn q8k_qs(yb: &[u8]) -> [i8; 256] {
    let mut q = [0i8; 256];
    for (d, s) in q.iter_mut().zip(&yb[Q8K_QS..Q8K_QS + 256]) {
        *d = *s as i8;
    }
    q
}

fn dot_q2_k(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (xb, yb) in x.chunks_exact(84).zip(y.chunks_exact(292)) {
        let q8 = q8k_qs(yb);
        let sc = &xb[Q2K_SCALES..Q2K_SCALES + 16];
        let mut summs = 0i32;
        for (j, s) in sc.iter().enumerate() {
            summs += i16_at(yb, Q8K_BSUMS + 2 * j) as i32 * (s >> 4) as i32;
        }
        let dy = f32_at(yb, 0);
        let dall = dy * f16_at(xb, Q2K_D);
        let dmin = dy * f16_at(xb, Q2K_DMIN);
        let mut isum = 0i32;
        let mut is = 0;
        let mut q8o = 0;
        for half in 0..2 {
            let q2 = &xb[Q2K_QS + 32 * half..Q2K_QS + 32 * half + 32];
            for j in 0..4 {
                let shift = 2 * j;
                for part in 0..2 {
                    let d = (sc[is] & 0xf) as i32;
                    is += 1;
                    let mut isuml = 0i32;
                    for l in 16 * part..16 * part + 16 {
                        isuml += q8[q8o + l] as i32 * ((q2[l] >> shift) & 3) as i32;
                    }
                    isum += d * isuml;
                }
                q8o += 32;
            }
        }
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

fn dot_q3_k(x: &[u8], y: &[u8]) -> f32 {
    let mut sums = [0f32; 8];
    for (xb, yb) in x.chunks_exact(110).zip(y.chunks_exact(292)) {
        let q8 = q8k_qs(yb);
        let hm = &xb[Q3K_HMASK..Q3K_HMASK + 32];
        let mut aux8 = [0i8; 256];
        let mut m = 1u8;
        for half in 0..2 {
            let q3 = &xb[Q3K_QS + 32 * half..Q3K_QS + 32 * half + 32];
            for j in 0..4 {
                let a = &mut aux8[128 * half + 32 * j..128 * half + 32 * j + 32];
                for l in 0..32 {
                    let v = ((q3[l] >> (2 * j)) & 3) as i8;
                    a[l] = v - if hm[l] & m != 0 { 0 } else { 4 };
                }
                m <<= 1;
            }
        }
        let scales = q3k_scales(&xb[Q3K_SCALES..Q3K_SCALES + 12]);
        let mut aux32 = [0i32; 8];
        for (j, scale) in scales.iter().enumerate() {
            let scale = *scale as i32;
            for k in 0..2 {
                let o = 16 * j + 8 * k;
                for l in 0..8 {
                    let p = (q8[o + l] as i32 * aux8[o + l] as i32) as i16;
                    aux32[l] += scale * p as i32;
                }
            }
        }
        let d = f16_at(xb, Q3K_D) * f32_at(yb, 0);
        for l in 0..8 {
            sums[l] += d * aux32[l] as f32;
        }
    }
    sums.iter().sum()
}

/// The generic Q4_K/Q5_K dot tail: 8-lane i32 sums of `scale * q * q8` per super-block, then
/// `sums[l] += d*aux32[l]`, with `dmin * Σ bsums*mins` subtracted from a separate scalar.
fn dot_k4_family(
    x: &[u8],
    y: &[u8],
    ts: usize,
    scales_off: usize,
    unpack: impl Fn(&[u8], &mut [i8; 256]),
) -> f32 {
    let mut sums = [0f32; 8];
    let mut sumf = 0f32;
    for (xb, yb) in x.chunks_exact(ts).zip(y.chunks_exact(292)) {
        let q8 = q8k_qs(yb);
        let mut aux8 = [0i8; 256];
        unpack(xb, &mut aux8);
        let sm = k4_scales_mins(&xb[scales_off..scales_off + 12]);
        let mut sumi = 0i32;
        for j in 0..16 {
            sumi += i16_at(yb, Q8K_BSUMS + 2 * j) as i32 * sm[8 + j / 2] as i32;
        }
        let mut aux32 = [0i32; 8];
        for (j, scale) in sm[..8].iter().enumerate() {
            let scale = *scale as i32;
            for k in 0..4 {
                let o = 32 * j + 8 * k;
                for l in 0..8 {
                    let p = (q8[o + l] as i32 * aux8[o + l] as i32) as i16;
                    aux32[l] += scale * p as i32;
                }
            }
        }
        let dy = f32_at(yb, 0);
        let d = f16_at(xb, 0) * dy;
        for l in 0..8 {
            sums[l] += d * aux32[l] as f32;
        }
        let dmin = f16_at(xb, 2) * dy;
        sumf -= dmin * sumi as f32;
    }
    for s in sums {
        sumf += s;
    }
    sumf
}

fn dot_q4_k(x: &[u8], y: &[u8]) -> f32 {
    dot_k4_family(x, y, 144, Q4K_SCALES, |xb, a| {
        for c in 0..4 {
            for l in 0..32 {
                let q = xb[Q4K_QS + 32 * c + l];
                a[64 * c + l] = (q & 0xf) as i8;
                a[64 * c + 32 + l] = (q >> 4) as i8;
            }
        }
    })
}

fn dot_q5_k(x: &[u8], y: &[u8]) -> f32 {
    dot_k4_family(x, y, 176, Q5K_SCALES, |xb, a| {
        for c in 0..4 {
            for l in 0..32 {
                let q = xb[Q5K_QS + 32 * c + l];
                let h = xb[Q5K_QH + l];
                a[64 * c + l] = ((q & 0xf) + if h & (1 << (2 * c)) != 0 { 16 } else { 0 }) as i8;
                a[64 * c + 32 + l] =
                    ((q >> 4) + if h & (2 << (2 * c)) != 0 { 16 } else { 0 }) as i8;
            }
        }
    })
}

fn dot_q6_k(x: &[u8], y: &[u8]) -> f32 {
    let mut sums = [0f32; 8];
    for (xb, yb) in x.chunks_exact(210).zip(y.chunks_exact(292)) {
        let q8 = q8k_qs(yb);
        let mut aux8 = [0i8; 256];
        for half in 0..2 {
            let ql = &xb[Q6K_QL + 64 * half..Q6K_QL + 64 * half + 64];
            let qh = &xb[Q6K_QH + 32 * half..Q6K_QH + 32 * half + 32];
            let a = &mut aux8[128 * half..128 * half + 128];
            for l in 0..32 {
                a[l] = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i8 - 32;
                a[l + 32] = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                a[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                a[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            }
        }
        let mut aux32 = [0i32; 8];
        for j in 0..16 {
            let scale = xb[Q6K_SCALES + j] as i8 as i32;
            for k in 0..2 {
                let o = 16 * j + 8 * k;
                for l in 0..8 {
                    let p = (q8[o + l] as i32 * aux8[o + l] as i32) as i16;
                    aux32[l] += scale * p as i32;
                }
            }
        }
        let d = f16_at(xb, Q6K_D) * f32_at(yb, 0);
        for l in 0..8 {
            sums[l] += d * aux32[l] as f32;
        }
    }
    sums.iter().sum()
}

fn dot_iq4_xs(x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (xb, yb) in x.chunks_exact(136).zip(y.chunks_exact(292)) {
        let q8 = q8k_qs(yb);
        let d4d8 = f16_at(xb, 0) * f32_at(yb, 0);
        for ib in 0..8 {
            let dl = d4d8 * iq4xs_scale(xb, ib) as f32;
            let qs = &xb[IQ4XS_QS + 16 * ib..IQ4XS_QS + 16 * ib + 16];
            let (mut s1, mut s2) = (0i32, 0i32);
            for j in 0..16 {
                s1 += q8[32 * ib + j] as i32 * KVALUES_IQ4NL[(qs[j] & 0xf) as usize] as i32;
                s2 += q8[32 * ib + 16 + j] as i32 * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as i32;
            }
            sumf += dl * (s1 + s2) as f32;
        }
    }
    sumf
}
