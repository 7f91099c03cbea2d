//! The AVX2 path (avx2 + fma + f16c), following ggml-cpu's `arch/x86/quants.c` algorithms:
//! nibble/bit unpacking into bytes, `maddubs` (u8 × i8 → i16 pairs) then `madd` (→ i32) with
//! the sub-block scale, one `fmadd` per block or super-block. The kernel bodies are written once
//! in `x86_kernels!` and instantiated here and in `avx512.rs` (which swaps `maddubs+madd` for
//! VNNI `dpbusd`, exactly where ggml does), so the two paths share their logic and tests.
//!
//! Integer partial sums are exact, so these kernels differ from the scalar path only in the order
//! of the f32 additions across blocks; dequantization uses plain `mul`/`add` (no FMA) so its
//! output is bit-identical to the scalar dequantizers.

/// Sums `d · q` terms of consecutive legacy blocks into four independent FMA accumulators (one
/// chain would wait the FMA latency on every 32-value block). The scales `d = dx · dy` of four
/// blocks are converted and multiplied in one go (`halves4`), since per-block scalar fp16 work
/// is most of a 32-value block's cost; the activation's `dy` come already widened to f32 in
/// `$dy` (one per block, converted once per activation row by `act_halves`, not once per weight
/// row). `$body` maps one weight block `$xb` and activation block `$yb` to the `__m256` whose
/// lanes sum to the block's integer dot; `prefetch_ahead` asks for the weights ahead of each
/// group of four blocks. Used inside `x86_kernels!` so the body inlines with the enclosing
/// function's target features.
macro_rules! sum_blocks {
    ($x:expr, $y:expr, $dy:expr, $xs:expr, $ys:expr, |$xb:ident, $yb:ident| $body:expr) => {{
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut xc = $x.chunks_exact(4 * $xs);
        let mut yc = $y.chunks_exact(4 * $ys);
        let mut dc = $dy.chunks_exact(4);
        for ((x4, y4), dy4) in (&mut xc).zip(&mut yc).zip(&mut dc) {
            prefetch_ahead(x4, 4 * $xs);
            let d4 = _mm256_castps128_ps256(_mm_mul_ps(halves4(x4, 0, $xs), load_f32x4(dy4)));
            for (k, a) in acc.iter_mut().enumerate() {
                let $xb = &x4[k * $xs..(k + 1) * $xs];
                let $yb = &y4[k * $ys..(k + 1) * $ys];
                let d = _mm256_permutevar8x32_ps(d4, _mm256_set1_epi32(k as i32));
                *a = _mm256_fmadd_ps(d, $body, *a);
            }
        }
        let xr = xc.remainder().chunks_exact($xs);
        let rest = xr.zip(yc.remainder().chunks_exact($ys)).zip(dc.remainder());
        for (($xb, $yb), dy) in rest {
            let d = _mm256_set1_ps(f16_at($xb, 0) * *dy);
            acc[0] = _mm256_fmadd_ps(d, $body, acc[0]);
        }
        _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]))
    }};
}

/// Runs the super-block dequantizer `$f` over every whole block of `$x` (`$ts` bytes each) into
/// `$out`, 256 values per block: one loop per type, with the type matched outside it rather
/// than on every block (a jump-table dispatch per block costs measurably; `bench/README.md`).
macro_rules! per_block {
    ($x:expr, $out:expr, $ts:expr, $f:ident) => {
        for (b, y) in $x.chunks_exact($ts).zip($out.as_chunks_mut::<256>().0) {
            $f(b, y)
        }
    };
}

