//! Quantized matrix × vector and matrix × matrix over rows of a weight tensor stored in a ggml
//! type, as ggml-cpu's `mul_mat` computes them: the activations are quantized once to the
//! weight type's `vec_dot_type`, then every output is one [`crate::dot`] product. The rows are
//! cut into contiguous panels that rayon runs in parallel, and a panel goes to the kernels whole
//! (one dispatch, the per-type set-up done once per panel, not per row). Each output value comes
//! from exactly one dot product computed the same way whatever the panel or thread count, so
//! results are identical for any pool size.

use rayon::prelude::*;

use crate::dot::{check_row, quantize_activation, vec_dot_type};
use crate::simd::{self, Path};
use crate::tile;
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
    if row_bytes == 0 {
        y.fill(0.0);
        return Ok(());
    }
    let mut acts = Vec::with_capacity(act_bytes.saturating_mul(t));
    let mut buf = Vec::with_capacity(act_bytes);
    for xi in x.chunks_exact(cols).take(t) {
        quantize_activation(ty, xi, &mut buf)?;
        check_row(at, &buf, cols)?;
        acts.extend_from_slice(&buf);
    }

    // Prefill on a path with tiled kernels for the type packs the activations once (`tile`).
    let tiles =
        (t > 1 && tile::covers(path, ty)).then(|| tile::Acts::new(ty, &acts, act_bytes, t, cols));
    let panel = match &tiles {
        Some(packed) => packed.panel_rows(rows),
        None => panel_rows(rows, row_bytes, t),
    };
    if t == 1 {
        // Decode: each panel streams its weight rows once and writes its outputs in place.
        y.par_chunks_mut(panel)
            .zip(weights.par_chunks(panel * row_bytes))
            .for_each(|(out, w)| simd::vec_dot_rows_checked(path, ty, w, row_bytes, &acts, out));
        return Ok(());
    }
    // Prefill: a panel small enough to stay in L1/L2 is multiplied by every token in turn, so
    // each weight row is read from memory once for all `t` tokens. Where the path has tiled
    // kernels for the type, the panel is unpacked once and runs as tiles of rows × tokens
    // (`tile`, bit-identical to the dots, panels sized by `Acts::panel_rows`); otherwise one
    // `vec_dot_rows` per token. A panel's
    // outputs are token-major ([t, panel]); they are copied into `y` ([t, rows]) afterwards.
    let panels: Vec<Vec<f32>> = weights
        .par_chunks(panel * row_bytes)
        .map(|w| {
            let n = w.len() / row_bytes;
            let mut out = vec![0f32; n * t];
            if let Some(packed) = &tiles {
                tile::panel(path, ty, packed, w, row_bytes, &mut out);
                return out;
            }
            for (o, a) in out.chunks_exact_mut(n).zip(acts.chunks_exact(act_bytes)) {
                simd::vec_dot_rows_checked(path, ty, w, row_bytes, a, o);
            }
            out
        })
        .collect();
    for (p, vals) in panels.iter().enumerate() {
        let (r0, n) = (p * panel, vals.len() / t);
        for (i, v) in vals.chunks_exact(n).enumerate() {
            y[i * rows + r0..i * rows + r0 + n].copy_from_slice(v);
        }
    }
    Ok(())
}

/// Rows per parallel panel. Decode: about four panels per thread (work stealing evens out a
/// busy core) of at least 16 rows; prefill: about 32 KiB of weights, which stay in L1/L2 while
/// every token passes over them. Any value gives the same outputs.
fn panel_rows(rows: usize, row_bytes: usize, t: usize) -> usize {
    let n = if t == 1 {
        rows.div_ceil(4 * rayon::current_num_threads()).max(16)
    } else {
        ((32 << 10) / row_bytes).clamp(4, 64)
    };
    n.min(rows).max(1)
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
