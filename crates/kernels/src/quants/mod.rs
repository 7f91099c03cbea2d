//! Quantizers and scalar dequantizers, one module per family, each a literal port of ggml's
//! reference code so the bytes match; and the byte-level API the converters call
//! ([`quantize_row`], [`quantize_rows`], [`dequantize_row_ref`]), which checks every length and
//! value and returns [`KernelError`] instead of panicking.
//!
//! Byte slices are little-endian ggml data (GGUF is little-endian, and so are the targets g4q
//! runs on); they may start at any address: when a slice is not aligned for its block struct
//! the data goes through an aligned copy.

pub mod activation;
pub mod iq4;
pub mod kquants;
mod lanes;
#[cfg(target_arch = "x86_64")]
mod lanes_avx2;
#[cfg(target_arch = "x86_64")]
mod lanes_avx512;
pub mod legacy;
pub mod q2k;
mod q3_lanes;
pub mod q3k;
pub mod q4k;
pub mod q5k;
pub mod q6k;
pub mod search;
mod vector;

use bytemuck::Pod;
use rayon::prelude::*;

use crate::blocks::{
    BlockIQ4NL, BlockIQ4XS, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K,
    BlockQ5_0, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_0, BlockQ8_1,
};
use crate::error::KernelError;
use crate::fp::{f16_to_f32, f32_to_bf16, f32_to_f16};
use crate::types::GgmlType;

/// A row quantizer over typed blocks: (row values, blocks, optional per-column weights).
type QuantFn<B> = fn(&[f32], &mut [B], Option<&[f32]>);
/// A dequantizer over typed blocks.
type DequantFn<B> = fn(&[B], &mut [f32]);

/// Quantizes one row of `x.len()` values to `ty`, writing exactly `ty.row_bytes(x.len())`
/// bytes, as ggml's `ggml_quantize_chunk` does for a single row (with `imatrix` as its
/// `quant_weights`: one weight per column, or `None`). F32/F16/BF16 are converted as ggml
/// converts them; Q8_1 and Q8_K (activation formats) use ggml's scalar references.
pub fn quantize_row(
    ty: GgmlType,
    x: &[f32],
    imatrix: Option<&[f32]>,
    out: &mut [u8],
) -> Result<(), KernelError> {
    quantize_rows(ty, x, x.len(), imatrix, out)
}

/// Quantizes `x.len() / n_per_row` rows in parallel (rayon). Rows are independent, so the
/// bytes do not depend on the number of threads. Lengths are checked first, then every value:
/// the first NaN/Inf (lowest row, then column) is reported and nothing is quantized. The
/// K-quants' fast searches run on the active kernel path (`G4Q_SIMD`), so an invalid setting
/// is an error here too.
pub fn quantize_rows(
    ty: GgmlType,
    x: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    out: &mut [u8],
) -> Result<(), KernelError> {
    crate::simd::active_path()?;
    let row_bytes = check_shapes(ty, x.len(), n_per_row, imatrix, out.len())?;
    check_finite(ty, x, n_per_row)?;
    out.par_chunks_mut(row_bytes)
        .zip(x.par_chunks(n_per_row))
        .for_each(|(o, row)| quantize_checked_row(ty, row, imatrix, o));
    Ok(())
}

/// The scalar reference dequantizer of `ty` (ggml's `to_float`): `bytes` holds whole blocks and
/// `out` exactly their values. F16 and BF16 convert exactly (BF16 as a plain shift, keeping
/// NaN payloads as ggml does).
pub fn dequantize_row_ref(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), KernelError> {
    let ts = ty.type_size();
    if !bytes.len().is_multiple_of(ts) {
        return Err(KernelError::ByteLength {
            ty,
            len: bytes.len(),
            type_size: ts,
        });
    }
    let expected =
        (bytes.len() / ts)
            .checked_mul(ty.block_size())
            .ok_or(KernelError::Overflow {
                ty,
                what: "the dequantized row",
            })?;
    if out.len() != expected {
        return Err(KernelError::OutputLength {
            ty,
            expected,
            got: out.len(),
            unit: "values",
        });
    }
    use GgmlType::*;
    match ty {
        F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        F16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        BF16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16);
            }
        }
        Q4_0 => dequant_blocks::<BlockQ4_0>(bytes, out, legacy::dequantize_row_q4_0),
        Q4_1 => dequant_blocks::<BlockQ4_1>(bytes, out, legacy::dequantize_row_q4_1),
        Q5_0 => dequant_blocks::<BlockQ5_0>(bytes, out, legacy::dequantize_row_q5_0),
        Q5_1 => dequant_blocks::<BlockQ5_1>(bytes, out, legacy::dequantize_row_q5_1),
        Q8_0 => dequant_blocks::<BlockQ8_0>(bytes, out, legacy::dequantize_row_q8_0),
        Q8_1 => dequant_blocks::<BlockQ8_1>(bytes, out, activation::dequantize_row_q8_1),
        Q8K => dequant_blocks::<BlockQ8K>(bytes, out, activation::dequantize_row_q8_k),
        IQ4NL => dequant_blocks::<BlockIQ4NL>(bytes, out, iq4::dequantize_row_iq4_nl),
        IQ4XS => dequant_blocks::<BlockIQ4XS>(bytes, out, iq4::dequantize_row_iq4_xs),
        Q2K => dequant_blocks::<BlockQ2K>(bytes, out, kquants::dequantize_row_q2_k),
        Q3K => dequant_blocks::<BlockQ3K>(bytes, out, kquants::dequantize_row_q3_k),
        Q4K => dequant_blocks::<BlockQ4K>(bytes, out, kquants::dequantize_row_q4_k),
        Q5K => dequant_blocks::<BlockQ5K>(bytes, out, kquants::dequantize_row_q5_k),
        Q6K => dequant_blocks::<BlockQ6K>(bytes, out, kquants::dequantize_row_q6_k),
    }
    Ok(())
}

