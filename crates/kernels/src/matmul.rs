//! Quantized matrix × vector and matrix × matrix over rows of a weight tensor stored in a ggml
//! type, as ggml-cpu's `mul_mat` computes them: the activations are quantized once to the
//! weight type's `vec_dot_type`, then every output is one [`crate::dot`] product. Rows run in
//! parallel (rayon); each output value comes from exactly one dot product computed the same way
//! whatever the thread count, so results are identical for any pool size.

use rayon::prelude::*;

use crate::dot::{check_row, quantize_activation, vec_dot_type};
use crate::simd::{self, Path};
use crate::{GgmlType, KernelError};

/// `y[r] = Σ_c W[r, c] · x[c]` for the `rows × cols` weight matrix `weights` (row-major, each row
/// `ty.row_bytes(cols)` bytes), on the active path.
pub fn matvec(
    ty: GgmlType,
    weights: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    y: &mut [f32],
) -> Result<(), KernelError> {
    matvec_with(simd::active_path()?, ty, weights, rows, cols, x, y)
}

/// [`matvec`] on a chosen path.
pub fn matvec_with(
    path: Path,
    ty: GgmlType,
    weights: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    y: &mut [f32],
) -> Result<(), KernelError> {
    matmul_with(path, ty, weights, rows, cols, x, 1, y)
}

/// `y[i, r] = Σ_c W[r, c] · x[i, c]` for `t` activation rows `x` (`[t, cols]`, row-major) giving
/// `y` as `[t, rows]`, on the active path.
pub fn matmul(
    ty: GgmlType,
    weights: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    t: usize,
    y: &mut [f32],
) -> Result<(), KernelError> {
    matmul_with(simd::active_path()?, ty, weights, rows, cols, x, t, y)
}

/// [`matmul`] on a chosen path.
#[allow(clippy::too_many_arguments)]
pub fn matmul_with(
    path: Path,
    ty: GgmlType,
    weights: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    t: usize,
    y: &mut [f32],
) -> Result<(), KernelError> {
    simd::ensure_supported(path)?;
    let row_bytes = ty.row_bytes(cols).ok_or(KernelError::RowLength {
        ty,
        n: cols,
        block: ty.block_size(),
    })?;
    let overflow = |what| KernelError::Overflow { ty, what };
    let w_len = rows
        .checked_mul(row_bytes)
        .ok_or(overflow("the weight matrix"))?;
    expect_len(ty, w_len, weights.len(), "weight bytes")?;
    let x_len = t.checked_mul(cols).ok_or(overflow("the activations"))?;
    expect_len(ty, x_len, x.len(), "activation values")?;
    let y_len = t.checked_mul(rows).ok_or(overflow("the output"))?;
    expect_len(ty, y_len, y.len(), "output values")?;
    if rows == 0 || t == 0 {
        return Ok(());
    }

    let at = vec_dot_type(ty);
    let act_bytes = at.row_bytes(cols).ok_or(KernelError::RowLength {
        ty: at,
        n: cols,
        block: at.block_size(),
    })?;
    let mut acts = Vec::with_capacity(act_bytes.saturating_mul(t));
    let mut buf = Vec::with_capacity(act_bytes);
    for xi in x.chunks_exact(cols.max(1)).take(t) {
        quantize_activation(ty, xi, &mut buf)?;
        check_row(at, &buf, cols)?;
        acts.extend_from_slice(&buf);
    }

    // Row-major over weight rows: each task reads one weight row once for all t activations.
    let mut by_row = vec![0f32; y_len];
    // At least 8 rows per rayon task: a row is microseconds of work, a task split is not free.
    by_row
        .par_chunks_mut(t)
        .zip(weights.par_chunks(row_bytes.max(1)))
        .with_min_len(8)
        .for_each(|(out, w)| {
            for (o, a) in out.iter_mut().zip(acts.chunks_exact(act_bytes.max(1))) {
                *o = simd::vec_dot_checked(path, ty, w, a);
            }
        });
    for (r, vals) in by_row.chunks_exact(t).enumerate() {
        for (i, v) in vals.iter().enumerate() {
            y[i * rows + r] = *v;
        }
    }
    Ok(())
}

/// Fails unless a buffer has the length the shapes call for.
fn expect_len(
    ty: GgmlType,
    expected: usize,
    got: usize,
    unit: &'static str,
) -> Result<(), KernelError> {
    if expected == got {
        Ok(())
    } else {
        Err(KernelError::OutputLength {
            ty,
            expected,
            got,
            unit,
        })
    }
}
