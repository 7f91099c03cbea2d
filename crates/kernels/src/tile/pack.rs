//! The portable half of the tiled products: weight rows and activation rows rewritten once into
//! the unpacked layouts the register-tiled kernels read, so the inner loops only multiply and
//! add. Every integer here is exact; the floats are the same products the per-pair dot kernels
//! form (`dx · dy` of fp16/f32 scales), so a tile output can match the dot bit for bit.
//!
//! Three families cover the types (each a different shape of the per-pair dot's inner sums):
//! - [`Family::K16`] (Q6_K, Q3_K): signed weights, one scale per 16 values. Weights are stored
//!   as i8, activations offset to u8 (`q + 128`, so the u8 × i8 multiply applies); the offset's
//!   contribution `128 · Σ s·w` depends on the weight row only and is subtracted up front.
//! - [`Family::K32`] (Q4_K, Q5_K): unsigned weights, one scale and one min per 32 values;
//!   activations stay i8, and the min term uses the activation's block sums.
//! - [`Family::B32`] (Q8_0, Q4_0, Q5_0, IQ4_NL): 32-value blocks of signed weights with one fp16
//!   scale, activations offset as for `K16`, four blocks to a unit (the dot's four
//!   accumulators).
//!
//! Activations come in token pairs: each 32-value group holds the pair's two tokens side by
//! side (64 bytes), so a 512-bit register carries both and one weight vector, broadcast to both
//! halves, meets two tokens at once. A 256-bit path reads one half.

use crate::blocks::KVALUES_IQ4NL;
use crate::simd::layout::*;
use crate::GgmlType;

/// The layout family of a weight type in the tiled products, if it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    K16,
    K32,
    B32,
}

impl Family {
    pub(crate) fn of(ty: GgmlType) -> Option<Family> {
        use GgmlType::*;
        match ty {
            Q6K | Q3K => Some(Family::K16),
            Q4K | Q5K => Some(Family::K32),
            Q8_0 | Q4_0 | Q5_0 | IQ4NL => Some(Family::B32),
            _ => None,
        }
    }

    /// Values per unit: a super-block, or four legacy blocks.
    pub(crate) fn unit_values(self) -> usize {
        match self {
            Family::K16 | Family::K32 => 256,
            Family::B32 => 128,
        }
    }

    /// Bytes of one packed weight unit (a multiple of 64).
    pub(crate) fn weight_unit(self) -> usize {
        match self {
            Family::K16 => K16_W_UNIT,
            Family::K32 => K32_W_UNIT,
            Family::B32 => B32_W_UNIT,
        }
    }

    /// Bytes of one packed activation unit of a token pair (a multiple of 64).
    pub(crate) fn act_unit(self) -> usize {
        match self {
            Family::K16 => K16_A_UNIT,
            Family::K32 => K32_A_UNIT,
            Family::B32 => B32_A_UNIT,
        }
    }

    /// The byte every activation quant is XORed with: 0x80 turns i8 `q` into u8 `q + 128`.
    fn act_flip(self) -> u8 {
        match self {
            Family::K32 => 0,
            Family::K16 | Family::B32 => 0x80,
        }
    }
}

