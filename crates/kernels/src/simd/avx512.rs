//! The AVX-512 path (avx512f + avx512bw + avx512vl + avx512vnni on top of the AVX2 set). As in
//! ggml-cpu, the quantized kernels keep their 256-bit shape and gain VNNI: the u8 × i8 → i32
//! sums use one `vpdpbusd` instead of `maddubs` + `madd`. The float formats (F32, F16, BF16)
//! use full 512-bit registers for both dequantization and dot products.
//!
//! A CPU with AVX-512F/BW but without VNNI (Skylake-X) is not offered this path; it runs the
//! AVX2 one, which is what ggml's build for that CPU does for these kernels too.

use std::arch::x86_64::*;

use crate::simd::{prefetch_lines, scalar};
use crate::GgmlType;

/// The shared x86 kernel bodies compiled for the AVX-512 + VNNI feature set.
pub(crate) mod k256 {
    x86_kernels!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni");

    /// u8 × i8 products summed four to an i32 lane and added to `acc` in one VNNI `vpdpbusd`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    fn mul_sum_us8_pairs(acc: __m256i, ax: __m256i, sy: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, ax, sy)
    }

    /// i16 × i16 products summed two to an i32 lane and added to `acc` in one VNNI
    /// `vpdpwssd` (non-saturating: the same wrapping sum as `madd` then `add`, one uop fewer
    /// per 32 values in the K-quant loops).
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    fn madd_acc(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_dpwssd_epi32(acc, a, b)
    }

    /// The 32 bits of the u32 at `off` as 32 bytes, 0xFF where the bit is set: the bits go
    /// straight into a mask register (`kmovd`) and out as bytes (`vpmovm2b`), where AVX2 needs
    /// a broadcast, a shuffle, an or and a compare.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    fn bits32(b: &[u8], off: usize) -> __m256i {
        _mm256_movm_epi8(_cvtu32_mask32(u32_at(b, off)))
    }
}

/// Dequantizes whole blocks of `ty` (lengths checked by the dispatcher).
///
/// # Safety
/// The CPU must support avx2, fma, f16c, avx512f, avx512bw, avx512vl and avx512vnni.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn dequantize(ty: GgmlType, x: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F16 => {
            let mut xc = x.chunks_exact(32);
            let mut oc = out.chunks_exact_mut(16);
            for (b, y) in (&mut xc).zip(&mut oc) {
                store16(y, _mm512_cvtph_ps(load256(b)));
            }
            scalar::dequantize(ty, xc.remainder(), oc.into_remainder());
        }
        GgmlType::BF16 => {
            let mut xc = x.chunks_exact(32);
            let mut oc = out.chunks_exact_mut(16);
            for (b, y) in (&mut xc).zip(&mut oc) {
                let w = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(load256(b)));
                store16(y, _mm512_castsi512_ps(w));
            }
            scalar::dequantize(ty, xc.remainder(), oc.into_remainder());
        }
        // SAFETY: this function's features are the ones `k256` is compiled for.
        _ => unsafe { k256::dequantize(ty, x, out) },
    }
}

/// Dot product of weight blocks `x` with activation blocks `y` (lengths checked by the
/// dispatcher).
///
/// # Safety
/// The CPU must support avx2, fma, f16c, avx512f, avx512bw, avx512vl and avx512vnni.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn vec_dot(ty: GgmlType, x: &[u8], y: &[u8]) -> f32 {
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => dot_float(ty, x, y),
        // SAFETY: this function's features are the ones `k256` is compiled for.
        _ => unsafe { k256::vec_dot(ty, x, y) },
    }
}

/// Dot products of consecutive weight rows (`row_bytes` each, one per value of `out`) with one
/// activation row (lengths checked by the dispatcher); bit-identical to [`vec_dot`] per row.
///
/// # Safety
/// The CPU must support avx2, fma, f16c, avx512f, avx512bw, avx512vl and avx512vnni.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn vec_dot_rows(ty: GgmlType, x: &[u8], row_bytes: usize, y: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 => rows_float::<FMT_F32>(ty, x, row_bytes, y, out),
        GgmlType::F16 => rows_float::<FMT_F16>(ty, x, row_bytes, y, out),
        GgmlType::BF16 => rows_float::<FMT_BF16>(ty, x, row_bytes, y, out),
        // SAFETY: this function's features are the ones `k256` is compiled for.
        _ => unsafe { k256::vec_dot_rows(ty, x, row_bytes, y, out) },
    }
}

/// The first 32 bytes of `b`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn load256(b: &[u8]) -> __m256i {
    let s = &b[..32];
    // SAFETY: `s` holds 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
}

