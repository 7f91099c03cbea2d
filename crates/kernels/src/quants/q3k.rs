//! Q3_K: 3-bit symmetric quants in 16 sub-blocks of 16 with 6-bit scales; two low bits in `qs`,
//! the third in `hmask` (`quantize_row_q3_K_ref`, `quantize_row_q3_K_impl`,
//! `dequantize_row_q3_K` in ggml-quants.c).

// Index loops mirror ggml's C loops one for one, so the port can be checked line by line.
#![allow(clippy::needless_range_loop)]

use super::kquants::{
    check_dequant, for_each_super_block, pack_2bit, pack_scales_q3, q3_scale, Super,
};
use super::lanes::{block_lanes16, quantize_fast, FastBlock, Lanes, Portable, Q3Job, Weights};
use super::search::{make_q3_quants, make_qx_quants};
use crate::blocks::{BlockQ3K, QK_K};
use crate::fp::{f16_to_f32, f32_to_f16, nearest_int};

/// Quantizes `x` (`y.len()` super-blocks of 256) to Q3_K exactly as ggml's `quantize_q3_K`:
/// `quantize_row_q3_K_ref` without an importance matrix, `quantize_row_q3_K_impl` with one (one
/// weight per column; `x` may hold several rows of `imatrix.len()` values).
///
/// # Panics
/// On inconsistent lengths (see [`super::kquants`]).
pub fn quantize_row_q3_k(x: &[f32], y: &mut [BlockQ3K], imatrix: Option<&[f32]>) {
    for_each_super_block("q3_K", x, y, imatrix, |xb, yb, qw| match qw {
        None => quantize_block_ref(xb, yb),
        Some(qw) => quantize_block_impl(xb, yb, qw),
    });
}

fn quantize_block_ref(x: &Super, y: &mut BlockQ3K) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    for j in 0..QK_K / 16 {
        scales[j] = make_q3_quants(
            16,
            4,
            &x[16 * j..16 * j + 16],
            &mut l[16 * j..16 * j + 16],
            true,
        );
    }
    finish_ref(Portable, x, y, &scales, natural(&l));
}

/// The search's levels by sub-block when they are kept in element order.
fn natural(l: &[i8; QK_K]) -> impl FnOnce(u16) -> [[i8; 16]; 16] + '_ {
    |_| std::array::from_fn(|j| l[16 * j..16 * j + 16].try_into().expect("16 levels"))
}

/// The reference path after the sub-block searches: the block's scales ([`block_header`]),
/// then the common tail.
#[inline(always)]
fn finish_ref<L: Lanes>(
    lanes: L,
    x: &Super,
    y: &mut BlockQ3K,
    scales: &[f32; 16],
    search: impl FnOnce(u16) -> [[i8; 16]; 16],
) {
    let d = block_header(lanes, scales, y);
    finish_block(lanes, x, y, &d, search);
}

/// The reference path's block header: 6-bit scales against the largest-magnitude scale in
/// `y.scales`, fp16 `d` in `y.d`. Returns each sub-block's step `d·(l6 - 32)` as the
/// dequantizer reads it back.
#[inline(always)]
pub(crate) fn block_header<L: Lanes>(lanes: L, scales: &[f32; 16], y: &mut BlockQ3K) -> [f32; 16] {
    let mut l6 = [0i32; 16];
    match lanes.q3_scales(scales) {
        Some((levels, d)) => {
            l6 = levels;
            pack_scales_q3(&l6, &mut y.scales);
            y.d = f32_to_f16(d);
        }
        None => {
            y.scales = [0; 12];
            y.d = f32_to_f16(0.0);
        }
    }
    sub_block_steps(y.d, &l6)
}

/// Each sub-block's step `d·(l6 - 32)`, `d` read back from fp16.
#[inline(always)]
fn sub_block_steps(d: u16, l6: &[i32; 16]) -> [f32; 16] {
    let dd = f16_to_f32(d);
    std::array::from_fn(|j| dd * (l6[j] - 32) as f32)
}