/// Emits the x86 kernels for one target-feature set. `$feat` is the `target_feature` string;
/// the invoking module must define, for that feature set, `mul_sum_us8_pairs(acc, ax, sy)`
/// (adds the u8 × i8 products of `ax` and `sy`, four per i32 lane, to `acc`),
/// `madd_acc(acc, a, b)` (adds the i16 × i16 products of `a` and `b`, two per i32 lane, to
/// `acc`, wrapping like `madd` + `add`) and `bits32(b, off)` (the 32 bits of the u32 at byte `off` of `b` as 32 bytes, 0xFF where the
/// bit is set).
macro_rules! x86_kernels {
    ($feat:literal) => {
        use std::arch::x86_64::*;

        use crate::blocks::KVALUES_IQ4NL;
        use crate::simd::layout::*;
        use crate::simd::{prefetch_ahead, rows_in_stream_order, scalar};
        use crate::GgmlType;

        /// Dequantizes whole blocks of `ty` (lengths checked by the dispatcher).
        ///
        /// # Safety
        /// The CPU must support the features in this module's `target_feature` string.
        #[target_feature(enable = $feat)]
        pub unsafe fn dequantize(ty: GgmlType, x: &[u8], out: &mut [f32]) {
            use GgmlType::*;
            let ts = ty.type_size();
            match ty {
                F16 => deq_f16(x, out),
                BF16 => deq_bf16(x, out),
                // The 32-value formats keep one loop with the match inside: it ran faster
                // than one loop per type (code generation, not the kernel, decides here;
                // the figures are in `bench/README.md`).
                Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | IQ4NL => {
                    for (b, y) in x.chunks_exact(ts).zip(out.as_chunks_mut::<32>().0) {
                        match ty {
                            Q4_0 => deq_q4_0(b, y),
                            Q4_1 => deq_q4_1(b, y),
                            Q5_0 => deq_q5_0(b, y),
                            Q5_1 => deq_q5_1(b, y),
                            Q8_0 => deq_q8_0(b, y),
                            _ => deq_iq4_nl(b, y),
                        }
                    }
                }
                Q2K => per_block!(x, out, ts, deq_q2_k),
                Q3K => per_block!(x, out, ts, deq_q3_k),
                Q4K => per_block!(x, out, ts, deq_q4_k),
                Q5K => per_block!(x, out, ts, deq_q5_k),
                Q6K => per_block!(x, out, ts, deq_q6_k),
                IQ4XS => per_block!(x, out, ts, deq_iq4_xs),
                F32 | Q8_1 | Q8K => scalar::dequantize(ty, x, out),
            }
        }

        /// Dot product of the weight blocks `x` with activation blocks `y` in the type's
        /// `vec_dot_type` (lengths checked by the dispatcher).
        ///
        /// # Safety
        /// The CPU must support the features in this module's `target_feature` string.
        #[target_feature(enable = $feat)]
        pub unsafe fn vec_dot(ty: GgmlType, x: &[u8], y: &[u8]) -> f32 {
            use GgmlType::*;
            match ty {
                F32 => dot_f32(x, y),
                F16 => dot_f16(x, y),
                BF16 => dot_bf16(x, y),
                Q4_0 => dot_q4_0(x, y, &act_halves(y, 34, 0)),
                Q4_1 => dot_q4_1(x, y, &act_halves(y, 36, 0), &act_halves(y, 36, Q8_1_S)),
                Q5_0 => dot_q5_0(x, y, &act_halves(y, 34, 0)),
                Q5_1 => dot_q5_1(x, y, &act_halves(y, 36, 0), &act_halves(y, 36, Q8_1_S)),
                Q8_0 => dot_q8_0(x, y, &act_halves(y, 34, 0)),
                IQ4NL => dot_iq4_nl(x, y, &act_halves(y, 34, 0)),
                Q2K => dot_q2_k(x, y, &pair_scale_masks()),
                Q3K => dot_q3_k(x, y, &pair_scale_masks(), |_, yb, k| k_offset(4, yb, k)),
                Q4K => dot_q4_k(x, y),
                Q5K => dot_q5_k(x, y),
                Q6K => dot_q6_k(x, y, &pair_scale_masks(), |_, yb, k| k_offset(32, yb, k)),
                IQ4XS => dot_iq4_xs(x, y),
                Q8_1 | Q8K => scalar::vec_dot(ty, x, y),
            }
        }

        /// Dot products of the consecutive weight rows in `x` (`row_bytes` each, one per value
        /// of `out`) with one activation row `y` (lengths checked by the dispatcher). The type
        /// is matched once and its kernel inlined into the row loop, so a short row (E2B's 1536
        /// columns are six K-quant super-blocks) pays no dispatch or set-up per row; each
        /// output is the same kernel code as [`vec_dot`], so bit-identical to it.
        ///
        /// # Safety
        /// The CPU must support the features in this module's `target_feature` string.
        #[target_feature(enable = $feat)]
        pub unsafe fn vec_dot_rows(
            ty: GgmlType,
            x: &[u8],
            row_bytes: usize,
            y: &[u8],
            out: &mut [f32],
        ) {
            use GgmlType::*;
            let rb = row_bytes.max(1);
            macro_rules! each_row {
                (|$w:ident| $e:expr) => {
                    rows_in_stream_order(x, rb, out, |$w| $e)
                };
            }
            match ty {
                F32 => each_row!(|w| dot_f32(w, y)),
                F16 => each_row!(|w| dot_f16(w, y)),
                BF16 => each_row!(|w| dot_bf16(w, y)),
                Q4_0 | Q5_0 | Q8_0 | IQ4NL => {
                    let dy = act_halves(y, 34, 0);
                    match ty {
                        Q4_0 => each_row!(|w| dot_q4_0(w, y, &dy)),
                        Q5_0 => each_row!(|w| dot_q5_0(w, y, &dy)),
                        Q8_0 => each_row!(|w| dot_q8_0(w, y, &dy)),
                        _ => each_row!(|w| dot_iq4_nl(w, y, &dy)),
                    }
                }
                Q4_1 | Q5_1 => {
                    let (dy, sy) = (act_halves(y, 36, 0), act_halves(y, 36, Q8_1_S));
                    match ty {
                        Q4_1 => each_row!(|w| dot_q4_1(w, y, &dy, &sy)),
                        _ => each_row!(|w| dot_q5_1(w, y, &dy, &sy)),
                    }
                }
                Q2K => {
                    let masks = pair_scale_masks();
                    each_row!(|w| dot_q2_k(w, y, &masks))
                }
                Q3K => {
                    let (masks, offs) = (pair_scale_masks(), k_offsets(4, y));
                    each_row!(|w| dot_q3_k(w, y, &masks, |i, _, k| offs[i][k]))
                }
                Q4K => {
                    let masks = k4_scale_masks();
                    each_row!(|w| dot_k4(w, y, 144, Q4K_SCALES, &masks, |xb, c| q4k_quants(xb, c)))
                }
                Q5K => {
                    let masks = k4_scale_masks();
                    each_row!(|w| dot_k4(w, y, 176, Q5K_SCALES, &masks, |xb, c| q5k_quants(xb, c)))
                }
                Q6K => {
                    let (masks, offs) = (pair_scale_masks(), k_offsets(32, y));
                    each_row!(|w| dot_q6_k(w, y, &masks, |i, _, k| offs[i][k]))
                }
                IQ4XS => each_row!(|w| dot_iq4_xs(w, y)),
                Q8_1 | Q8K => each_row!(|w| scalar::vec_dot(ty, w, y)),
            }
        }

        // ---------------------------------------------------------------- helpers


        /// The fp16 at `off` as f32 through F16C (exact, like `fp::f16_to_f32`, but one
        /// instruction instead of a call).
        #[target_feature(enable = $feat)]
        #[inline]
        fn f16_at(b: &[u8], off: usize) -> f32 {
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(u16_at(b, off) as i32)))
        }

        /// The fp16 fields at `off` of four consecutive blocks `stride` bytes apart, as f32.
        #[target_feature(enable = $feat)]
        #[inline]
        fn halves4(b: &[u8], off: usize, stride: usize) -> __m128 {
            let h = _mm_setr_epi16(
                u16_at(b, off) as i16,
                u16_at(b, off + stride) as i16,
                u16_at(b, off + 2 * stride) as i16,
                u16_at(b, off + 3 * stride) as i16,
                0,
                0,
                0,
                0,
            );
            _mm_cvtph_ps(h)
        }

        /// The fp16 field at `off` of every `stride`-byte activation block of `y`, widened to
        /// f32 (the Q8_0/Q8_1 scale `d`, or the Q8_1 block sum `s`): converted once per
        /// activation row and shared by every weight row it meets.
        #[target_feature(enable = $feat)]
        fn act_halves(y: &[u8], stride: usize, off: usize) -> Vec<f32> {
            let mut out = Vec::with_capacity(y.len() / stride);
            let mut yc = y.chunks_exact(4 * stride);
            for y4 in &mut yc {
                let mut v = [0f32; 4];
                // SAFETY: `v` holds 4 writable floats; the store is unaligned.
                unsafe { _mm_storeu_ps(v.as_mut_ptr(), halves4(y4, off, stride)) };
                out.extend_from_slice(&v);
            }
            out.extend(yc.remainder().chunks_exact(stride).map(|b| f16_at(b, off)));
            out
        }

        /// Four f32 from the first 16 bytes of `v`.
        #[target_feature(enable = $feat)]
        #[inline]
        fn load_f32x4(v: &[f32]) -> __m128 {
            let s = &v[..4];
            // SAFETY: `s` holds 4 readable floats; the load is unaligned.
            unsafe { _mm_loadu_ps(s.as_ptr()) }
        }

        /// Σ over blocks of `m · s`: the Q4_1/Q5_1 minimum (fp16 at offset 2 of the weight
        /// block) times the Q8_1 block sum `s` (`act_halves(y, 36, Q8_1_S)`), four blocks at a
        /// time.
        #[target_feature(enable = $feat)]
        #[inline]
        fn min_sums(x: &[u8], sy: &[f32], xs: usize) -> f32 {
            let mut acc = _mm_setzero_ps();
            let mut xc = x.chunks_exact(4 * xs);
            let mut sc = sy.chunks_exact(4);
            for (x4, s4) in (&mut xc).zip(&mut sc) {
                let p = _mm_mul_ps(halves4(x4, 2, xs), load_f32x4(s4));
                acc = _mm_add_ps(acc, p);
            }
            let mut tail = 0f32;
            for (xb, s) in xc.remainder().chunks_exact(xs).zip(sc.remainder()) {
                tail += f16_at(xb, 2) * *s;
            }
            hsum_f32x4(acc) + tail
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn load256(b: &[u8], off: usize) -> __m256i {
            let s = &b[off..off + 32];
            // SAFETY: `s` holds 32 readable bytes; the load is unaligned.
            unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn load128(b: &[u8], off: usize) -> __m128i {
            let s = &b[off..off + 16];
            // SAFETY: `s` holds 16 readable bytes; the load is unaligned.
            unsafe { _mm_loadu_si128(s.as_ptr().cast()) }
        }

        /// Writes 8 floats to `out[..8]`.
        #[target_feature(enable = $feat)]
        #[inline]
        fn store8(out: &mut [f32], v: __m256) {
            let s = &mut out[..8];
            // SAFETY: `s` holds 8 writable floats; the store is unaligned.
            unsafe { _mm256_storeu_ps(s.as_mut_ptr(), v) }
        }

        /// The 32 values of a block's output at `at`.
        #[inline(always)]
        fn part(y: &mut [f32; 256], at: usize) -> &mut [f32; 32] {
            (&mut y[at..at + 32]).try_into().expect("32 values")
        }

        /// The two 16-value halves of 32 values.
        #[inline(always)]
        fn halves(y: &mut [f32; 32]) -> (&mut [f32; 16], &mut [f32; 16]) {
            let (lo, hi) = y.split_at_mut(16);
            (
                lo.try_into().expect("16 values"),
                hi.try_into().expect("16 values"),
            )
        }

        /// The sum of 8 lanes in the order every x86 dot (and `kernels::tile`) ends with.
        #[target_feature(enable = $feat)]
        #[inline]
        pub(crate) fn hsum_f32x8(x: __m256) -> f32 {
            let r = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps::<1>(x));
            hsum_f32x4(r)
        }

        /// The sum of 4 lanes: `(0 + 2) + (1 + 3)`, the order of the K-quant dots' min term.
        #[target_feature(enable = $feat)]
        #[inline]
        pub(crate) fn hsum_f32x4(x: __m128) -> f32 {
            let r = _mm_add_ps(x, _mm_movehl_ps(x, x));
            let r = _mm_add_ss(r, _mm_movehdup_ps(r));
            _mm_cvtss_f32(r)
        }

        /// 16 packed bytes → 32 nibbles: low nibbles in bytes 0..16, high in 16..32, which is
        /// the element order of the legacy formats.
        #[target_feature(enable = $feat)]
        #[inline]
        fn nibbles32(b: &[u8], off: usize) -> __m256i {
            let t = load128(b, off);
            let v = _mm256_set_m128i(_mm_srli_epi16::<4>(t), t);
            _mm256_and_si256(v, _mm256_set1_epi8(0x0f))
        }

        /// Σ of the i8 × i8 products of `x` and `y` into 8 f32 lanes, by the sign trick
        /// (|x| × sign(y, x)) so the unsigned × signed multiply applies. `y` must not hold -128.
        #[target_feature(enable = $feat)]
        #[inline]
        fn mul_sum_i8_pairs_float(x: __m256i, y: __m256i) -> __m256 {
            let ax = _mm256_sign_epi8(x, x);
            let sy = _mm256_sign_epi8(y, x);
            _mm256_cvtepi32_ps(mul_sum_us8_pairs(_mm256_setzero_si256(), ax, sy))
        }

        /// Per-pair i16 sums of the i8 × i8 products (sign trick, no saturation for |x| ≤ 127).
        #[target_feature(enable = $feat)]
        #[inline]
        fn mul_add_epi8(x: __m256i, y: __m256i) -> __m256i {
            _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
        }

        /// The 16 i8 sub-block scales of a Q2_K/Q3_K/Q6_K block widened to i16 once, as two
        /// vectors (scales 0-7, then 8-15) each holding its eight in both 128-bit lanes, so
        /// that one `vpshufb` with [`pair_scale_masks`] gives the 16-value pair that one
        /// 32-byte `maddubs` covers (ggml's `get_scale_shuffle_q3k`), where a per-pair
        /// shuffle and sign extension would cost two port-5 uops.
        #[target_feature(enable = $feat)]
        #[inline]
        fn widen_scales(sc: __m128i) -> [__m256i; 2] {
            let all = _mm256_cvtepi8_epi16(sc);
            let (lo, hi) = (_mm256_castsi256_si128(all), _mm256_extracti128_si256::<1>(all));
            [_mm256_set_m128i(lo, lo), _mm256_set_m128i(hi, hi)]
        }

        /// The four `vpshufb` controls for [`widen_scales`]: control `j` puts i16 scale `2j` in
        /// the 8 lanes of the low half and `2j + 1` in the high half. Hidden from the optimiser
        /// for the reason given at [`k4_scale_masks`].
        #[target_feature(enable = $feat)]
        #[inline]
        fn pair_scale_masks() -> [__m256i; 4] {
            let masks: [__m256i; 4] = std::array::from_fn(|j| {
                let lo = (4 * j as i16) | ((4 * j as i16 + 1) << 8);
                let hi = (4 * j as i16 + 2) | ((4 * j as i16 + 3) << 8);
                _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo))
            });
            std::hint::black_box(masks)
        }

        /// 16 i8 values → 16 floats `q * d` at `out`.
        #[target_feature(enable = $feat)]
        #[inline]
        fn store16_mul(out: &mut [f32; 16], q: __m128i, d: __m256) {
            let lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
            let hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(q)));
            store8(&mut out[..8], _mm256_mul_ps(lo, d));
            store8(&mut out[8..], _mm256_mul_ps(hi, d));
        }

        /// 16 i8 values → 16 floats `q * d + m` at `out` (a separate add, as ggml rounds).
        #[target_feature(enable = $feat)]
        #[inline]
        fn store16_mul_add(out: &mut [f32; 16], q: __m128i, d: __m256, m: __m256) {
            let lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
            let hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(q)));
            store8(&mut out[..8], _mm256_add_ps(_mm256_mul_ps(lo, d), m));
            store8(&mut out[8..], _mm256_add_ps(_mm256_mul_ps(hi, d), m));
        }

        /// 32 i8 values → 32 floats `q * d`.
        #[target_feature(enable = $feat)]
        #[inline]
        fn store32_mul(out: &mut [f32; 32], q: __m256i, d: f32) {
            let d = _mm256_set1_ps(d);
            let (lo, hi) = halves(out);
            store16_mul(lo, _mm256_castsi256_si128(q), d);
            store16_mul(hi, _mm256_extracti128_si256::<1>(q), d);
        }

        /// 32 i8 values → 32 floats `q * d + m`.
        #[target_feature(enable = $feat)]
        #[inline]
        fn store32_mul_add(out: &mut [f32; 32], q: __m256i, d: f32, m: f32) {
            let (d, m) = (_mm256_set1_ps(d), _mm256_set1_ps(m));
            let (lo, hi) = halves(out);
            store16_mul_add(lo, _mm256_castsi256_si128(q), d, m);
            store16_mul_add(hi, _mm256_extracti128_si256::<1>(q), d, m);
        }

        /// Looks the 32 nibbles of 16 packed bytes up in the IQ4_NL code book (low nibbles
        /// first), giving signed bytes.
        #[target_feature(enable = $feat)]
        #[inline]
        fn iq4_lookup(b: &[u8], off: usize) -> __m256i {
            let values = load128(bytemuck::cast_slice(&KVALUES_IQ4NL), 0);
            let m4 = _mm_set1_epi8(0x0f);
            let t = load128(b, off);
            let lo = _mm_shuffle_epi8(values, _mm_and_si128(t, m4));
            let hi = _mm_shuffle_epi8(values, _mm_and_si128(_mm_srli_epi16::<4>(t), m4));
            _mm256_set_m128i(hi, lo)
        }

        /// Q8_K quants at 32-byte chunk `k` of activation block `yb`.
        #[target_feature(enable = $feat)]
        #[inline]
        fn q8k(yb: &[u8], k: usize) -> __m256i {
            load256(yb, Q8K_QS + 32 * k)
        }

        // ------------------------------------------------------------ dequantize

        #[target_feature(enable = $feat)]
        fn deq_f16(x: &[u8], out: &mut [f32]) {
            let mut xc = x.chunks_exact(16);
            let mut oc = out.chunks_exact_mut(8);
            for (b, y) in (&mut xc).zip(&mut oc) {
                store8(y, _mm256_cvtph_ps(load128(b, 0)));
            }
            scalar::dequantize(GgmlType::F16, xc.remainder(), oc.into_remainder());
        }

        #[target_feature(enable = $feat)]
        fn deq_bf16(x: &[u8], out: &mut [f32]) {
            let mut xc = x.chunks_exact(16);
            let mut oc = out.chunks_exact_mut(8);
            for (b, y) in (&mut xc).zip(&mut oc) {
                let w = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(load128(b, 0)));
                store8(y, _mm256_castsi256_ps(w));
            }
            scalar::dequantize(GgmlType::BF16, xc.remainder(), oc.into_remainder());
        }

        #[target_feature(enable = $feat)]
        fn deq_q4_0(b: &[u8], y: &mut [f32; 32]) {
            let q = _mm256_sub_epi8(nibbles32(b, Q4_0_QS), _mm256_set1_epi8(8));
            store32_mul(y, q, f16_at(b, 0));
        }

        #[target_feature(enable = $feat)]
        fn deq_q4_1(b: &[u8], y: &mut [f32; 32]) {
            store32_mul_add(y, nibbles32(b, Q4_1_QS), f16_at(b, 0), f16_at(b, Q4_1_M));
        }

        #[target_feature(enable = $feat)]
        fn deq_q5_0(b: &[u8], y: &mut [f32; 32]) {
            let hi = _mm256_andnot_si256(bits32(b, Q5_0_QH), _mm256_set1_epi8(0xf0u8 as i8));
            let q = _mm256_or_si256(nibbles32(b, Q5_0_QS), hi);
            store32_mul(y, q, f16_at(b, 0));
        }

        #[target_feature(enable = $feat)]
        fn deq_q5_1(b: &[u8], y: &mut [f32; 32]) {
            let hi = _mm256_and_si256(bits32(b, Q5_1_QH), _mm256_set1_epi8(0x10));
            let q = _mm256_or_si256(nibbles32(b, Q5_1_QS), hi);
            store32_mul_add(y, q, f16_at(b, 0), f16_at(b, Q5_1_M));
        }

        #[target_feature(enable = $feat)]
        fn deq_q8_0(b: &[u8], y: &mut [f32; 32]) {
            store32_mul(y, load256(b, Q8_0_QS), f16_at(b, 0));
        }

        #[target_feature(enable = $feat)]
        fn deq_iq4_nl(b: &[u8], y: &mut [f32; 32]) {
            store32_mul(y, iq4_lookup(b, Q4_0_QS), f16_at(b, 0));
        }

        #[target_feature(enable = $feat)]
        fn deq_iq4_xs(b: &[u8], y: &mut [f32; 256]) {
            let d = f16_at(b, 0);
            for ib in 0..8 {
                let dl = d * iq4xs_scale(b, ib) as f32;
                store32_mul(part(y, 32 * ib), iq4_lookup(b, IQ4XS_QS + 16 * ib), dl);
            }
        }

        #[target_feature(enable = $feat)]
        fn deq_q2_k(b: &[u8], y: &mut [f32; 256]) {
            let d = f16_at(b, Q2K_D);
            let min = f16_at(b, Q2K_DMIN);
            let m3 = _mm256_set1_epi8(3);
            for half in 0..2 {
                let bits = load256(b, Q2K_QS + 32 * half);
                for j in 0..4 {
                    let q = _mm256_and_si256(
                        _mm256_srl_epi16(bits, _mm_cvtsi32_si128(2 * j as i32)),
                        m3,
                    );
                    let is = 8 * half + 2 * j;
                    let (lo, hi) = halves(part(y, 128 * half + 32 * j));
                    for (p, out, qp) in [
                        (0, lo, _mm256_castsi256_si128(q)),
                        (1, hi, _mm256_extracti128_si256::<1>(q)),
                    ] {
                        let sc = b[Q2K_SCALES + is + p];
                        let dl = _mm256_set1_ps(d * (sc & 0xf) as f32);
                        let ml = _mm256_set1_ps(-(min * (sc >> 4) as f32));
                        store16_mul_add(out, qp, dl, ml);
                    }
                }
            }
        }

        #[target_feature(enable = $feat)]
        fn deq_q3_k(b: &[u8], y: &mut [f32; 256]) {
            let d_all = f16_at(b, Q3K_D);
            let scales = q3k_scales(&b[Q3K_SCALES..Q3K_SCALES + 12]);
            let hbits = load256(b, Q3K_HMASK);
            let m3 = _mm256_set1_epi8(3);
            let four = _mm256_set1_epi8(4);
            for half in 0..2 {
                let bits = load256(b, Q3K_QS + 32 * half);
                for j in 0..4 {
                    let low = _mm256_and_si256(
                        _mm256_srl_epi16(bits, _mm_cvtsi32_si128(2 * j as i32)),
                        m3,
                    );
                    let mask = _mm256_set1_epi8((1u8 << (4 * half + j)) as i8);
                    let set = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, mask), mask);
                    let q = _mm256_sub_epi8(low, _mm256_andnot_si256(set, four));
                    let is = 8 * half + 2 * j;
                    let (lo, hi) = halves(part(y, 128 * half + 32 * j));
                    let d0 = _mm256_set1_ps(d_all * scales[is] as f32);
                    let d1 = _mm256_set1_ps(d_all * scales[is + 1] as f32);
                    store16_mul(lo, _mm256_castsi256_si128(q), d0);
                    store16_mul(hi, _mm256_extracti128_si256::<1>(q), d1);
                }
            }
        }

        #[target_feature(enable = $feat)]
        fn deq_q4_k(b: &[u8], y: &mut [f32; 256]) {
            let d = f16_at(b, 0);
            let min = f16_at(b, Q4K_DMIN);
            let sm = k4_scales_mins(&b[Q4K_SCALES..Q4K_SCALES + 12]);
            let m4 = _mm256_set1_epi8(0x0f);
            for c in 0..4 {
                let bits = load256(b, Q4K_QS + 32 * c);
                let lo = _mm256_and_si256(bits, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
                let (s1, s2) = (sm[2 * c] as f32, sm[2 * c + 1] as f32);
                let (m1, m2) = (sm[8 + 2 * c] as f32, sm[9 + 2 * c] as f32);
                store32_mul_add(part(y, 64 * c), lo, d * s1, -(min * m1));
                store32_mul_add(part(y, 64 * c + 32), hi, d * s2, -(min * m2));
            }
        }

        #[target_feature(enable = $feat)]
        fn deq_q5_k(b: &[u8], y: &mut [f32; 256]) {
            let d = f16_at(b, 0);
            let min = f16_at(b, Q5K_DMIN);
            let sm = k4_scales_mins(&b[Q5K_SCALES..Q5K_SCALES + 12]);
            let m4 = _mm256_set1_epi8(0x0f);
            let sixteen = _mm256_set1_epi8(16);
            let hbits = load256(b, Q5K_QH);
            for c in 0..4 {
                let bits = load256(b, Q5K_QS + 32 * c);
                let u1 = _mm256_set1_epi8((1u8 << (2 * c)) as i8);
                let u2 = _mm256_set1_epi8((2u8 << (2 * c)) as i8);
                let h1 =
                    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, u1), u1), sixteen);
                let h2 =
                    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, u2), u2), sixteen);
                let lo = _mm256_or_si256(_mm256_and_si256(bits, m4), h1);
                let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4), h2);
                let (s1, s2) = (sm[2 * c] as f32, sm[2 * c + 1] as f32);
                let (m1, m2) = (sm[8 + 2 * c] as f32, sm[9 + 2 * c] as f32);
                store32_mul_add(part(y, 64 * c), lo, d * s1, -(min * m1));
                store32_mul_add(part(y, 64 * c + 32), hi, d * s2, -(min * m2));
            }
        }

        /// The four 32-value groups (elements 0-31, 32-63, 64-95, 96-127 of a 128 half) of a
        /// Q6_K block as unsigned 6-bit bytes (0..63).
        #[target_feature(enable = $feat)]
        #[inline]
        fn q6_groups(b: &[u8], half: usize) -> [__m256i; 4] {
            let m4 = _mm256_set1_epi8(0x0f);
            let m2 = _mm256_set1_epi8(3);
            let l1 = load256(b, Q6K_QL + 64 * half);
            let l2 = load256(b, Q6K_QL + 64 * half + 32);
            let h = load256(b, Q6K_QH + 32 * half);
            let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(h, m2));
            let h1 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<2>(h), m2));
            let h2 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<4>(h), m2));
            let h3 = _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(h), m2));
            [
                _mm256_or_si256(_mm256_and_si256(l1, m4), h0),
                _mm256_or_si256(_mm256_and_si256(l2, m4), h1),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(l1), m4), h2),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(l2), m4), h3),
            ]
        }

        #[target_feature(enable = $feat)]
        fn deq_q6_k(b: &[u8], y: &mut [f32; 256]) {
            let d = f16_at(b, Q6K_D);
            let m32 = _mm256_set1_epi8(32);
            for half in 0..2 {
                let groups = q6_groups(b, half);
                for (g, q) in groups.iter().enumerate() {
                    let q = _mm256_sub_epi8(*q, m32);
                    let is = 8 * half + 2 * g;
                    let d0 = _mm256_set1_ps(d * b[Q6K_SCALES + is] as i8 as f32);
                    let d1 = _mm256_set1_ps(d * b[Q6K_SCALES + is + 1] as i8 as f32);
                    let (lo, hi) = halves(part(y, 128 * half + 32 * g));
                    store16_mul(lo, _mm256_castsi256_si128(q), d0);
                    store16_mul(hi, _mm256_extracti128_si256::<1>(q), d1);
                }
            }
        }

        // ------------------------------------------------------------ dot products

        #[target_feature(enable = $feat)]
        #[inline]
        fn dot_f32(x: &[u8], y: &[u8]) -> f32 {
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut xc = x.chunks_exact(128);
            let mut yc = y.chunks_exact(128);
            for (a, b) in (&mut xc).zip(&mut yc) {
                for (k, s) in acc.iter_mut().enumerate() {
                    let va = _mm256_castsi256_ps(load256(a, 32 * k));
                    let vb = _mm256_castsi256_ps(load256(b, 32 * k));
                    *s = _mm256_fmadd_ps(va, vb, *s);
                }
            }
            let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            hsum_f32x8(s) + scalar::vec_dot(GgmlType::F32, xc.remainder(), yc.remainder())
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn dot_f16(x: &[u8], y: &[u8]) -> f32 {
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut xc = x.chunks_exact(64);
            let mut yc = y.chunks_exact(64);
            for (a, b) in (&mut xc).zip(&mut yc) {
                for (k, s) in acc.iter_mut().enumerate() {
                    let va = _mm256_cvtph_ps(load128(a, 16 * k));
                    let vb = _mm256_cvtph_ps(load128(b, 16 * k));
                    *s = _mm256_fmadd_ps(va, vb, *s);
                }
            }
            let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            hsum_f32x8(s) + scalar::vec_dot(GgmlType::F16, xc.remainder(), yc.remainder())
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn dot_bf16(x: &[u8], y: &[u8]) -> f32 {
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut xc = x.chunks_exact(64);
            let mut yc = y.chunks_exact(64);
            for (a, b) in (&mut xc).zip(&mut yc) {
                for (k, s) in acc.iter_mut().enumerate() {
                    let wa = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(load128(a, 16 * k)));
                    let wb = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(load128(b, 16 * k)));
                    *s = _mm256_fmadd_ps(_mm256_castsi256_ps(wa), _mm256_castsi256_ps(wb), *s);
                }
            }
            let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            hsum_f32x8(s) + scalar::vec_dot(GgmlType::BF16, xc.remainder(), yc.remainder())
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn dot_q4_0(x: &[u8], y: &[u8], dy: &[f32]) -> f32 {
            let acc = sum_blocks!(x, y, dy, 18, 34, |xb, yb| {
                let qx = _mm256_sub_epi8(nibbles32(xb, Q4_0_QS), _mm256_set1_epi8(8));
                mul_sum_i8_pairs_float(qx, load256(yb, Q8_0_QS))
            });
            hsum_f32x8(acc)
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn dot_q4_1(x: &[u8], y: &[u8], dy: &[f32], sy: &[f32]) -> f32 {
            let acc = sum_blocks!(x, y, dy, 20, 36, |xb, yb| {
                let zero = _mm256_setzero_si256();
                let p = mul_sum_us8_pairs(zero, nibbles32(xb, Q4_1_QS), load256(yb, Q8_1_QS));
                _mm256_cvtepi32_ps(p)
            });
            hsum_f32x8(acc) + min_sums(x, sy, 20)
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn dot_q5_0(x: &[u8], y: &[u8], dy: &[f32]) -> f32 {
            let acc = sum_blocks!(x, y, dy, 22, 34, |xb, yb| {
                let hi = _mm256_andnot_si256(bits32(xb, Q5_0_QH), _mm256_set1_epi8(0xf0u8 as i8));
                let qx = _mm256_or_si256(nibbles32(xb, Q5_0_QS), hi);
                mul_sum_i8_pairs_float(qx, load256(yb, Q8_0_QS))
            });
            hsum_f32x8(acc)
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn dot_q5_1(x: &[u8], y: &[u8], dy: &[f32], sy: &[f32]) -> f32 {
            let acc = sum_blocks!(x, y, dy, 24, 36, |xb, yb| {
                let hi = _mm256_and_si256(bits32(xb, Q5_1_QH), _mm256_set1_epi8(0x10));
                let qx = _mm256_or_si256(nibbles32(xb, Q5_1_QS), hi);
                let p = mul_sum_us8_pairs(_mm256_setzero_si256(), qx, load256(yb, Q8_1_QS));
                _mm256_cvtepi32_ps(p)
            });
            hsum_f32x8(acc) + min_sums(x, sy, 24)
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn dot_q8_0(x: &[u8], y: &[u8], dy: &[f32]) -> f32 {
            let acc = sum_blocks!(x, y, dy, 34, 34, |xb, yb| {
                mul_sum_i8_pairs_float(load256(xb, Q8_0_QS), load256(yb, Q8_0_QS))
            });
            hsum_f32x8(acc)
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn dot_iq4_nl(x: &[u8], y: &[u8], dy: &[f32]) -> f32 {
            let acc = sum_blocks!(x, y, dy, 18, 34, |xb, yb| {
                mul_sum_i8_pairs_float(iq4_lookup(xb, Q4_0_QS), load256(yb, Q8_0_QS))
            });
            hsum_f32x8(acc)
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn dot_q2_k(x: &[u8], y: &[u8], masks: &[__m256i; 4]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut acc_m = _mm256_setzero_ps();
            let m3 = _mm256_set1_epi8(3);
            for (xb, yb) in x.chunks_exact(84).zip(y.chunks_exact(292)) {
                prefetch_ahead(xb, 84);
                let dy = f32_at(yb, 0);
                let dall = dy * f16_at(xb, Q2K_D);
                let dmin = dy * f16_at(xb, Q2K_DMIN);
                let raw = load128(xb, Q2K_SCALES);
                let sc = _mm_and_si128(raw, _mm_set1_epi8(0x0f));
                let mins = _mm_and_si128(_mm_srli_epi16::<4>(raw), _mm_set1_epi8(0x0f));
                let prod = _mm256_madd_epi16(_mm256_cvtepi8_epi16(mins), load256(yb, Q8K_BSUMS));
                acc_m = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc_m);
                let scales = widen_scales(sc);
                let mut sumi = _mm256_setzero_si256();
                for (half, sh) in scales.iter().enumerate() {
                    let bits = load256(xb, Q2K_QS + 32 * half);
                    for (j, mask) in masks.iter().enumerate() {
                        let q2 = _mm256_and_si256(
                            _mm256_srl_epi16(bits, _mm_cvtsi32_si128(2 * j as i32)),
                            m3,
                        );
                        let p = _mm256_maddubs_epi16(q2, q8k(yb, 4 * half + j));
                        let s = _mm256_shuffle_epi8(*sh, *mask);
                        sumi = madd_acc(sumi, s, p);
                    }
                }
                acc = _mm256_fmadd_ps(_mm256_set1_ps(dall), _mm256_cvtepi32_ps(sumi), acc);
            }
            hsum_f32x8(acc) - hsum_f32x8(acc_m)
        }

        /// Q3_K · Q8_K. Each value is `q3 − 4` with `q3 = low | 4·high` (0..7): the sum takes
        /// `maddubs(q3, q8)` and subtracts `maddubs(4, q8)`, which depends on the activation
        /// alone (`offsets(i, yb, k)`, [`k_offset`] with 4, computed once per activation row by
        /// a row loop), so a group costs one `maddubs` where `low − 4·(1 − high)` took two. The
        /// i16 pair sums, and so every i32 lane, are the same integers either way.
        #[target_feature(enable = $feat)]
        #[inline]
        fn dot_q3_k(
            x: &[u8],
            y: &[u8],
            masks: &[__m256i; 4],
            offsets: impl Fn(usize, &[u8], usize) -> __m256i,
        ) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let m3 = _mm256_set1_epi8(3);
            let four = _mm256_set1_epi8(4);
            for (i, (xb, yb)) in x.chunks_exact(110).zip(y.chunks_exact(292)).enumerate() {
                prefetch_ahead(xb, 110);
                let d = f16_at(xb, Q3K_D) * f32_at(yb, 0);
                let [w0, w1, w2, w3] = q3k_scale_words(&xb[Q3K_SCALES..Q3K_SCALES + 12]);
                let sc = _mm_setr_epi32(w0 as i32, w1 as i32, w2 as i32, w3 as i32);
                let scales = widen_scales(_mm_sub_epi8(sc, _mm_set1_epi8(32)));
                let hbits = load256(xb, Q3K_HMASK);
                // Bit k of each hmask byte (group k) moved to bit 2 + j, j = k mod 4, so that
                // a right shift by j puts it at bit 2; 16-bit shifts lose no bit that is used.
                let high = [_mm256_slli_epi16::<2>(hbits), _mm256_srli_epi16::<2>(hbits)];
                let mut sumi = _mm256_setzero_si256();
                for (half, sh) in scales.iter().enumerate() {
                    let bits = load256(xb, Q3K_QS + 32 * half);
                    for (j, smask) in masks.iter().enumerate() {
                        let count = _mm_cvtsi32_si128(j as i32);
                        let low = _mm256_and_si256(
                            _mm256_srl_epi16(bits, _mm_cvtsi32_si128(2 * j as i32)),
                            m3,
                        );
                        let h4 = _mm256_and_si256(_mm256_srl_epi16(high[half], count), four);
                        let k = 4 * half + j;
                        let p = _mm256_sub_epi16(
                            _mm256_maddubs_epi16(_mm256_or_si256(low, h4), q8k(yb, k)),
                            offsets(i, yb, k),
                        );
                        let s = _mm256_shuffle_epi8(*sh, *smask);
                        sumi = madd_acc(sumi, s, p);
                    }
                }
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
            }
            hsum_f32x8(acc)
        }

        /// `Σ_j bsums[j]·mins[j / 2]` of a Q8_K block as 4 i32 lanes (ggml's `hadd` of the bsum
        /// pairs then `madd` with the 8 mins); `sm` holds 8 scales then 8 mins.
        #[target_feature(enable = $feat)]
        #[inline]
        fn k4_mins_prod(yb: &[u8], sm: __m256i) -> __m128i {
            let bsums = load256(yb, Q8K_BSUMS);
            let pairs = _mm_hadd_epi16(
                _mm256_castsi256_si128(bsums),
                _mm256_extracti128_si256::<1>(bsums),
            );
            _mm_madd_epi16(_mm256_extracti128_si256::<1>(sm), pairs)
        }

        /// The eight `vpshufb` controls that put scale `j` of the 8 in a Q4_K/Q5_K `scales`
        /// vector (duplicated halves) in all 16 i16 lanes, hidden from the optimiser: with the
        /// constants in view LLVM rewrites each byte shuffle as `pshuflw`/`pshufhw` + `pshufd`,
        /// two port-5 uops where one `pshufb` with a memory operand needs one, and port 5 is
        /// what bounds this loop (`bench/README.md`).
        #[target_feature(enable = $feat)]
        #[inline]
        fn k4_scale_masks() -> [__m256i; 8] {
            let masks: [__m256i; 8] = std::array::from_fn(|j| {
                _mm256_set1_epi16((2 * j as i16) | ((2 * j as i16 + 1) << 8))
            });
            std::hint::black_box(masks)
        }

        /// The shared Q4_K/Q5_K super-block loop; `quants(xb, c)` gives the two 32-byte value
        /// vectors (sub-blocks 2c and 2c + 1) of 64-value chunk `c`.
        #[target_feature(enable = $feat)]
        #[inline]
        fn dot_k4(
            x: &[u8],
            y: &[u8],
            ts: usize,
            scales_off: usize,
            masks: &[__m256i; 8],
            quants: impl Fn(&[u8], usize) -> (__m256i, __m256i),
        ) -> f32 {
            let mut acc = _mm256_setzero_ps();
            let mut acc_m = _mm_setzero_ps();
            for (xb, yb) in x.chunks_exact(ts).zip(y.chunks_exact(292)) {
                prefetch_ahead(xb, ts);
                let dy = f32_at(yb, 0);
                let d = dy * f16_at(xb, 0);
                let dmin = -dy * f16_at(xb, 2);
                let sm = k4_scales_mins(&xb[scales_off..scales_off + 12]);
                let sm = _mm256_cvtepu8_epi16(load128(&sm, 0));
                let prod = k4_mins_prod(yb, sm);
                acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m);
                let sc = _mm256_castsi256_si128(sm);
                let scales = _mm256_set_m128i(sc, sc);
                let mut sumi = _mm256_setzero_si256();
                for c in 0..4 {
                    let (lo, hi) = quants(xb, c);
                    let pl = _mm256_maddubs_epi16(lo, q8k(yb, 2 * c));
                    let ph = _mm256_maddubs_epi16(hi, q8k(yb, 2 * c + 1));
                    sumi = madd_acc(sumi, _mm256_shuffle_epi8(scales, masks[2 * c]), pl);
                    sumi = madd_acc(sumi, _mm256_shuffle_epi8(scales, masks[2 * c + 1]), ph);
                }
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
            }
            hsum_f32x8(acc) + hsum_f32x4(acc_m)
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn q4k_quants(xb: &[u8], c: usize) -> (__m256i, __m256i) {
            let m4 = _mm256_set1_epi8(0x0f);
            let bits = load256(xb, Q4K_QS + 32 * c);
            (
                _mm256_and_si256(bits, m4),
                _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4),
            )
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn q5k_quants(xb: &[u8], c: usize) -> (__m256i, __m256i) {
            let m4 = _mm256_set1_epi8(0x0f);
            let sixteen = _mm256_set1_epi8(16);
            let hbits = load256(xb, Q5K_QH);
            let bits = load256(xb, Q5K_QS + 32 * c);
            let u1 = _mm256_set1_epi8((1u8 << (2 * c)) as i8);
            let u2 = _mm256_set1_epi8((2u8 << (2 * c)) as i8);
            let h1 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, u1), u1), sixteen);
            let h2 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, u2), u2), sixteen);
            (
                _mm256_or_si256(_mm256_and_si256(bits, m4), h1),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4), h2),
            )
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn dot_q4_k(x: &[u8], y: &[u8]) -> f32 {
            dot_k4(x, y, 144, Q4K_SCALES, &k4_scale_masks(), |xb, c| q4k_quants(xb, c))
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn dot_q5_k(x: &[u8], y: &[u8]) -> f32 {
            dot_k4(x, y, 176, Q5K_SCALES, &k4_scale_masks(), |xb, c| q5k_quants(xb, c))
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn dot_q6_k(
            x: &[u8],
            y: &[u8],
            masks: &[__m256i; 4],
            offsets: impl Fn(usize, &[u8], usize) -> __m256i,
        ) -> f32 {
            let mut acc = _mm256_setzero_ps();
            for (i, (xb, yb)) in x.chunks_exact(210).zip(y.chunks_exact(292)).enumerate() {
                prefetch_ahead(xb, 210);
                let d = f32_at(yb, 0) * f16_at(xb, Q6K_D);
                let scales = widen_scales(load128(xb, Q6K_SCALES));
                let mut sumi = _mm256_setzero_si256();
                for (half, sh) in scales.iter().enumerate() {
                    let groups = q6_groups(xb, half);
                    for (g, (q6, mask)) in groups.iter().zip(masks).enumerate() {
                        let k = 4 * half + g;
                        // maddubs needs an unsigned operand: use q6 (0..63) and subtract 32·q8.
                        let p = _mm256_sub_epi16(
                            _mm256_maddubs_epi16(*q6, q8k(yb, k)),
                            offsets(i, yb, k),
                        );
                        let s = _mm256_shuffle_epi8(*sh, *mask);
                        sumi = madd_acc(sumi, s, p);
                    }
                }
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
            }
            hsum_f32x8(acc)
        }

        /// `c·q8` summed in pairs (`maddubs(c, q8)`) for each 32-value group `k` of Q8_K
        /// block `yb`: the term of a Q6_K (`c` = 32) or Q3_K (`c` = 4) product that removes
        /// the weights' offset.
        #[target_feature(enable = $feat)]
        #[inline]
        fn k_offset(c: i8, yb: &[u8], k: usize) -> __m256i {
            _mm256_maddubs_epi16(_mm256_set1_epi8(c), q8k(yb, k))
        }

        /// [`k_offset`] of every group of the activation row `y`, eight per block: it depends
        /// on the activation alone, so a row loop computes it once, not once per weight row.
        #[target_feature(enable = $feat)]
        fn k_offsets(c: i8, y: &[u8]) -> Vec<[__m256i; 8]> {
            y.chunks_exact(292)
                .map(|yb| std::array::from_fn(|k| k_offset(c, yb, k)))
                .collect()
        }

        #[target_feature(enable = $feat)]
        #[inline]
        fn dot_iq4_xs(x: &[u8], y: &[u8]) -> f32 {
            let mut acc = _mm256_setzero_ps();
            for (xb, yb) in x.chunks_exact(136).zip(y.chunks_exact(292)) {
                prefetch_ahead(xb, 136);
                let mut sumi = _mm256_setzero_si256();
                for ib in 0..8 {
                    let q4 = iq4_lookup(xb, IQ4XS_QS + 16 * ib);
                    let p16 = mul_add_epi8(q4, q8k(yb, ib));
                    let ls = _mm256_set1_epi16(iq4xs_scale(xb, ib) as i16);
                    sumi = madd_acc(sumi, ls, p16);
                }
                let d = _mm256_set1_ps(f16_at(xb, 0) * f32_at(yb, 0));
                acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
            }
            hsum_f32x8(acc)
        }
    };
}

x86_kernels!("avx2,fma,f16c");

/// The 32 bits of the u32 at `off` as 32 bytes, 0xFF where the bit is set.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn bits32(b: &[u8], off: usize) -> __m256i {
    let x = u32_at(b, off) as i32;
    let shuf = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x), shuf);
    let bit_mask = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
    _mm256_cmpeq_epi8(_mm256_or_si256(bytes, bit_mask), _mm256_set1_epi64x(-1))
}

/// u8 × i8 products summed four to an i32 lane, added to `acc`: `maddubs` to i16 pairs, then
/// `madd` with ones (ggml's non-VNNI `mul_sum_us8_pairs_float`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn mul_sum_us8_pairs(acc: __m256i, ax: __m256i, sy: __m256i) -> __m256i {
    let dot = _mm256_maddubs_epi16(ax, sy);
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_set1_epi16(1), dot))
}

/// i16 × i16 products summed two to an i32 lane (`madd`), added to `acc`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn madd_acc(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
}