/// Validates the lengths of a [`quantize_rows`] call and returns the bytes per row.
fn check_shapes(
    ty: GgmlType,
    len: usize,
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    out_len: usize,
) -> Result<usize, KernelError> {
    let block = ty.block_size();
    if n_per_row == 0 || !n_per_row.is_multiple_of(block) {
        return Err(KernelError::RowLength {
            ty,
            n: n_per_row,
            block,
        });
    }
    if !len.is_multiple_of(n_per_row) {
        return Err(KernelError::InputLength { ty, len, n_per_row });
    }
    if let Some(qw) = imatrix {
        if qw.len() != n_per_row {
            return Err(KernelError::ImatrixLength {
                ty,
                expected: n_per_row,
                got: qw.len(),
            });
        }
        if let Some(col) = qw.iter().position(|v| !v.is_finite()) {
            return Err(KernelError::ImatrixNotFinite {
                ty,
                col,
                value: qw[col],
            });
        }
    }
    let overflow = KernelError::Overflow {
        ty,
        what: "the quantized rows",
    };
    let row_bytes = ty.row_bytes(n_per_row).ok_or(overflow.clone())?;
    let expected = (len / n_per_row).checked_mul(row_bytes).ok_or(overflow)?;
    if out_len != expected {
        return Err(KernelError::OutputLength {
            ty,
            expected,
            got: out_len,
            unit: "bytes",
        });
    }
    Ok(row_bytes)
}

/// Reports the first non-finite input value (lowest row, then lowest column), so the error is
/// the same whatever the thread count.
fn check_finite(ty: GgmlType, x: &[f32], n_per_row: usize) -> Result<(), KernelError> {
    let bad = x
        .par_chunks(n_per_row)
        .position_first(|row| row.iter().any(|v| !v.is_finite()));
    match bad {
        None => Ok(()),
        Some(row) => {
            let r = &x[row * n_per_row..(row + 1) * n_per_row];
            let col = r.iter().position(|v| !v.is_finite()).unwrap_or(0);
            Err(KernelError::NotFinite {
                ty,
                row,
                col,
                value: r[col],
            })
        }
    }
}