/// Writes 16 floats to `out[..16]`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn store16(out: &mut [f32], v: __m512) {
    let s = &mut out[..16];
    // SAFETY: `s` holds 16 writable floats; the store is unaligned.
    unsafe { _mm512_storeu_ps(s.as_mut_ptr(), v) }
}

// ------------------------------------------------------------------ float formats
//
// The F32/F16/BF16 dots are compiled once per format (a const-generic tag), so the inner loop
// holds no match on the type and no bounds check. Each row's sum is four 16-lane FMA
// accumulators over 64 values at a time, `(a0 + a1) + (a2 + a3)` reduced by
// `_mm512_reduce_add_ps`, plus the scalar loop over the last `len % 64` values, whether the row
// runs alone ([`vec_dot`]) or beside others ([`vec_dot_rows`]): the same operations in the same
// order, so the same bits.
//
// At Gemma's shapes a decode product of these formats streams its weights from L3 or memory
// and does little else, so what decides its speed is how many weight bytes are in flight:
// [`vec_dot_rows`] runs several rows in one pass (one activation load for all of them, several
// weight streams), and the half-precision formats, which consume their bytes at half the rate,
// also ask for them [`FLOAT_PREFETCH`] bytes ahead (`bench/README.md` has the measurements).

/// Element encoding of a float format, as a const-generic tag.
const FMT_F32: u8 = 0;
const FMT_F16: u8 = 1;
const FMT_BF16: u8 = 2;

/// Bytes per value of format `f`.
const fn fmt_size(f: u8) -> usize {
    if f == FMT_F32 {
        4
    } else {
        2
    }
}

/// Weight rows per pass of [`vec_dot_rows`] for format `f`: F32 four, F16/BF16 two (measured
/// best of 1-4 with the matrix in memory; with it in L3 all are at the core's read bandwidth).
const fn rows_per_pass(f: u8) -> usize {
    if f == FMT_F32 {
        4
    } else {
        2
    }
}

/// How far ahead of the loads the F16/BF16 row passes ask for weight bytes (one `prefetcht0`
/// per 64-byte line of each row, in the inner loop). F32 runs without: the hardware
/// prefetchers keep up with it, and software prefetch at 4-12 KiB made it slower.
const FLOAT_PREFETCH: usize = 4096;

/// 16 values of format `F` at `p`, widened to f32 (exactly: every f16 and bf16 is an f32).
///
/// # Safety
/// `p` must point to `16 * fmt_size(F)` readable bytes.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn widen16<const F: u8>(p: *const u8) -> __m512 {
    match F {
        // SAFETY: the caller guarantees 64 readable bytes; the load is unaligned.
        FMT_F32 => unsafe { _mm512_loadu_ps(p.cast()) },
        // SAFETY: the caller guarantees 32 readable bytes; the load is unaligned.
        FMT_F16 => _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(p.cast()) }),
        _ => {
            // SAFETY: as for F16.
            let h = _mm512_cvtepu16_epi32(unsafe { _mm256_loadu_si256(p.cast()) });
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(h))
        }
    }
}

/// The four accumulators of each of `N` weight rows (format `W`, `rb` bytes apart from `x`)
/// over `steps` × 64 values against one activation (format `A` at `y`): each activation load
/// serves all `N` rows, and each row keeps its own accumulators in the one-row order.
///
/// # Safety
/// Each of the `N` rows must hold `64 * steps` values of `W`, and `y` as many of `A`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn acc_rows<const W: u8, const A: u8, const N: usize>(
    x: *const u8,
    rb: usize,
    y: *const u8,
    steps: usize,
) -> [[__m512; 4]; N] {
    let (sw, sa) = (16 * fmt_size(W), 16 * fmt_size(A));
    let mut acc = [[_mm512_setzero_ps(); 4]; N];
    for i in 0..steps {
        // SAFETY: step `i` reads values 64i..64i + 64 of each row, inside them (caller).
        let (xs, ys) = unsafe { (x.add(4 * sw * i), y.add(4 * sa * i)) };
        if W != FMT_F32 {
            for r in 0..N {
                prefetch_lines::<FLOAT_PREFETCH, _MM_HINT_T0>(xs.wrapping_add(r * rb), 4 * sw);
            }
        }
        for k in 0..4 {
            // SAFETY: as above; lane group `k` is values 16k..16k + 16 of the step.
            let b = unsafe { widen16::<A>(ys.add(sa * k)) };
            for (r, a) in acc.iter_mut().enumerate() {
                // SAFETY: as above, in row `r`.
                let w = unsafe { widen16::<W>(xs.add(r * rb + sw * k)) };
                a[k] = _mm512_fmadd_ps(w, b, a[k]);
            }
        }
    }
    acc
}

