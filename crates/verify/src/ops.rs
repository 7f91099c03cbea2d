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

/// Final logit softcap `tanh(x / cap) * cap` in f32 steps, as transformers does.
pub fn softcap(x: &mut [f32], cap: f32) {
    x.par_chunks_mut(CHUNK).for_each(|c| {
        for v in c {
            let q = *v / cap;
            *v = ((q as f64).tanh() as f32) * cap;
        }
    });
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

    #[test]
    fn softcap_bounds_and_preserves_small_values() {
        let mut x = vec![1000.0f32, -1000.0, 0.3];
        softcap(&mut x, 30.0);
        assert!(x[0] <= 30.0 && x[0] > 29.99 && x[1] >= -30.0);
        assert!((x[2] - 0.3).abs() < 1e-4);
    }
}