/// Quantizes one row whose lengths and values [`quantize_rows`] has already checked.
fn quantize_checked_row(ty: GgmlType, x: &[f32], imatrix: Option<&[f32]>, out: &mut [u8]) {
    use GgmlType::*;
    match ty {
        F32 => {
            for (o, v) in out.chunks_exact_mut(4).zip(x) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        F16 => {
            for (o, &v) in out.chunks_exact_mut(2).zip(x) {
                o.copy_from_slice(&f32_to_f16(v).to_le_bytes());
            }
        }
        BF16 => {
            for (o, &v) in out.chunks_exact_mut(2).zip(x) {
                o.copy_from_slice(&f32_to_bf16(v).to_le_bytes());
            }
        }
        Q4_0 => quant_blocks::<BlockQ4_0>(x, imatrix, out, legacy::quantize_row_q4_0),
        Q4_1 => quant_blocks::<BlockQ4_1>(x, imatrix, out, legacy::quantize_row_q4_1),
        Q5_0 => quant_blocks::<BlockQ5_0>(x, imatrix, out, legacy::quantize_row_q5_0),
        Q5_1 => quant_blocks::<BlockQ5_1>(x, imatrix, out, legacy::quantize_row_q5_1),
        Q8_0 => quant_blocks::<BlockQ8_0>(x, imatrix, out, legacy::quantize_row_q8_0),
        Q8_1 => quant_blocks::<BlockQ8_1>(x, imatrix, out, |x, y, _| {
            activation::quantize_row_q8_1_ref(x, y)
        }),
        Q8K => quant_blocks::<BlockQ8K>(x, imatrix, out, |x, y, _| {
            activation::quantize_row_q8_k(x, y)
        }),
        IQ4NL => quant_blocks::<BlockIQ4NL>(x, imatrix, out, iq4::quantize_row_iq4_nl),
        IQ4XS => quant_blocks::<BlockIQ4XS>(x, imatrix, out, iq4::quantize_row_iq4_xs),
        Q2K => quant_blocks::<BlockQ2K>(x, imatrix, out, kquants::quantize_row_q2_k_fast),
        Q3K => quant_blocks::<BlockQ3K>(x, imatrix, out, kquants::quantize_row_q3_k_fast),
        Q4K => quant_blocks::<BlockQ4K>(x, imatrix, out, kquants::quantize_row_q4_k_fast),
        Q5K => quant_blocks::<BlockQ5K>(x, imatrix, out, kquants::quantize_row_q5_k_fast),
        Q6K => quant_blocks::<BlockQ6K>(x, imatrix, out, kquants::quantize_row_q6_k_fast),
    }
}

/// Runs a typed quantizer on a byte buffer of exactly the right size, in place when the
/// buffer is aligned for `B`, else through an aligned copy.
fn quant_blocks<B: Pod>(x: &[f32], imatrix: Option<&[f32]>, out: &mut [u8], f: QuantFn<B>) {
    match bytemuck::try_cast_slice_mut::<u8, B>(out) {
        Ok(blocks) => f(x, blocks, imatrix),
        Err(_) => {
            let mut blocks = vec![B::zeroed(); out.len() / std::mem::size_of::<B>()];
            f(x, &mut blocks, imatrix);
            out.copy_from_slice(bytemuck::cast_slice(&blocks));
        }
    }
}

/// Runs a typed dequantizer on whole blocks, reading them unaligned when they must be.
fn dequant_blocks<B: Pod>(bytes: &[u8], out: &mut [f32], f: DequantFn<B>) {
    match bytemuck::try_cast_slice::<u8, B>(bytes) {
        Ok(blocks) => f(blocks, out),
        Err(_) => {
            let blocks: Vec<B> = bytes
                .chunks_exact(std::mem::size_of::<B>())
                .map(bytemuck::pod_read_unaligned)
                .collect();
            f(&blocks, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unaligned_buffers_give_the_same_bytes() {
        let x: Vec<f32> = (0..512)
            .map(|i| ((i * 7919) % 1000) as f32 * 0.001 - 0.5)
            .collect();
        for ty in GgmlType::ALL {
            let n = ty.row_bytes(512).unwrap();
            let mut aligned = vec![0u8; n];
            quantize_row(ty, &x, None, &mut aligned).unwrap();
            let mut store = vec![0u8; n + 1];
            quantize_row(ty, &x, None, &mut store[1..]).unwrap();
            assert_eq!(aligned, &store[1..], "{ty}");
            let mut a = vec![0.0f32; 512];
            let mut b = vec![0.0f32; 512];
            dequantize_row_ref(ty, &aligned, &mut a).unwrap();
            dequantize_row_ref(ty, &store[1..], &mut b).unwrap();
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{ty}"
            );
        }
    }

    #[test]
    fn float_types_convert_like_ggml() {
        let x = [1.0f32, -2.5, 65504.0, 1e-8, 3.0e38, -0.0, 0.1, 7.0];
        let mut f16 = [0u8; 16];
        quantize_row(GgmlType::F16, &x, None, &mut f16).unwrap();
        let mut back = [0.0f32; 8];
        dequantize_row_ref(GgmlType::F16, &f16, &mut back).unwrap();
        assert_eq!(back[..3], [1.0, -2.5, 65504.0]);
        assert!(back[4].is_infinite());
        let mut bf = [0u8; 16];
        quantize_row(GgmlType::BF16, &x, None, &mut bf).unwrap();
        dequantize_row_ref(GgmlType::BF16, &bf, &mut back).unwrap();
        assert_eq!(back[1], -2.5);
        assert_eq!(back[5].to_bits(), 0x8000_0000);
        let mut f32b = [0u8; 32];
        quantize_row(GgmlType::F32, &x, None, &mut f32b).unwrap();
        dequantize_row_ref(GgmlType::F32, &f32b, &mut back).unwrap();
        assert_eq!(back, x);
    }
}
