//! Elementwise primitives of Gemma 4, matching transformers in float32.
//!
//! Reductions (the RMSNorm mean square) are summed in f64 in a fixed order per row, so they are
//! both closer to exact than torch's f32 sums and independent of the thread count; rows are
//! independent, so running them in parallel never changes a bit.
//!
//! Granularity: elementwise work goes to rayon in fixed chunks of [`CHUNK`] values and row-wise
//! work in at least [`MIN_ROWS`] rows per task, so a pool of 64 threads gets a few dozen tasks
//! per call (rayon splits a range only as far as idle threads steal it) rather than one per
//! token or per value.

use rayon::prelude::*;

use crate::gemm::Isa;

/// Values per task of the elementwise operations.
pub const CHUNK: usize = 4096;

/// Fewest rows (tokens, or heads of a token) per task of the row-wise operations.
pub const MIN_ROWS: usize = 4;

/// In-place RMSNorm over every `d`-wide row of `x`: `x * (mean(x^2) + eps)^-0.5 * w`, with a
/// plain `w` (Gemma 4 stores weights centred on 1; no `1 + w`). `w = None` is the weightless norm
/// used for V and the router input.
pub fn rms_norm_rows(x: &mut [f32], d: usize, w: Option<&[f32]>, eps: f32) {
    if d == 0 {
        return;
    }
    x.par_chunks_mut(d)
        .with_min_len(MIN_ROWS)
        .for_each(|row| rms_norm_row(row, w, eps));
}