/// `quantize_row_q3_K_ref`'s 6-bit scales: against the first scale of largest magnitude,
/// `iscale = -32/max_scale`, each `nearest_int(iscale·scale)` stored in an `int8_t`, clamped to
/// -32..=31 and offset by 32. Returns them with the value that becomes the fp16 `d`
/// (`1/iscale`), or `None` when every scale is zero (ggml's all-zero branch).
#[inline(always)]
pub(crate) fn q3_scales(scales: &[f32; 16]) -> Option<([i32; 16], f32)> {
    let mut max_scale = 0.0f32;
    let mut amax = 0.0f32;
    for j in 0..QK_K / 16 {
        let scale = scales[j].abs();
        if scale > amax {
            amax = scale;
            max_scale = scales[j];
        }
    }
    if max_scale == 0.0 {
        return None;
    }
    let iscale = -32.0 / max_scale;
    let mut l6 = [0i32; 16];
    for j in 0..QK_K / 16 {
        // ggml stores the rounded value in an int8_t before clamping.
        let v = nearest_int(iscale * scales[j]) as i8 as i32;
        l6[j] = v.clamp(-32, 31) + 32;
    }
    Some((l6, 1.0 / iscale))
}

fn quantize_block_impl(x: &Super, y: &mut BlockQ3K, qw: &Super) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    let mut weight = [0f32; 16];
    let mut sw = [0f32; QK_K / 16];

    let mut sumx2 = 0.0f32;
    for &v in x.iter() {
        sumx2 += v * v;
    }
    let sigma2 = 2.0 * sumx2 / QK_K as f32;
    for j in 0..QK_K / 16 {
        let xs = &x[16 * j..16 * j + 16];
        for i in 0..16 {
            weight[i] = qw[16 * j + i] * (sigma2 + xs[i] * xs[i]).sqrt();
        }
        let mut sumw = 0.0f32;
        for &w in &weight {
            sumw += w;
        }
        sw[j] = sumw;
        scales[j] = make_qx_quants(16, 4, xs, &mut l[16 * j..16 * j + 16], 1, Some(&weight));
    }
    finish_impl(Portable, x, y, &scales, &sw, natural(&l), false);
}

/// The importance-weighted path after the sub-block searches: `make_qx_quants` over the sixteen
/// scales with the sub-block weight sums (ggml's loop, or with `candidates_in_lanes` the same
/// search with its 19 candidate scales evaluated side by side), fp16 d, then the common tail.
#[inline(always)]
fn finish_impl<L: Lanes>(
    lanes: L,
    x: &Super,
    y: &mut BlockQ3K,
    scales: &[f32; 16],
    sw: &[f32; 16],
    search: impl FnOnce(u16) -> [[i8; 16]; 16],
    candidates_in_lanes: bool,
) {
    let mut ls = [0i8; QK_K / 16];
    let d_block = if candidates_in_lanes {
        lanes.qx16_candidates(scales, sw, 32, &mut ls)
    } else {
        make_qx_quants(QK_K / 16, 32, scales, &mut ls, 1, Some(sw))
    };
    let l6: [i32; 16] = std::array::from_fn(|j| ls[j] as i32);
    pack_scales_q3(&l6, &mut y.scales);
    y.d = f32_to_f16(d_block);
    finish_block(lanes, x, y, &sub_block_steps(y.d, &l6), search);
}

/// The same bytes as [`quantize_row_q3_k`], several times faster: the sixteen sub-block searches of a
/// super-block (of two, where that fills the vectors better) run side by side in SIMD lanes,
/// with AVX-512 or AVX2 when the CPU has them, each lane repeating the scalar search exactly.
///
/// # Panics
/// On inconsistent lengths (see [`super::kquants`]).
pub fn quantize_row_q3_k_fast(x: &[f32], y: &mut [BlockQ3K], imatrix: Option<&[f32]>) {
    quantize_fast::<Q3KFast>(x, y, imatrix);
}

/// The fast super-block quantizer behind [`quantize_row_q3_k_fast`].
pub(crate) struct Q3KFast;

impl FastBlock for Q3KFast {
    type Block = BlockQ3K;
    const NAME: &'static str = "q3_K";

    #[inline(always)]
    fn quantize<L: Lanes>(lanes: L, xb: &Super, yb: &mut BlockQ3K, qw: Option<Weights<'_, 1>>) {
        quantize_blocks::<L, 16, 1>(lanes, [xb], [yb], qw);
    }

