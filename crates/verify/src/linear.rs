//! The GEMMs of the forward pass.
//!
//! `y = x @ W.T` with `x` `[T, in]` f32 and `W` `[out, in]` in any stored type. W is cut into
//! fixed panels of [`PANEL`] rows; each panel is widened to f32 into a per-task buffer and
//! multiplied single-threaded by `matrixmultiply`, and rayon runs panels in parallel. Because
//! the cut is fixed and each output element's sum over `in` happens inside one single-threaded
//! GEMM call, results are bit-identical for any thread count. Only one panel per worker is ever
//! widened, so bf16 weights stay bf16 in memory.
//!
//! The backend is `matrixmultiply`, without its own threading (rayon over panels does that,
//! deterministically): single-threaded on these panel shapes it is the faster of the two
//! candidates (`bench/README.md`, "Forward pass", has the figures).

use std::ops::Range;

use rayon::prelude::*;

use crate::error::{Result, VerifyError};
use crate::weights::RowSource;

/// Weight rows widened and multiplied per task. Fixed (never derived from the thread count) so
/// that results do not depend on it.
pub const PANEL: usize = 64;

/// `C[m, n] = A[m, k] · B[k, n]` in f32 with explicit element strides (row, column) for each
/// operand; single-threaded, deterministic. Panics if a stride pattern reaches outside a slice
/// (a programming error, never user input).
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    (a_rs, a_cs): (usize, usize),
    b: &[f32],
    (b_rs, b_cs): (usize, usize),
    c: &mut [f32],
    (c_rs, c_cs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                c[i * c_rs + j * c_cs] = 0.0;
            }
        }
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(
        last(m, k, a_rs, a_cs) < a.len(),
        "gemm_f32: A out of bounds"
    );
    assert!(
        last(k, n, b_rs, b_cs) < b.len(),
        "gemm_f32: B out of bounds"
    );
    assert!(
        last(m, n, c_rs, c_cs) < c.len(),
        "gemm_f32: C out of bounds"
    );
    // SAFETY: the asserts above prove every element index the strides can form lies inside its
    // slice; `c` is borrowed mutably, so it aliases neither `a` nor `b`. With beta = 0, C is
    // written without being read.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            a_rs as isize,
            a_cs as isize,
            b.as_ptr(),
            b_rs as isize,
            b_cs as isize,
            0.0,
            c.as_mut_ptr(),
            c_rs as isize,
            c_cs as isize,
        );
    }
}

/// `y[T, rows.len()] = x[T, in] @ W[rows, :].T`, parallel over fixed weight panels.
pub fn linear_rows(x: &[f32], t: usize, w: &dyn RowSource, rows: Range<usize>) -> Result<Vec<f32>> {
    let k = w.cols();
    if x.len() != t * k {
        return Err(VerifyError::shape(
            w.name(),
            format!("input has {} values, expected {t} x {k}", x.len()),
        ));
    }
    if rows.end > w.rows() || rows.start > rows.end {
        return Err(VerifyError::shape(
            w.name(),
            format!("rows {rows:?} outside {} rows", w.rows()),
        ));
    }
    let n_out = rows.len();
    if t == 0 || n_out == 0 {
        return Ok(Vec::new());
    }
    if let Some(y) = w.linear_rows(x, t, rows.clone()) {
        return y;
    }
    // Panels fill a transposed [out, T] buffer: each panel owns a contiguous chunk.
    let mut yt = vec![0f32; n_out * t];
    yt.par_chunks_mut(PANEL * t).enumerate().try_for_each_init(
        Vec::new,
        |buf: &mut Vec<f32>, (p, chunk)| -> Result<()> {
            let n = chunk.len() / t;
            buf.resize(n * k, 0.0);
            w.rows_to_f32(rows.start + p * PANEL, n, buf)?;
            gemm_f32(n, t, k, buf, (k, 1), x, (1, k), chunk, (t, 1));
            Ok(())
        },
    )?;
    Ok(transpose(&yt, n_out, t))
}

/// `y[T, out] = x[T, in] @ W.T` over all rows of W.
pub fn linear(x: &[f32], t: usize, w: &dyn RowSource) -> Result<Vec<f32>> {
    linear_rows(x, t, w, 0..w.rows())
}

/// Transposes a row-major `[rows, cols]` matrix, parallel over output rows.
pub fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * cols];
    if rows == 0 || cols == 0 {
        return out;
    }
    out.par_chunks_mut(rows).enumerate().for_each(|(j, dst)| {
        for (i, d) in dst.iter_mut().enumerate() {
            *d = a[i * cols + j];
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::{DenseMatrix, ElemType};
    use std::borrow::Cow;

    fn naive(x: &[f32], t: usize, w: &[f32], out: usize, k: usize) -> Vec<f64> {
        let mut y = vec![0f64; t * out];
        for i in 0..t {
            for j in 0..out {
                y[i * out + j] = (0..k)
                    .map(|c| x[i * k + c] as f64 * w[j * k + c] as f64)
                    .sum();
            }
        }
        y
    }

    fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        testkit::XorShift32::new(seed.wrapping_mul(2654435761).wrapping_add(1))
            .take(n)
            .map(|s| (s as f32 / u32::MAX as f32) - 0.5)
            .collect()
    }

    #[test]
    fn linear_matches_f64_reference_across_panel_edges() {
        for &(t, out, k) in &[(1, 1, 1), (3, 65, 7), (17, 130, 33), (5, 64, 128)] {
            let x = pseudo(t * k, 1);
            let w = pseudo(out * k, 2);
            let m = DenseMatrix::from_f32("w", out, k, &w).unwrap();
            let y = linear(&x, t, &m).unwrap();
            let r = naive(&x, t, &w, out, k);
            for (a, b) in y.iter().zip(&r) {
                assert!((*a as f64 - b).abs() < 1e-5, "{t}x{out}x{k}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn bf16_rows_widen_exactly_and_row_ranges_select() {
        let vals = [1.0f32, -2.5, 0.15625, 3.0, 0.5, -1.0];
        let bytes: Vec<u8> = vals
            .iter()
            .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
            .collect();
        let m = DenseMatrix::new("w", ElemType::BF16, 3, 2, Cow::Owned(bytes)).unwrap();
        let y = linear_rows(&[1.0, 10.0], 1, &m, 1..3).unwrap();
        assert_eq!(y, vec![0.15625 + 30.0, 0.5 - 10.0]);
    }

    #[test]
    fn thread_count_does_not_change_bits() {
        let (t, out, k) = (9, 300, 77);
        let x = pseudo(t * k, 3);
        let w = pseudo(out * k, 4);
        let m = DenseMatrix::from_f32("w", out, k, &w).unwrap();
        let run = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
                .install(|| linear(&x, t, &m).unwrap())
        };
        let a = run(1);
        let b = run(2);
        assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
    }

    #[test]
    fn non_finite_weight_is_named() {
        let m = DenseMatrix::from_f32("layers.0.w", 1, 2, &[1.0, f32::NAN]).unwrap();
        let err = linear(&[1.0, 1.0], 1, &m).unwrap_err().to_string();
        assert!(err.contains("layers.0.w"), "{err}");
    }
}
