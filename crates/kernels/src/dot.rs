//! Quantized dot products as ggml-cpu pairs them: the activation row is first quantized to the
//! weight type's `vec_dot_type` (Q8_0, Q8_1 or Q8_K for block types, the type itself for the
//! float formats), then an integer-inner / float-outer kernel of the chosen [`Path`] runs.

use bytemuck::Zeroable;

use crate::blocks::{BlockQ8K, BlockQ8_0, BlockQ8_1};
use crate::fp::{f32_to_bf16, f32_to_f16};
use crate::quants::activation::{quantize_row_q8_0_act, quantize_row_q8_1, quantize_row_q8_k};
use crate::simd::{self, Path};
use crate::{GgmlType, KernelError};

/// The activation format ggml-cpu converts the other operand to before a dot with `ty`
/// (`type_traits_cpu[ty].vec_dot_type`).
pub fn vec_dot_type(ty: GgmlType) -> GgmlType {
    use GgmlType::*;
    match ty {
        Q4_0 | Q5_0 | Q8_0 | IQ4NL => Q8_0,
        Q4_1 | Q5_1 | Q8_1 => Q8_1,
        Q2K | Q3K | Q4K | Q5K | Q6K | Q8K | IQ4XS => Q8K,
        F32 => F32,
        F16 => F16,
        BF16 => BF16,
    }
}

/// Quantizes the activations `x` to `vec_dot_type(ty)`, replacing the contents of `out`.
/// Q8_0 and Q8_1 use ggml-cpu's x86 rounding (half to even), Q8_K the scalar reference,
/// as in ggml's CPU backend. `x.len()` must be a multiple of that type's block size.
pub fn quantize_activation(ty: GgmlType, x: &[f32], out: &mut Vec<u8>) -> Result<(), KernelError> {
    let at = vec_dot_type(ty);
    let bs = at.block_size();
    if !x.len().is_multiple_of(bs) {
        return Err(KernelError::RowLength {
            ty: at,
            n: x.len(),
            block: bs,
        });
    }
    let nb = x.len() / bs;
    out.clear();
    match at {
        GgmlType::Q8_0 => {
            let mut blocks = vec![BlockQ8_0::zeroed(); nb];
            quantize_row_q8_0_act(x, &mut blocks);
            out.extend_from_slice(bytemuck::cast_slice(&blocks));
        }
        GgmlType::Q8_1 => {
            let mut blocks = vec![BlockQ8_1::zeroed(); nb];
            quantize_row_q8_1(x, &mut blocks);
            out.extend_from_slice(bytemuck::cast_slice(&blocks));
        }
        GgmlType::Q8K => {
            let mut blocks = vec![BlockQ8K::zeroed(); nb];
            quantize_row_q8_k(x, &mut blocks);
            out.extend_from_slice(bytemuck::cast_slice(&blocks));
        }
        GgmlType::F16 => out.extend(x.iter().flat_map(|v| f32_to_f16(*v).to_le_bytes())),
        GgmlType::BF16 => out.extend(x.iter().flat_map(|v| f32_to_bf16(*v).to_le_bytes())),
        _ => out.extend(x.iter().flat_map(|v| v.to_le_bytes())),
    }
    Ok(())
}

/// Dot product of one weight row (`n` values of `ty`) with an activation row already in
/// `vec_dot_type(ty)` (from [`quantize_activation`]), on the active path.
pub fn vec_dot(
    ty: GgmlType,
    weights_row: &[u8],
    act_row: &[u8],
    n: usize,
) -> Result<f32, KernelError> {
    vec_dot_with(simd::active_path()?, ty, weights_row, act_row, n)
}

/// [`vec_dot`] on a chosen path.
pub fn vec_dot_with(
    path: Path,
    ty: GgmlType,
    weights_row: &[u8],
    act_row: &[u8],
    n: usize,
) -> Result<f32, KernelError> {
    simd::ensure_supported(path)?;
    check_row(ty, weights_row, n)?;
    check_row(vec_dot_type(ty), act_row, n)?;
    Ok(simd::vec_dot_checked(path, ty, weights_row, act_row))
}

/// Fails unless `bytes` is exactly a row of `n` values of `ty`.
pub(crate) fn check_row(ty: GgmlType, bytes: &[u8], n: usize) -> Result<(), KernelError> {
    let expected = ty.row_bytes(n).ok_or(KernelError::RowLength {
        ty,
        n,
        block: ty.block_size(),
    })?;
    if bytes.len() != expected {
        return Err(KernelError::OutputLength {
            ty,
            expected,
            got: bytes.len(),
            unit: "bytes",
        });
    }
    Ok(())
}