/// RMSNorm of one row (see [`rms_norm_rows`]).
pub fn rms_norm_row(row: &mut [f32], w: Option<&[f32]>, eps: f32) {
    let ss: f64 = row.iter().map(|&v| v as f64 * v as f64).sum();
    let ms = (ss / row.len() as f64) as f32;
    // torch.pow(ms + eps, -0.5) in f32: one f32 add, then a correctly rounded power.
    let inv = ((ms + eps) as f64).powf(-0.5) as f32;
    match w {
        Some(w) => {
            for (v, &g) in row.iter_mut().zip(w) {
                *v = (*v * inv) * g;
            }
        }
        None => {
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}

/// `gelu_pytorch_tanh`: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, evaluated in f64 and
/// rounded once.
pub fn gelu_tanh(x: f32) -> f32 {
    let x = x as f64;
    let c = (2.0 / std::f64::consts::PI).sqrt();
    (0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())) as f32
}

/// Final logit softcap `tanh(x / cap) * cap` in f32 steps, as transformers does; the tanh is
/// [`tanh_f32`]. Every path gives the same bits (the SIMD builds only let the compiler
/// vectorise the same IEEE operations).
pub fn softcap(x: &mut [f32], cap: f32) {
    let isa = Isa::active();
    x.par_chunks_mut(CHUNK).for_each(|c| match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::active` returns only an ISA this CPU runs.
        Isa::Avx512 => unsafe { softcap_avx512(c, cap) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { softcap_avx2(c, cap) },
        _ => softcap_chunk(c, cap),
    });
}

#[inline(always)]
fn softcap_chunk(c: &mut [f32], cap: f32) {
    for v in c {
        *v = tanh_f32(*v / cap) * cap;
    }
}

/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softcap_avx512(c: &mut [f32], cap: f32) {
    softcap_chunk(c, cap)
}

/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softcap_avx2(c: &mut [f32], cap: f32) {
    softcap_chunk(c, cap)
}

/// `tanh(q)` rounded to f32, within one ulp of `(q as f64).tanh() as f32` (the tests sweep every
/// f32 that matters) and branch-free so that it vectorises: `tanh|q| = e / (e + 2)` with
/// `e = expm1(2|q|)`, all in f64 from `2^n` and a degree-11 Taylor polynomial of `expm1(r)` on
/// `|r| <= ln2/2` (relative error about 2e-14, far below an f32 ulp). `|q|` is clamped to 10,
/// where the f32 result is already exactly 1; NaN stays NaN. Plain multiplies and adds, no
/// `mul_add`, so the bits are the same with or without FMA.
#[inline(always)]
pub fn tanh_f32(q: f32) -> f32 {
    // 1.5 * 2^52: adding it rounds a small f64 to an integer held in the low mantissa bits.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    // ln 2 split so that n * LN2_HI is exact for the n used here.
    // (fdlibm's split: the high part has 32 significant bits.)
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    let a = (q as f64).abs();
    let a = if a > 10.0 { 10.0 } else { a };
    let y = a + a;
    let nr = y * std::f64::consts::LOG2_E + ROUND;
    let n = nr - ROUND;
    let r = (y - n * LN2_HI) - n * LN2_LO;
    // expm1(r) = sum of r^i / i! for i in 1..=11, in Horner form (written out: a loop here
    // keeps the compiler from vectorising the caller).
    const C: [f64; 11] = {
        let mut c = [1.0; 11];
        let mut i = 1;
        while i < 11 {
            c[i] = c[i - 1] / (i + 1) as f64;
            i += 1;
        }
        c
    };
    let p = C[9] + r * C[10];
    let p = C[8] + r * p;
    let p = C[7] + r * p;
    let p = C[6] + r * p;
    let p = C[5] + r * p;
    let p = C[4] + r * p;
    let p = C[3] + r * p;
    let p = C[2] + r * p;
    let p = C[1] + r * p;
    let p = C[0] + r * p;
    let p = r * p;
    // 2^n from n's integer bits; n is in 0..=29.
    let n_int = nr.to_bits().wrapping_sub(ROUND.to_bits());
    let two_n = f64::from_bits(n_int.wrapping_add(1023) << 52);
    let e = two_n * p + (two_n - 1.0);
    let t = e / (e + 2.0);
    (t.copysign(q as f64)) as f32
}

/// Multiplies every element by `s` (f32), in parallel chunks.
pub fn scale(x: &mut [f32], s: f32) {
    x.par_chunks_mut(CHUNK)
        .for_each(|c| c.iter_mut().for_each(|v| *v *= s));
}

/// `a += b` elementwise.
pub fn add_assign(a: &mut [f32], b: &[f32]) {
    a.par_chunks_mut(CHUNK)
        .zip(b.par_chunks(CHUNK))
        .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(x, y)| *x += *y));
}

/// GeGLU core on a fused `[T, 2I]`-free layout: `gelu(gate) * up`, written into `gate`.
pub fn geglu(gate: &mut [f32], up: &[f32]) {
    gate.par_chunks_mut(CHUNK)
        .zip(up.par_chunks(CHUNK))
        .for_each(|(g, u)| {
            g.iter_mut()
                .zip(u)
                .for_each(|(a, b)| *a = gelu_tanh(*a) * *b)
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_unit_rows_and_plain_weight() {
        let mut x = vec![3.0f32, 4.0];
        rms_norm_rows(&mut x, 2, Some(&[1.0, 2.0]), 0.0);
        // rms of (3,4) = sqrt(12.5)
        let r = 12.5f32.sqrt();
        assert!((x[0] - 3.0 / r).abs() < 1e-6 && (x[1] - 8.0 / r).abs() < 1e-6);
        // an all-zero row with eps stays zero, no NaN
        let mut z = vec![0.0f32; 2];
        rms_norm_rows(&mut z, 2, None, 1e-6);
        assert_eq!(z, vec![0.0, 0.0]);
    }

    #[test]
    fn gelu_tanh_known_values() {
        assert_eq!(gelu_tanh(0.0), 0.0);
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-6);
        assert!((gelu_tanh(-3.0) - -0.003_637_4).abs() < 1e-6);
    }

    /// Every f32 from 2^-30 to past the clamp (all 1.6 billion above 2^-30 would take
    /// minutes: every 7th bit pattern, plus both signs, zeros, the clamp's neighbours and NaN).
    #[test]
    fn tanh_f32_is_within_one_ulp_of_f64_tanh() {
        let (lo, hi) = ((2f32).powi(-30).to_bits(), 12f32.to_bits());
        let mut checked = 0u64;
        let mut off = [0u64; 2];
        let mut max_ulp = 0i64;
        let mut step = |q: f32| {
            let want = (q as f64).tanh() as f32;
            let got = tanh_f32(q);
            let ulp = (got.to_bits() as i64 - want.to_bits() as i64).abs();
            assert!(ulp <= 1, "tanh({q:e}): {got:e} vs {want:e}");
            max_ulp = max_ulp.max(ulp);
            off[ulp as usize] += 1;
            checked += 1;
        };
        for b in (lo..=hi).step_by(7) {
            step(f32::from_bits(b));
            step(-f32::from_bits(b));
        }
        for q in [
            0.0,
            -0.0,
            1e-45,
            9.999999,
            10.0,
            10.000001,
            1e30,
            f32::MAX,
            f32::INFINITY,
        ] {
            step(q);
            step(-q);
        }
        assert!(tanh_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(-0.0).to_bits(), (-0.0f32).to_bits());
        println!(
            "tanh_f32: {checked} values, {} exact, {} one ulp off (max {max_ulp} ulp)",
            off[0], off[1]
        );
    }

    #[test]
    fn softcap_is_the_same_on_every_path() {
        let x: Vec<f32> = (0..20_000)
            .map(|i| (i as f32 - 10_000.0) * 0.0173)
            .collect();
        let mut want = x.clone();
        softcap_chunk(&mut want, 30.0);
        let mut got = x.clone();
        softcap(&mut got, 30.0);
        assert!(got
            .iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        #[cfg(target_arch = "x86_64")]
        for isa in Isa::available() {
            let mut v = x.clone();
            match isa {
                // SAFETY: `available` lists only ISAs this CPU runs.
                Isa::Avx512 => unsafe { softcap_avx512(&mut v, 30.0) },
                // SAFETY: as above.
                Isa::Avx2 => unsafe { softcap_avx2(&mut v, 30.0) },
                Isa::Portable => softcap_chunk(&mut v, 30.0),
            }
            assert!(
                v.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{isa:?}"
            );
        }
        println!(
            "softcap: {} values bit-equal on {:?}",
            x.len(),
            Isa::available()
        );
    }

    #[test]
    fn softcap_bounds_and_preserves_small_values() {
        let mut x = vec![1000.0f32, -1000.0, 0.3];
        softcap(&mut x, 30.0);
        assert!(x[0] <= 30.0 && x[0] > 29.99 && x[1] >= -30.0);
        assert!((x[2] - 0.3).abs() < 1e-4);
    }
}