// K16 weight unit: w[256] i8 | s[8 groups][16] i16 | negcorr[8] i32 | dx f32.
pub(crate) const K16_W: usize = 0;
pub(crate) const K16_S: usize = 256;
pub(crate) const K16_NEGCORR: usize = 512;
pub(crate) const K16_DX: usize = 544;
pub(crate) const K16_W_UNIT: usize = 576;
// K32 weight unit: w[256] u8 | scale pairs[8] i32 | mins[8] i16 twice | dx f32 | dmx f32.
pub(crate) const K32_W: usize = 0;
pub(crate) const K32_SP: usize = 256;
pub(crate) const K32_MINS: usize = 288;
pub(crate) const K32_DX: usize = 320;
pub(crate) const K32_DMX: usize = 324;
pub(crate) const K32_W_UNIT: usize = 384;
// B32 weight unit (four blocks): w[4][32] i8 | negcorr[4][8] i32 | dx[4] f32.
pub(crate) const B32_W: usize = 0;
pub(crate) const B32_NEGCORR: usize = 128;
pub(crate) const B32_DX: usize = 256;
pub(crate) const B32_W_UNIT: usize = 320;
// K16/K32 activation unit of a pair: a[8 groups][2 tokens][32] | dy[2][8] f32, and for K32
// also block-sum pairs[2][8] i16 | negdy[2][4] f32.
pub(crate) const KA_A: usize = 0;
pub(crate) const KA_DY: usize = 512;
pub(crate) const KA_BP: usize = 576;
pub(crate) const KA_NEGDY: usize = 608;
pub(crate) const K16_A_UNIT: usize = 576;
pub(crate) const K32_A_UNIT: usize = 640;
// B32 activation unit of a pair (four blocks): a[4][2][32] | dy[4][2][8] f32.
pub(crate) const BA_A: usize = 0;
pub(crate) const BA_DY: usize = 256;
pub(crate) const B32_A_UNIT: usize = 512;

/// 64 bytes aligned to 64, the storage unit of the packed buffers (so 512-bit loads of a
/// packed group never split a cache line).
#[repr(C, align(64))]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Line([u8; 64]);

/// A buffer of at least `bytes` bytes in whole lines, reusing `buf`'s allocation (its old
/// contents stay: the packers write every byte the kernels read).
pub(crate) fn lines(buf: &mut Vec<Line>, bytes: usize) -> &mut [u8] {
    let n = bytes.div_ceil(64);
    if buf.len() < n {
        buf.resize(n, Line([0; 64]));
    }
    &mut bytemuck::cast_slice_mut::<Line, u8>(buf)[..bytes]
}