    #[inline(always)]
    fn quantize_pair<L: Lanes>(
        lanes: L,
        x: [&Super; 2],
        y: [&mut BlockQ3K; 2],
        qw: Option<Weights<'_, 2>>,
    ) {
        quantize_blocks::<L, 32, 2>(lanes, x, y, qw);
    }

    #[inline(always)]
    fn quantize_plain<L: Lanes>(lanes: L, x: &[f32], y: &mut [BlockQ3K]) {
        for (xc, yc) in x.chunks(PLAIN_CHUNK * QK_K).zip(y.chunks_mut(PLAIN_CHUNK)) {
            plain_chunk(lanes, xc, yc);
        }
    }
}

/// Super-blocks per [`plain_chunk`].
const PLAIN_CHUNK: usize = 16;

/// Up to [`PLAIN_CHUNK`] super-blocks without importance weights. Most sub-blocks' refinement
/// ends after one pass that changes nothing, which `Lanes::q3_first` settles at full
/// throughput, two blocks at a time; their levels stay the first rounding's, which only
/// sub-blocks whose scale rounds to zero need, and get again then. The few lanes it leaves
/// unsettled (about one sub-block in ten) go through the rest of ggml's refinement together,
/// in `Lanes::q3_rest`.
#[inline(always)]
fn plain_chunk<L: Lanes>(lanes: L, x: &[f32], y: &mut [BlockQ3K]) {
    let n = y.len();
    let block = |b: usize| -> &Super {
        x[b * QK_K..(b + 1) * QK_K]
            .try_into()
            .expect("a QK_K slice")
    };
    let sub = |b: usize, j: usize| -> &[f32; 16] {
        block(b)[16 * j..16 * j + 16].try_into().expect("16 values")
    };
    const PAIRS: usize = PLAIN_CHUNK / 2;
    let mut scales = [[0f32; 32]; PAIRS];
    let mut state = [[[0f32; 32]; 3]; PAIRS];
    // Per pair, the lanes left unsettled, and the index of its first job.
    let (mut unsure, mut first_job) = ([0u64; PAIRS], [0usize; PAIRS]);
    let mut n_jobs = 0;
    for p in 0..n.div_ceil(2) {
        let pair = [block(2 * p), block((2 * p + 1).min(n - 1))];
        let xt = lanes.transpose16::<32, 2>(pair);
        unsure[p] = lanes.q3_first(&xt, 4, &mut scales[p], &mut state[p]);
        if 2 * p + 1 >= n {
            unsure[p] &= 0xffff;
        }
        first_job[p] = n_jobs;
        n_jobs += unsure[p].count_ones() as usize;
    }
    let mut jobs = Vec::with_capacity(n_jobs);
    for p in 0..n.div_ceil(2) {
        let mut u = unsure[p];
        while u != 0 {
            let lane = u.trailing_zeros() as usize;
            jobs.push(Q3Job::new(
                sub(2 * p + lane / 16, lane % 16),
                state[p].map(|v| v[lane]),
            ));
            u &= u - 1;
        }
    }
    lanes.q3_rest(&mut jobs, 4);
    for p in 0..n.div_ceil(2) {
        let mut u = unsure[p];
        for job in &jobs[first_job[p]..first_job[p] + u.count_ones() as usize] {
            scales[p][u.trailing_zeros() as usize] = job.scale;
            u &= u - 1;
        }
    }
    let block_scales: [[f32; 16]; PLAIN_CHUNK] =
        std::array::from_fn(|b| block_lanes16::<32, 2>(&scales[b / 2], b % 2));
    let mut steps = [[0f32; 16]; PLAIN_CHUNK];
    lanes.q3_headers(&block_scales[..n], y, &mut steps[..n]);
    for (b, yb) in y.iter_mut().enumerate() {
        let (p, h) = (b / 2, b % 2);
        let levels = |mut skipped: u16| {
            let mut t = [[0i8; 16]; 16];
            while skipped != 0 {
                let j = skipped.trailing_zeros() as usize;
                let lane = 16 * h + j;
                t[j] = if unsure[p] >> lane & 1 != 0 {
                    let before = unsure[p] & ((1u64 << lane) - 1);
                    jobs[first_job[p] + before.count_ones() as usize].l
                } else {
                    lanes.first_levels(sub(b, j), state[p][0][lane], 4)
                };
                skipped &= skipped - 1;
            }
            t
        };
        finish_block(lanes, block(b), yb, &steps[b], levels);
    }
}