/// A row's dot from its accumulators and its tail (the values after the last whole 64, which
/// the scalar loop adds; an empty tail adds its `+0.0` without the call).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn finish_float(ty: GgmlType, acc: [__m512; 4], xr: &[u8], yr: &[u8]) -> f32 {
    let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    let tail = if xr.is_empty() {
        0.0
    } else {
        scalar::vec_dot(ty, xr, yr)
    };
    _mm512_reduce_add_ps(s) + tail
}

/// F32/F16/BF16 dot of one weight row `x` with its activation `y` (same format, same length).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn dot_float(ty: GgmlType, x: &[u8], y: &[u8]) -> f32 {
    match ty {
        GgmlType::F32 => dot_float_as::<FMT_F32>(ty, x, y),
        GgmlType::F16 => dot_float_as::<FMT_F16>(ty, x, y),
        _ => dot_float_as::<FMT_BF16>(ty, x, y),
    }
}

/// [`dot_float`] for format `W`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
fn dot_float_as<const W: u8>(ty: GgmlType, x: &[u8], y: &[u8]) -> f32 {
    let step = 64 * fmt_size(W);
    let steps = x.len().min(y.len()) / step;
    // SAFETY: both rows hold `steps * step` bytes, `64 * steps` values of `W`.
    let [acc] = unsafe { acc_rows::<W, W, 1>(x.as_ptr(), 0, y.as_ptr(), steps) };
    finish_float(ty, acc, &x[steps * step..], &y[steps * step..])
}

/// The float rows of [`vec_dot_rows`] for format `W`. The activation is widened to f32 once
/// for all rows (F16/BF16: exactly, so each product, and every sum after it, is the one
/// [`dot_float`] computes from the halves), which leaves one conversion per weight load.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn rows_float<const W: u8>(ty: GgmlType, x: &[u8], row_bytes: usize, y: &[u8], out: &mut [f32]) {
    let rb = row_bytes.max(1);
    let step = 64 * fmt_size(W);
    let steps = rb.min(y.len()) / step;
    let whole = steps * step;
    let widened: Vec<f32>;
    let act = if W == FMT_F32 {
        y.as_ptr()
    } else {
        widened = widen_all::<W>(&y[..whole]);
        widened.as_ptr().cast::<u8>()
    };
    let rows = FloatRows {
        ty,
        rb,
        act,
        steps,
        whole,
        yr: &y[whole..],
    };
    if rows_per_pass(W) == 4 {
        rows.run::<W, 4>(x, out);
    } else {
        rows.run::<W, 2>(x, out);
    }
}

/// One activation's view for [`rows_float`]: `act` points at its first `64 * steps` values as
/// f32 (`whole` bytes of the weight format), `yr` its tail in the original format.
struct FloatRows<'a> {
    ty: GgmlType,
    rb: usize,
    act: *const u8,
    steps: usize,
    whole: usize,
    yr: &'a [u8],
}

impl FloatRows<'_> {
    /// The dots of the `rb`-byte rows of `x` into `out`, `N` rows per pass, the last few one
    /// at a time.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn run<const W: u8, const N: usize>(&self, x: &[u8], out: &mut [f32]) {
        let (rb, whole) = (self.rb, self.whole);
        let mut oc = out.chunks_exact_mut(N);
        let mut xc = x.chunks_exact(N * rb);
        for (o, w) in (&mut oc).zip(&mut xc) {
            // SAFETY: each of the `N` rows holds `whole` bytes of `W` (`whole <= rb`) and `act`
            // as many values as f32.
            let accs = unsafe { acc_rows::<W, FMT_F32, N>(w.as_ptr(), rb, self.act, self.steps) };
            for (r, (o, acc)) in o.iter_mut().zip(accs).enumerate() {
                *o = finish_float(self.ty, acc, &w[r * rb + whole..(r + 1) * rb], self.yr);
            }
        }
        let rest = xc.remainder().chunks_exact(rb);
        for (o, w) in oc.into_remainder().iter_mut().zip(rest) {
            // SAFETY: as above, for one row.
            let [acc] = unsafe { acc_rows::<W, FMT_F32, 1>(w.as_ptr(), rb, self.act, self.steps) };
            *o = finish_float(self.ty, acc, &w[whole..], self.yr);
        }
    }
}

/// The values of `y` (format `W`, a whole number of 16-value groups) as f32.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn widen_all<const W: u8>(y: &[u8]) -> Vec<f32> {
    let mut out = vec![0f32; y.len() / fmt_size(W)];
    for (b, o) in y
        .chunks_exact(16 * fmt_size(W))
        .zip(out.chunks_exact_mut(16))
    {
        // SAFETY: `b` holds 16 values of `W`.
        store16(o, unsafe { widen16::<W>(b.as_ptr()) });
    }
    out
}
