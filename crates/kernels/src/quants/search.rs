//! ggml's scale-search helpers (`ggml-quants.c`, "Helper functions" of the 2-6 bit section):
//! `make_qx_quants`, `make_q3_quants`, `make_qkx2_quants`, `make_qkx3_quants` and
//! `make_qp_quants`, ported literally.
//!
//! Every K-quant and every importance-weighted legacy quantizer picks its scales through these
//! searches, so their floating-point results decide the output bytes. They are therefore
//! written as plain f32 arithmetic in C's evaluation order (`w*x*l` is `(w*x)*l`, sums run from
//! index 0 upwards, no fused multiply-add: ggml-quants.c is built without FMA), with the same
//! integer truncations (`uint8_t`/`int8_t` stores) as the C code. Index loops mirror the C loops
//! one for one so the port can be checked line by line against ggml.
//!
//! The functions take the element count `n` like ggml does; every slice must hold at least `n`
//! elements (callers inside this crate always pass fixed-size blocks).

#![allow(clippy::needless_range_loop)]

use crate::fp::nearest_int;

/// Below this magnitude a group counts as all zeros (`GROUP_MAX_EPS` in ggml-quants.c).
pub const GROUP_MAX_EPS: f32 = 1e-15;

/// The weight `make_qx_quants` gives value `x` when no importance weights are passed.
#[inline]
fn qx_weight(rmse_type: i32, x: f32) -> f32 {
    match rmse_type {
        1 => x * x,
        2 => 1.0,
        3 => x.abs(),
        _ => x.abs().sqrt(),
    }
}