/// `B` super-blocks at once: their `N = 16*B` sub-block searches side by side in SIMD lanes,
/// then each block finished as in the reference path.
#[inline(always)]
fn quantize_blocks<L: Lanes, const N: usize, const B: usize>(
    lanes: L,
    x: [&Super; B],
    y: [&mut BlockQ3K; B],
    qw: Option<Weights<'_, B>>,
) {
    let xt = lanes.transpose16::<N, B>(x);
    let (mut scales, mut lt) = ([0f32; N], [[0i8; N]; 16]);
    match qw {
        None => {
            lanes.q3(&xt, 4, &mut scales, &mut lt);
            for (b, yb) in y.into_iter().enumerate() {
                let s = block_lanes16::<N, B>(&scales, b);
                finish_ref(lanes, x[b], yb, &s, |_| transposed(&lt, b));
            }
        }
        Some(Weights { qw, sumx2 }) => {
            let weights: [Super; B] = std::array::from_fn(|b| {
                let sigma2 = 2.0 * sumx2[b] / QK_K as f32;
                std::array::from_fn(|i| qw[b][i] * (sigma2 + x[b][i] * x[b][i]).sqrt())
            });
            let wt = lanes.transpose16::<N, B>(std::array::from_fn(|b| &weights[b]));
            let mut sw = [0f32; N];
            for row in &wt {
                for j in 0..N {
                    sw[j] += row[j];
                }
            }
            lanes.qx(&xt, &wt, 4, &mut scales, &mut lt);
            for (b, yb) in y.into_iter().enumerate() {
                let (s, w) = (
                    block_lanes16::<N, B>(&scales, b),
                    block_lanes16::<N, B>(&sw, b),
                );
                finish_impl(lanes, x[b], yb, &s, &w, |_| transposed(&lt, b), true);
            }
        }
    }
}

/// The search's levels of block `b` (lanes `16b..16b + 16`) by sub-block, out of the lane
/// order: a 16×16 byte transpose.
fn transposed<const N: usize>(lt: &[[i8; N]; 16], b: usize) -> [[i8; 16]; 16] {
    let rows: [&[i8; 16]; 16] =
        std::array::from_fn(|i| lt[i][16 * b..16 * b + 16].try_into().expect("16 levels"));
    transpose_bytes(rows)
}

/// `out[j][i] = rows[i][j]`. On x86-64, four rounds of SSE2 byte interleaves: interleaving
/// row `i` with row `i + 8` into rows `2i` and `2i + 1` moves element (r, c) to the position
/// whose 8-bit index (row bits, then column bits) is r·16 + c rotated left by one bit, so four
/// rounds swap the row and column halves.
#[cfg(target_arch = "x86_64")]
pub(crate) fn transpose_bytes(rows: [&[i8; 16]; 16]) -> [[i8; 16]; 16] {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of x86-64; each pointer covers 16 readable or writable bytes and the
    // loads and stores are unaligned.
    unsafe {
        let mut r: [__m128i; 16] =
            std::array::from_fn(|i| _mm_loadu_si128(rows[i].as_ptr().cast()));
        for _ in 0..4 {
            r = std::array::from_fn(|k| {
                let (a, b) = (r[k / 2], r[k / 2 + 8]);
                if k % 2 == 0 {
                    _mm_unpacklo_epi8(a, b)
                } else {
                    _mm_unpackhi_epi8(a, b)
                }
            });
        }
        let mut out = [[0i8; 16]; 16];
        for (o, v) in out.iter_mut().zip(r) {
            _mm_storeu_si128(o.as_mut_ptr().cast(), v);
        }
        out
    }
}

/// `out[j][i] = rows[i][j]`.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn transpose_bytes(rows: [&[i8; 16]; 16]) -> [[i8; 16]; 16] {
    std::array::from_fn(|j| std::array::from_fn(|i| rows[i][j]))
}

