//! PyTorch's float32 `softplus` as its CPU kernel computes it, bit for bit: `x` above the
//! threshold 20, else `log1p(exp(x))`, through SLEEF's `expf_u10` and `log1pf_u10` (FMA
//! variants) on the vectorized part of the tensor and the C library on the tail. llama.cpp's
//! converter applies it to the audio attention's `per_dim_scale`; a correctly rounded softplus
//! differs from it by one ulp on some values, so the file would not match byte for byte.

/// `fma(x, y, z)` = x·y + z with one rounding.
fn fma(x: f32, y: f32, z: f32) -> f32 {
    x.mul_add(y, z)
}

/// SLEEF's `vfmapn`: x·y − z, one rounding.
fn fmapn(x: f32, y: f32, z: f32) -> f32 {
    x.mul_add(y, -z)
}

/// SLEEF's `vfmanp`: z − x·y, one rounding.
fn fmanp(x: f32, y: f32, z: f32) -> f32 {
    (-x).mul_add(y, z)
}

/// 2^q for q in the normal exponent range (SLEEF's `vpow2i`).
fn pow2i(q: i32) -> f32 {
    f32::from_bits((q.wrapping_add(0x7f) as u32) << 23)
}

/// d · 2^q in two steps, so that q may exceed the exponent range of one factor (`vldexp2`).
fn ldexp2(d: f32, q: i32) -> f32 {
    d * pow2i(q >> 1) * pow2i(q - (q >> 1))
}

/// d · 2^q by adding q to the exponent bits (`vldexp3`).
fn ldexp3(d: f32, q: i32) -> f32 {
    f32::from_bits((d.to_bits() as i32).wrapping_add(q.wrapping_shl(23)) as u32)
}

/// The unbiased exponent field (`vilogb2k`).
fn ilogb2k(d: f32) -> i32 {
    ((d.to_bits() >> 23) & 0xff) as i32 - 0x7f
}

/// SLEEF `xexpf` (u10). Its constants are written as SLEEF spells them (more digits than an f32
/// holds; they round to the f32 values it uses).
#[allow(clippy::excessive_precision)]
fn expf(d: f32) -> f32 {
    const R_LN2: f32 = std::f32::consts::LOG2_E;
    const L2U: f32 = 0.693_145_751_953_125_f32;
    const L2L: f32 = 1.428_606_765_330_187_045e-6_f32;
    // Round to nearest even, as cvtps2dq does in the default rounding mode.
    let q = (d * R_LN2).round_ties_even() as i32;
    let qf = q as f32;
    let mut s = fma(qf, -L2U, d);
    s = fma(qf, -L2L, s);
    let mut u = 0.000_198_527_617_612_853_646_278_381_f32;
    u = fma(u, s, 0.001_393_043_552_525_341_510_772_71);
    u = fma(u, s, 0.008_333_360_776_305_198_669_433_59);
    u = fma(u, s, 0.041_666_485_369_205_474_853_515_6);
    u = fma(u, s, 0.166_666_671_633_720_397_949_219);
    u = fma(u, s, 0.5);
    u = 1.0 + fma(s * s, u, s);
    u = ldexp2(u, q);
    if d < -104.0 {
        u = 0.0;
    }
    if d > 100.0 {
        u = f32::INFINITY;
    }
    u
}

/// SLEEF `xlog1pf` (u10), FMA variant, for the finite non-negative inputs softplus gives it.
#[allow(clippy::excessive_precision)]
fn log1pf(d: f32) -> f32 {
    // Double-float pairs (hi, lo).
    let dp1 = d + 1.0;
    let e = ilogb2k(dp1 * (1.0 / 0.75));
    let t = ldexp3(1.0, -e);
    let m = fma(d, t, t - 1.0);
    // s = (ln2 hi, ln2 lo) · e
    let (l_hi, l_lo) = (
        0.693_147_182_464_599_609_38_f32,
        -1.904_654_323_148_236_017e-9_f32,
    );
    let ef = e as f32;
    let s_hi = l_hi * ef;
    let s_lo = fma(l_lo, ef, fmapn(l_hi, ef, s_hi));
    // x = (m, 0) / (2 + m) in double-float.
    let den_hi = 2.0 + m;
    let den_lo = (2.0 - den_hi) + m;
    let rt = 1.0 / den_hi;
    let x_hi = m * rt;
    let u = fmapn(rt, m, x_hi);
    let v = fmanp(den_lo, rt, fmanp(den_hi, rt, 1.0));
    let x_lo = fma(x_hi, v, fma(0.0, rt, u));
    let x2 = x_hi * x_hi;
    let mut p = 0.302_729_487_4_f32;
    p = fma(p, x2, 0.399_610_817_4);
    p = fma(p, x2, 0.666_669_488_0);
    // s += 2·x (pair + pair)
    let (a_hi, a_lo) = (x_hi * 2.0, x_lo * 2.0);
    let s2_hi = s_hi + a_hi;
    let s2_lo = (((s_hi - s2_hi) + a_hi) + s_lo) + a_lo;
    // s += x2·x·p (pair + single)
    let y = x2 * x_hi * p;
    let s3_hi = s2_hi + y;
    let s3_lo = ((s2_hi - s3_hi) + y) + s2_lo;
    let mut r = s3_hi + s3_lo;
    if d > 1e38 {
        r = f32::INFINITY;
    }
    r
}

/// PyTorch's AVX2 kernels process a contiguous tensor in steps of two 8-wide vectors and hand
/// the remainder to the scalar kernel.
const VECTOR_STEP: usize = 16;

/// `torch.nn.functional.softplus` on a contiguous float32 CPU tensor (beta 1, threshold 20), as
/// PyTorch's AVX2 kernel computes it (the path the fixtures' llama.cpp files came from): whole
/// steps of 16 values through SLEEF, the tail through the C library's `expf` and `log1pf`.
pub fn softplus_tensor(values: &mut [f32]) {
    let vectorized = values.len() - values.len() % VECTOR_STEP;
    let (head, tail) = values.split_at_mut(vectorized);
    for v in head {
        *v = if *v > 20.0 { *v } else { log1pf(expf(*v)) };
    }
    for v in tail {
        // Rust's f32 `exp` and `ln_1p` are the platform C library's `expf` and `log1pf`.
        *v = if *v > 20.0 { *v } else { v.exp().ln_1p() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_to_the_exact_function() {
        let mut xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.005).collect();
        let exact: Vec<f64> = xs.iter().map(|&x| (x as f64).exp().ln_1p()).collect();
        softplus_tensor(&mut xs);
        for (got, want) in xs.iter().zip(&exact) {
            assert!(
                ((*got as f64 - want) / want).abs() < 2.5e-7,
                "{got} vs {want}"
            );
        }
        let mut big = [25.0f32; 17];
        softplus_tensor(&mut big);
        assert_eq!(big, [25.0; 17]);
        println!(
            "softplus: {} values within 2.5e-7 of the exact function",
            exact.len()
        );
    }
}