/// Symmetric quantization of `x[..n]` to `L ∈ [0, 2*nmax-1]` (stored with offset `nmax`),
/// returning the scale. `rmse_type` 0 rounds once; a negative value does one weighted pass and
/// returns early; otherwise 18 scale candidates around `nmax/max` are tried and the one with the
/// best weighted least-squares fit wins. `qw` replaces the built-in weights when given.
pub fn make_qx_quants(
    n: usize,
    nmax: i32,
    x: &[f32],
    l: &mut [i8],
    rmse_type: i32,
    qw: Option<&[f32]>,
) -> f32 {
    let mut rmse_type = rmse_type;
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for i in 0..n {
        let ax = x[i].abs();
        if ax > amax {
            amax = ax;
            max = x[i];
        }
    }
    if amax < GROUP_MAX_EPS {
        for i in 0..n {
            l[i] = 0;
        }
        return 0.0;
    }
    let mut iscale = -(nmax as f32) / max;
    if rmse_type == 0 {
        for i in 0..n {
            let li = nearest_int(iscale * x[i]);
            l[i] = (nmax + li.clamp(-nmax, nmax - 1)) as i8;
        }
        return 1.0 / iscale;
    }
    let mut return_early = false;
    if rmse_type < 0 {
        rmse_type = -rmse_type;
        return_early = true;
    }
    let weight = |i: usize| match qw {
        Some(w) => w[i],
        None => qx_weight(rmse_type, x[i]),
    };
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let li = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l[i] = (li + nmax) as i8;
        let w = weight(i);
        let lf = li as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    if return_early {
        return if suml2 > 0.0 {
            0.5 * (scale + 1.0 / iscale)
        } else {
            1.0 / iscale
        };
    }
    let mut best = scale * sumlx;
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for i in 0..n {
            let li = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
            let w = weight(i);
            let lf = li as f32;
            sumlx += w * x[i] * lf;
            suml2 += w * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                let li = nearest_int(iscale * x[i]);
                l[i] = (nmax + li.clamp(-nmax, nmax - 1)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Q3_K's symmetric search (reference path only): with `do_rmse`, an x²-weighted fit refined by
/// up to five passes of coordinate descent on the individual levels; `L` gets offset `nmax`.
pub fn make_q3_quants(n: usize, nmax: i32, x: &[f32], l: &mut [i8], do_rmse: bool) -> f32 {
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for i in 0..n {
        let ax = x[i].abs();
        if ax > amax {
            amax = ax;
            max = x[i];
        }
    }
    if amax < GROUP_MAX_EPS {
        for i in 0..n {
            l[i] = 0;
        }
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    if do_rmse {
        let mut sumlx = 0.0f32;
        let mut suml2 = 0.0f32;
        for i in 0..n {
            let li = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
            l[i] = li as i8;
            let w = x[i] * x[i];
            let lf = li as f32;
            sumlx += w * x[i] * lf;
            suml2 += w * lf * lf;
        }
        for _itry in 0..5 {
            let mut n_changed = 0;
            for i in 0..n {
                let w = x[i] * x[i];
                let li = l[i] as f32;
                let mut slx = sumlx - w * x[i] * li;
                if slx > 0.0 {
                    let mut sl2 = suml2 - w * li * li;
                    let new_l = nearest_int(x[i] * sl2 / slx).clamp(-nmax, nmax - 1);
                    if new_l != l[i] as i32 {
                        let nl = new_l as f32;
                        slx += w * x[i] * nl;
                        sl2 += w * nl * nl;
                        if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                            l[i] = new_l as i8;
                            sumlx = slx;
                            suml2 = sl2;
                            n_changed += 1;
                        }
                    }
                }
            }
            if n_changed == 0 {
                break;
            }
        }
        for i in 0..n {
            l[i] = (l[i] as i32 + nmax) as i8;
        }
        return if suml2 > 0.0 { sumlx / suml2 } else { 0.0 };
    }
    for i in 0..n {
        let li = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l[i] = (li + nmax) as i8;
    }
    1.0 / iscale
}

/// The shared body of `make_qkx2_quants` / `make_qkx3_quants`; `weight(i)` supplies w[i] and
/// `strict_degenerate` selects qkx2's `max == min` test over qkx3's `max <= min` (the two only
/// differ when a NaN is present, but the port keeps them apart to stay literal).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn make_qkx_body(
    n: usize,
    nmax: i32,
    x: &[f32],
    weight: impl Fn(usize) -> f32,
    l: &mut [u8],
    the_min: &mut f32,
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
    strict_degenerate: bool,
) -> f32 {
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weight(0);
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weight(i);
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    let degenerate = if strict_degenerate {
        max == min
    } else {
        max <= min
    };
    if degenerate {
        for i in 0..n {
            l[i] = 0;
        }
        *the_min = -min;
        return 0.0;
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let li = nearest_int(iscale * (x[i] - min));
        l[i] = li.clamp(0, nmax) as u8;
        let mut diff = scale * l[i] as f32 + min - x[i];
        diff = if use_mad { diff.abs() } else { diff * diff };
        let w = weight(i);
        best_error += w * diff;
    }
    if nstep < 1 {
        *the_min = -min;
        return scale;
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let mut sum_l = 0.0f32;
        let mut sum_l2 = 0.0f32;
        let mut sum_xl = 0.0f32;
        for i in 0..n {
            let li = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = li as u8;
            let w = weight(i);
            let lf = li as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let mut diff = this_scale * laux[i] as f32 + this_min - x[i];
                diff = if use_mad { diff.abs() } else { diff * diff };
                let w = weight(i);
                cur_error += w * diff;
            }
            if cur_error < best_error {
                l[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    scale
}

/// Asymmetric (scale + min) quantization of `x[..n]` to `L ∈ [0, nmax]` with weights: the
/// rounding at `nmax/(max-min)` and then `nstep+1` candidate scales
/// `(rmin + rdelta*is + nmax)/(max-min)`, each refitted by weighted least squares, keeping the
/// lowest weighted error (absolute with `use_mad`, squared otherwise). Returns the scale and
/// stores `-min` (a non-negative offset) in `the_min`. `laux` is scratch of at least `n`.
#[allow(clippy::too_many_arguments)]
pub fn make_qkx2_quants(
    n: usize,
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    the_min: &mut f32,
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> f32 {
    make_qkx_body(
        n,
        nmax,
        x,
        |i| weights[i],
        l,
        the_min,
        laux,
        rmin,
        rdelta,
        nstep,
        use_mad,
        true,
    )
}

/// As [`make_qkx2_quants`], but the weights default to x² when `weights` is `None` and the
/// degenerate-range test is `max <= min` (ggml's `make_qkx3_quants`, used by imatrix paths).
#[allow(clippy::too_many_arguments)]
pub fn make_qkx3_quants(
    n: usize,
    nmax: i32,
    x: &[f32],
    weights: Option<&[f32]>,
    l: &mut [u8],
    the_min: &mut f32,
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> f32 {
    match weights {
        Some(w) => make_qkx_body(
            n,
            nmax,
            x,
            |i| w[i],
            l,
            the_min,
            laux,
            rmin,
            rdelta,
            nstep,
            use_mad,
            false,
        ),
        None => make_qkx_body(
            n,
            nmax,
            x,
            |i| x[i] * x[i],
            l,
            the_min,
            laux,
            rmin,
            rdelta,
            nstep,
            use_mad,
            false,
        ),
    }
}

/// Quantizes non-negative values (sub-block scales or mins) to `L ∈ [0, nmax]` with importance
/// weights: the best of nine scale candidates by weighted MSE, then up to five passes of
/// coordinate descent. Returns the scale (`sumlx/suml2`).
pub fn make_qp_quants(n: usize, nmax: i32, x: &[f32], l: &mut [u8], quant_weights: &[f32]) -> f32 {
    let mut max = 0.0f32;
    for i in 0..n {
        // C's MAX(max, x[i]) is `max > x[i] ? max : x[i]`.
        max = if max > x[i] { max } else { x[i] };
    }
    if max < GROUP_MAX_EPS {
        for i in 0..n {
            l[i] = 0;
        }
        return 0.0;
    }
    let mut iscale = nmax as f32 / max;
    for i in 0..n {
        l[i] = nearest_int(iscale * x[i]) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0.0f32;
    for i in 0..n {
        let diff = x[i] - scale * l[i] as f32;
        let w = quant_weights[i];
        best_mse += w * diff * diff;
    }
    for is in -4i32..=4 {
        if is == 0 {
            continue;
        }
        let iscale_is = (0.1 * is as f32 + nmax as f32) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0.0f32;
        for i in 0..n {
            let li = nearest_int(iscale_is * x[i]).min(nmax);
            let diff = x[i] - scale_is * li as f32;
            let w = quant_weights[i];
            mse += w * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    qp_refine(nmax, iscale, &x[..n], &mut l[..n], &quant_weights[..n])
}

/// The tail of `make_qp_quants` once the scale search has picked `iscale`: round every value
/// against it (capped at `nmax`), then up to five passes that move single levels while that
/// improves the weighted fit, as ggml does; returns the scale `Σwxl / Σwl²`. Shared with the
/// lane-parallel candidate search ([`super::lanes::qp_candidates`]).
pub(crate) fn qp_refine(
    nmax: i32,
    iscale: f32,
    x: &[f32],
    l: &mut [u8],
    quant_weights: &[f32],
) -> f32 {
    let n = x.len();
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let li = nearest_int(iscale * x[i]).min(nmax);
        l[i] = li as u8;
        let w = quant_weights[i];
        let lf = li as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    for _itry in 0..5 {
        let mut n_changed = 0;
        for i in 0..n {
            let w = quant_weights[i];
            let li = l[i] as f32;
            let mut slx = sumlx - w * x[i] * li;
            let mut sl2 = suml2 - w * li * li;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                if new_l != l[i] as i32 {
                    let nl = new_l as f32;
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new_l as u8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qx_all_zero_group_gives_zero_scale() {
        let x = [0.0f32; 16];
        let mut l = [7i8; 16];
        assert_eq!(make_qx_quants(16, 32, &x, &mut l, 1, None), 0.0);
        assert!(l.iter().all(|&v| v == 0));
    }

    #[test]
    fn qx_reconstructs_exact_grid() {
        // Values on the grid k*0.5 for k in -8..8 are reproduced exactly with nmax = 8.
        let x: Vec<f32> = (0..16).map(|k| (k as f32 - 8.0) * 0.5).collect();
        let mut l = [0i8; 16];
        let d = make_qx_quants(16, 8, &x, &mut l, 1, None);
        for i in 0..16 {
            assert_eq!((l[i] as f32 - 8.0) * d, x[i], "element {i}");
        }
    }

    #[test]
    fn qkx2_constant_row_is_all_min() {
        let x = [2.5f32; 16];
        let w = [1.0f32; 16];
        let (mut l, mut aux, mut m) = ([9u8; 16], [0u8; 16], 1.0f32);
        // min is clamped to 0, max = 2.5: not degenerate, one level spans the value.
        let s = make_qkx2_quants(16, 3, &x, &w, &mut l, &mut m, &mut aux, -0.5, 0.1, 15, true);
        assert_eq!(m, 0.0);
        for &li in &l {
            assert!((s * li as f32 - 2.5).abs() < 1e-6);
        }
        let neg = [-1.0f32; 16];
        let s = make_qkx2_quants(
            16, 3, &neg, &w, &mut l, &mut m, &mut aux, -0.5, 0.1, 15, true,
        );
        // min = -1 < max = -1 is false and max == min: degenerate.
        assert_eq!((s, m), (0.0, 1.0));
        assert!(l.iter().all(|&v| v == 0));
    }

    #[test]
    fn qp_quantizes_scales_within_range() {
        let x: Vec<f32> = (0..8).map(|i| 0.1 + i as f32 * 0.37).collect();
        let w = [1.0f32; 8];
        let mut l = [0u8; 8];
        let s = make_qp_quants(8, 63, &x, &mut l, &w);
        assert!(s > 0.0);
        for i in 0..8 {
            assert!(l[i] <= 63);
            assert!((s * l[i] as f32 - x[i]).abs() <= s, "element {i}");
        }
    }
}