/// The common tail of both paths: re-round against the stored scales (`d[j]`, `y.d` times
/// `l6 - 32`, `l6` being the 6-bit values packed into `y.scales`) with `lanes.requant` (sub-blocks with a
/// zero scale keep the search's levels, which `search(skipped)` gives by sub-block, at least
/// for those in the mask `skipped`; only called when there are such sub-blocks), split off the
/// high bit into `hmask`, pack the low two bits.
#[inline(always)]
fn finish_block<L: Lanes>(
    lanes: L,
    x: &Super,
    y: &mut BlockQ3K,
    d: &[f32; 16],
    search: impl FnOnce(u16) -> [[i8; 16]; 16],
) {
    let mut l = [0i8; QK_K];
    let mut skipped = lanes.requant(x, d, 4, &mut l);
    if skipped != 0 {
        let levels = search(skipped);
        while skipped != 0 {
            let j = skipped.trailing_zeros() as usize;
            l[16 * j..16 * j + 16].copy_from_slice(&levels[j]);
            skipped &= skipped - 1;
        }
    }

    // High bit of the first 32 quants into bit 0 of hmask[0..32], the next 32 into bit 1, ...
    // (levels are 0..8, so bit 2 is the high bit).
    let mut hmask = [0u8; QK_K / 8];
    let mut lu = [0u8; QK_K];
    for k in 0..QK_K / 32 {
        for m in 0..32 {
            let v = l[32 * k + m] as u8;
            hmask[m] |= ((v >> 2) & 1) << k;
            lu[32 * k + m] = v & 3;
        }
    }
    y.hmask = hmask;
    pack_2bit(&lu, &mut y.qs);
}