fn put_i16(u: &mut [u8], off: usize, v: i16) {
    u[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_i32(u: &mut [u8], off: usize, v: i32) {
    u[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_f32(u: &mut [u8], off: usize, v: f32) {
    u[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Packs whole weight rows (`row_bytes` each, `ty` in `fam`) into `out`, one row every
/// `units · fam.weight_unit()` bytes. Inlined into each path's `target_feature` wrapper, so the
/// byte loops vectorize for that path.
#[inline(always)]
pub(crate) fn pack_weights(fam: Family, ty: GgmlType, w: &[u8], row_bytes: usize, out: &mut [u8]) {
    let ts = ty.type_size();
    let stride = out.len() / (w.len() / row_bytes).max(1);
    for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(stride)) {
        match fam {
            Family::K16 | Family::K32 => {
                let units = o.chunks_exact_mut(fam.weight_unit());
                for (b, u) in row.chunks_exact(ts).zip(units) {
                    match ty {
                        GgmlType::Q6K => pack_q6k(b, u),
                        GgmlType::Q3K => pack_q3k(b, u),
                        GgmlType::Q4K => pack_k32(b, u, false),
                        _ => pack_k32(b, u, true),
                    }
                }
            }
            Family::B32 => {
                let units = o.chunks_exact_mut(B32_W_UNIT);
                for (b4, u) in row.chunks(4 * ts).zip(units) {
                    for (k, b) in b4.chunks_exact(ts).enumerate() {
                        pack_b32(ty, b, u, k);
                    }
                }
            }
        }
    }
}

/// The K16 unit from 256 signed weights `w` and 16 scales `sc` (one per 16 values) with the
/// block scale `dx`.
#[inline(always)]
fn finish_k16(w: &[i8; 256], sc: &[i8; 16], dx: f32, u: &mut [u8]) {
    u[K16_W..K16_W + 256].copy_from_slice(bytemuck::cast_slice(w));
    let s16: [i16; 128] = std::array::from_fn(|i| sc[2 * (i / 16) + (i % 16) / 8] as i16);
    u[K16_S..K16_S + 256].copy_from_slice(bytemuck::cast_slice(&s16));
    // Sums of four weights, then scaled: lane j of group g is elements 32g + 4j .. + 4.
    let quad: [i32; 64] = std::array::from_fn(|i| {
        let q = &w[4 * i..4 * i + 4];
        q[0] as i32 + q[1] as i32 + q[2] as i32 + q[3] as i32
    });
    let negcorr: [i32; 8] = std::array::from_fn(|j| {
        (0..8)
            .map(|g| -128 * sc[2 * g + j / 4] as i32 * quad[8 * g + j])
            .sum()
    });
    u[K16_NEGCORR..K16_NEGCORR + 32].copy_from_slice(bytemuck::cast_slice(&negcorr));
    put_f32(u, K16_DX, dx);
}

#[inline(always)]
fn pack_q6k(b: &[u8], u: &mut [u8]) {
    let b: &[u8; 210] = b.try_into().expect("a Q6_K block");
    let mut w = [0i8; 256];
    for half in 0..2 {
        for l in 0..32 {
            let ql = b[Q6K_QL + 64 * half + l];
            let ql2 = b[Q6K_QL + 64 * half + l + 32];
            let qh = b[Q6K_QH + 32 * half + l];
            let at = 128 * half + l;
            w[at] = ((ql & 15) | ((qh & 3) << 4)) as i8 - 32;
            w[at + 32] = ((ql2 & 15) | (((qh >> 2) & 3) << 4)) as i8 - 32;
            w[at + 64] = ((ql >> 4) | (((qh >> 4) & 3) << 4)) as i8 - 32;
            w[at + 96] = ((ql2 >> 4) | (((qh >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    let sc: [i8; 16] = std::array::from_fn(|i| b[Q6K_SCALES + i] as i8);
    finish_k16(&w, &sc, f16_at(b, Q6K_D), u);
}

#[inline(always)]
fn pack_q3k(b: &[u8], u: &mut [u8]) {
    let mut w = [0i8; 256];
    for half in 0..2 {
        for j in 0..4 {
            for l in 0..32 {
                let low = (b[Q3K_QS + 32 * half + l] >> (2 * j)) & 3;
                let set = b[Q3K_HMASK + l] & (1 << (4 * half + j)) != 0;
                w[128 * half + 32 * j + l] = low as i8 - if set { 0 } else { 4 };
            }
        }
    }
    let sc = q3k_scales(&b[Q3K_SCALES..Q3K_SCALES + 12]);
    finish_k16(&w, &sc, f16_at(b, Q3K_D), u);
}

/// Q4_K (`five == false`) or Q5_K.
#[inline(always)]
fn pack_k32(b: &[u8], u: &mut [u8], five: bool) {
    let (qs, sc_off) = if five {
        (Q5K_QS, Q5K_SCALES)
    } else {
        (Q4K_QS, Q4K_SCALES)
    };
    for c in 0..4 {
        for l in 0..32 {
            let q = b[qs + 32 * c + l];
            let (mut lo, mut hi) = (q & 15, q >> 4);
            if five {
                let h = b[Q5K_QH + l];
                lo |= ((h >> (2 * c)) & 1) << 4;
                hi |= ((h >> (2 * c + 1)) & 1) << 4;
            }
            u[K32_W + 64 * c + l] = lo;
            u[K32_W + 64 * c + 32 + l] = hi;
        }
    }
    let sm = k4_scales_mins(&b[sc_off..sc_off + 12]);
    for g in 0..8 {
        let s = sm[g] as i32;
        put_i32(u, K32_SP + 4 * g, s | (s << 16));
        put_i16(u, K32_MINS + 2 * g, sm[8 + g] as i16);
        put_i16(u, K32_MINS + 16 + 2 * g, sm[8 + g] as i16);
    }
    put_f32(u, K32_DX, f16_at(b, 0));
    put_f32(u, K32_DMX, f16_at(b, 2));
}

/// Block `k` of a B32 unit.
#[inline(always)]
fn pack_b32(ty: GgmlType, b: &[u8], u: &mut [u8], k: usize) {
    let mut w = [0i8; 32];
    match ty {
        GgmlType::Q8_0 => w.copy_from_slice(bytemuck::cast_slice(&b[Q8_0_QS..Q8_0_QS + 32])),
        GgmlType::Q4_0 => {
            for l in 0..16 {
                let q = b[Q4_0_QS + l];
                w[l] = (q & 15) as i8 - 8;
                w[16 + l] = (q >> 4) as i8 - 8;
            }
        }
        GgmlType::Q5_0 => {
            let qh = u32_at(b, Q5_0_QH);
            for l in 0..16 {
                let q = b[Q5_0_QS + l];
                let hi = |i: usize| if qh >> i & 1 == 1 { 0 } else { 16 };
                w[l] = (q & 15) as i8 - hi(l);
                w[16 + l] = (q >> 4) as i8 - hi(16 + l);
            }
        }
        _ => {
            for l in 0..16 {
                let q = b[Q4_0_QS + l];
                w[l] = KVALUES_IQ4NL[(q & 15) as usize];
                w[16 + l] = KVALUES_IQ4NL[(q >> 4) as usize];
            }
        }
    }
    u[B32_W + 32 * k..B32_W + 32 * k + 32].copy_from_slice(bytemuck::cast_slice(&w));
    for j in 0..8 {
        let q: i32 = w[4 * j..4 * j + 4].iter().map(|v| *v as i32).sum();
        put_i32(u, B32_NEGCORR + 32 * k + 4 * j, -128 * q);
    }
    put_f32(u, B32_DX + 4 * k, f16_at(b, 0));
}

/// Packs `t` activation rows (`act_bytes` each, in the weight type's `vec_dot_type`) into
/// token pairs, `units` units per pair; the odd last token is paired with itself.
pub(crate) fn pack_acts(fam: Family, acts: &[u8], act_bytes: usize, t: usize, out: &mut [u8]) {
    let pairs = t.div_ceil(2);
    let stride = out.len() / pairs.max(1);
    let flip = fam.act_flip();
    for (p, o) in out.chunks_exact_mut(stride).enumerate().take(pairs) {
        let toks = [2 * p, (2 * p + 1).min(t - 1)];
        for (h, &c) in toks.iter().enumerate() {
            let y = &acts[c * act_bytes..(c + 1) * act_bytes];
            match fam {
                Family::K16 | Family::K32 => {
                    let units = o.chunks_exact_mut(fam.act_unit());
                    for (yb, u) in y.chunks_exact(292).zip(units) {
                        for g in 0..8 {
                            for l in 0..32 {
                                u[KA_A + 64 * g + 32 * h + l] = yb[Q8K_QS + 32 * g + l] ^ flip;
                            }
                        }
                        let dy = f32_at(yb, 0);
                        for l in 0..8 {
                            put_f32(u, KA_DY + 32 * h + 4 * l, dy);
                        }
                        if fam == Family::K32 {
                            for k in 0..8 {
                                let s = i16_at(yb, Q8K_BSUMS + 4 * k)
                                    .wrapping_add(i16_at(yb, Q8K_BSUMS + 4 * k + 2));
                                put_i16(u, KA_BP + 16 * h + 2 * k, s);
                            }
                            for l in 0..4 {
                                put_f32(u, KA_NEGDY + 16 * h + 4 * l, -dy);
                            }
                        }
                    }
                }
                Family::B32 => {
                    let units = o.chunks_exact_mut(B32_A_UNIT);
                    for (y4, u) in y.chunks(4 * 34).zip(units) {
                        for (k, yb) in y4.chunks_exact(34).enumerate() {
                            for l in 0..32 {
                                u[BA_A + 64 * k + 32 * h + l] = yb[Q8_0_QS + l] ^ flip;
                            }
                            let dy = f16_at(yb, 0);
                            for l in 0..8 {
                                put_f32(u, BA_DY + 64 * k + 32 * h + 4 * l, dy);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The f32 at `p` (a packed unit's scale), for the tile kernels.
///
/// # Safety
/// `p` must point at 4 readable bytes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn f32p(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 4 readable bytes; the read is unaligned.
    unsafe { p.cast::<f32>().read_unaligned() }
}