/// ggml's `dequantize_row_q3_K`: `y = d*(s-32)*(q2 - (hbit ? 0 : 4))`.
///
/// # Panics
/// When `y.len() != x.len() * 256`.
pub fn dequantize_row_q3_k(x: &[BlockQ3K], y: &mut [f32]) {
    check_dequant("q3_K", x.len(), y);
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d_all = f16_to_f32(b.d);
        let mut o = 0;
        let mut is = 0;
        let mut m = 1u8;
        for h in 0..2 {
            let q = &b.qs[32 * h..32 * h + 32];
            for shift in [0u32, 2, 4, 6] {
                for half in 0..2 {
                    let dl = d_all * q3_scale(&b.scales, is) as f32;
                    is += 1;
                    for i in 16 * half..16 * half + 16 {
                        let lo = ((q[i] >> shift) & 3) as i32;
                        let hi = if b.hmask[i] & m != 0 { 0 } else { 4 };
                        out[o] = dl * (lo - hi) as f32;
                        o += 1;
                    }
                }
                m <<= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::lanes::{quantize_with, Portable};
    use super::*;

    /// A backend whose first pass settles no lane, so that every sub-block goes through the
    /// gathering path of [`plain_chunk`] (many groups of 32, odd block counts, partial chunks).
    #[derive(Clone, Copy)]
    struct NothingSettled;

    impl Lanes for NothingSettled {
        fn qkx<const N: usize, const M: usize>(
            self,
            x: &[[f32; N]; M],
            w: &[[f32; N]; M],
            nmax: i32,
            rmin: f32,
            rdelta: f32,
            nstep: i32,
            use_mad: bool,
            strict_degenerate: bool,
            scale_out: &mut [f32; N],
            the_min: &mut [f32; N],
            l_out: &mut [[u8; N]; M],
        ) {
            Portable.qkx(
                x,
                w,
                nmax,
                rmin,
                rdelta,
                nstep,
                use_mad,
                strict_degenerate,
                scale_out,
                the_min,
                l_out,
            )
        }
        fn qx<const N: usize, const M: usize>(
            self,
            x: &[[f32; N]; M],
            w: &[[f32; N]; M],
            nmax: i32,
            scale_out: &mut [f32; N],
            l_out: &mut [[i8; N]; M],
        ) {
            Portable.qx(x, w, nmax, scale_out, l_out)
        }
        fn q3<const N: usize, const M: usize>(
            self,
            x: &[[f32; N]; M],
            nmax: i32,
            scale_out: &mut [f32; N],
            l_out: &mut [[i8; N]; M],
        ) {
            Portable.q3(x, nmax, scale_out, l_out)
        }
        fn q3_first<const N: usize, const M: usize>(
            self,
            x: &[[f32; N]; M],
            nmax: i32,
            scale_out: &mut [f32; N],
            state: &mut [[f32; N]; 3],
        ) -> u64 {
            // Garbage in the outputs: the rest of the search must overwrite every lane.
            let _ = (x, nmax);
            scale_out.fill(f32::NAN);
            state.iter_mut().for_each(|s| s.fill(f32::NAN));
            u64::MAX >> (64 - N)
        }
        fn requant(self, x: &Super, d: &[f32; 16], nmax: i32, l: &mut [i8; QK_K]) -> u16 {
            Portable.requant(x, d, nmax, l)
        }
    }

    /// Rows where most sub-blocks' scales round to zero next to an outlier (so the blocks
    /// keep their search levels), with all-zero and denormal-only sub-blocks (ggml's early
    /// return) among them: every backend gives the reference bytes.
    #[test]
    fn zero_scale_sub_blocks_keep_the_search_levels() {
        let mut seed = 0x51ed_270bu32;
        let x: Vec<f32> = (0..8 * QK_K)
            .map(|i| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let u = seed as f32 / u32::MAX as f32 - 0.5;
                match (i / 16) % 7 {
                    _ if i % QK_K == 77 => 5000.0,
                    3 => 0.0,
                    5 => u * 1e-40,
                    _ => u,
                }
            })
            .collect();
        let mut want = vec![<BlockQ3K as bytemuck::Zeroable>::zeroed(); 8];
        quantize_row_q3_k(&x, &mut want, None);
        let zero_scales = want
            .iter()
            .map(|b| (0..16).filter(|&j| q3_scale(&b.scales, j) == 0).count())
            .sum::<usize>();
        assert!(zero_scales > 100, "{zero_scales}");
        let check = |name: &str, got: &[BlockQ3K]| {
            assert!(
                bytemuck::cast_slice::<_, u8>(got) == bytemuck::cast_slice::<_, u8>(&want),
                "{name}"
            );
        };
        let mut got = vec![<BlockQ3K as bytemuck::Zeroable>::zeroed(); 8];
        quantize_with::<Q3KFast, _>(Portable, &x, &mut got, None);
        check("portable", &got);
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = super::super::lanes::Avx2::detect() {
            quantize_with::<Q3KFast, _>(avx2, &x, &mut got, None);
            check("avx2", &got);
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(avx512) = super::super::lanes::Avx512::detect() {
            quantize_with::<Q3KFast, _>(avx512, &x, &mut got, None);
            check("avx512", &got);
        }
    }

    #[test]
    fn byte_transpose_swaps_rows_and_columns() {
        let rows: [[i8; 16]; 16] =
            std::array::from_fn(|i| std::array::from_fn(|j| (16 * i + j) as u8 as i8));
        let out = transpose_bytes(std::array::from_fn(|i| &rows[i]));
        for i in 0..16 {
            for j in 0..16 {
                assert_eq!(out[j][i], rows[i][j], "({i}, {j})");
            }
        }
    }

    #[test]
    fn gathered_refinement_gives_the_reference_bytes() {
        let mut seed = 0x9e37_79b9u32;
        for blocks in [1, 2, 15, 16, 17, 37] {
            let x: Vec<f32> = (0..blocks * QK_K)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    let u = seed as f32 / u32::MAX as f32 - 0.5;
                    u * u * u * 8.0
                })
                .collect();
            let mut want = vec![<BlockQ3K as bytemuck::Zeroable>::zeroed(); blocks];
            quantize_row_q3_k(&x, &mut want, None);
            let mut got = vec![<BlockQ3K as bytemuck::Zeroable>::zeroed(); blocks];
            quantize_with::<Q3KFast, _>(NothingSettled, &x, &mut got, None);
            assert!(
                bytemuck::cast_slice::<_, u8>(&got) == bytemuck::cast_slice::<_, u8>(&want),
                "{blocks} blocks"
            );
        }
    }
}
