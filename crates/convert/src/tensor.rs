//! Borrowed views of tensors inside mmapped safetensors files, and their widening to f32.
//!
//! Weights stay in the file's dtype (usually bf16) until a consumer widens the rows it needs:
//! a layer-streaming forward pass never holds a whole f32 copy of a big matrix.

use std::path::Path;

use rayon::prelude::*;

use crate::error::{ConvertError, Result};

/// The floating-point storage types g4q reads. Checkpoints holding anything else in a text
/// tensor are refused at open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The dtype string of the safetensors header (`"F32"`, `"F16"`, `"BF16"`).
    pub fn safetensors_name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
        }
    }

    /// Parses a safetensors header dtype; `None` for the types g4q does not accept.
    pub fn from_safetensors_name(name: &str) -> Option<DType> {
        match name {
            "F32" => Some(DType::F32),
            "F16" => Some(DType::F16),
            "BF16" => Some(DType::BF16),
            _ => None,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.safetensors_name())
    }
}

/// One tensor of a checkpoint: its canonical name, the file that holds it, its type and shape,
/// and its raw little-endian bytes (borrowed from the mmap; touching them pages them in).
#[derive(Clone, Debug)]
pub struct TensorView<'a> {
    pub name: &'a str,
    pub file: &'a Path,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

/// Above this many elements `to_f32` widens in parallel chunks.
const PARALLEL_MIN: usize = 1 << 20;

impl TensorView<'_> {
    /// Number of elements (1 for a 0-d tensor).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Length of the last dimension: the "row" that `rows_to_f32` reads (1 for a 0-d tensor).
    pub fn row_len(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    /// Number of rows of length `row_len` (all leading dimensions flattened).
    pub fn num_rows(&self) -> usize {
        self.numel().checked_div(self.row_len()).unwrap_or(0)
    }

    /// The whole tensor widened to f32. NaN or Inf anywhere is an error naming file and tensor:
    /// a corrupt weight must stop the run, not poison every logit downstream.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let n = self.numel();
        let mut out = vec![0f32; n];
        let esize = self.dtype.size();
        if n >= PARALLEL_MIN {
            let chunk = 1 << 16;
            out.par_chunks_mut(chunk)
                .zip(self.data.par_chunks(chunk * esize))
                .try_for_each(|(dst, src)| widen(self.dtype, src, dst))
        } else {
            widen(self.dtype, self.data, &mut out)
        }
        .map_err(|at| self.non_finite(at, None))?;
        Ok(out)
    }

    /// Widens rows `row0 .. row0 + n` (rows of length `row_len`, leading dimensions flattened)
    /// into `out`, which must hold exactly `n * row_len` values. This is how the tied head and
    /// the embedding lookups read a huge table a chunk at a time.
    pub fn rows_to_f32(&self, row0: usize, n: usize, out: &mut [f32]) -> Result<()> {
        let rows = self.num_rows();
        let len = self.row_len();
        let end = row0.checked_add(n).filter(|&e| e <= rows).ok_or_else(|| {
            ConvertError::tensor(
                self.file,
                self.name,
                format!("rows {row0}..{row0}+{n} are past its {rows} rows"),
            )
        })?;
        if out.len() != n * len {
            return Err(ConvertError::tensor(
                self.file,
                self.name,
                format!(
                    "output buffer holds {} values, {n} rows of {len} need {}",
                    out.len(),
                    n * len
                ),
            ));
        }
        let esize = self.dtype.size();
        let src = &self.data[row0 * len * esize..end * len * esize];
        widen(self.dtype, src, out).map_err(|at| self.non_finite(row0 * len + at, Some(len)))
    }

    /// Checks every element is finite without widening: a scan of the exponent bits, for
    /// consumers that read the raw bytes (a GEMM that widens panel by panel) but must still
    /// refuse a corrupt weight with its name.
    pub fn check_finite(&self) -> Result<()> {
        let ty = match self.dtype {
            DType::F32 => kernels::GgmlType::F32,
            DType::F16 => kernels::GgmlType::F16,
            DType::BF16 => kernels::GgmlType::BF16,
        };
        match crate::gguf::finite::first_non_finite(ty, self.data) {
            Some((at, _)) => Err(self.non_finite(at, None)),
            None => Ok(()),
        }
    }

    fn non_finite(&self, flat: usize, row_len: Option<usize>) -> ConvertError {
        let len = row_len.unwrap_or_else(|| self.row_len()).max(1);
        ConvertError::tensor(
            self.file,
            self.name,
            format!(
                "holds a NaN or infinite value at element {flat} (row {}, column {})",
                flat / len,
                flat % len
            ),
        )
    }
}

/// Widens little-endian `src` of `dtype` into `dst` (same element count). On a non-finite value
/// returns its index within `dst`.
fn widen(dtype: DType, src: &[u8], dst: &mut [f32]) -> std::result::Result<(), usize> {
    match dtype {
        DType::F32 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            }
        }
        DType::BF16 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = f32::from_bits((u16::from_le_bytes([s[0], s[1]]) as u32) << 16);
            }
        }
        DType::F16 => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = half::f16::from_bits(u16::from_le_bytes([s[0], s[1]])).to_f32();
            }
        }
    }
    match dst.iter().position(|v| !v.is_finite()) {
        Some(at) => Err(at),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(dtype: DType, shape: Vec<usize>, data: &'a [u8]) -> TensorView<'a> {
        TensorView {
            name: "t",
            file: Path::new("f.safetensors"),
            dtype,
            shape,
            data,
        }
    }

    #[test]
    fn widens_each_dtype() {
        let vals = [1.5f32, -2.25, 0.0, 3.0e-3];
        let f32b: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let bf: Vec<u8> = vals
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect();
        let f16b: Vec<u8> = vals
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        assert_eq!(view(DType::F32, vec![2, 2], &f32b).to_f32().unwrap(), vals);
        let b = view(DType::BF16, vec![2, 2], &bf).to_f32().unwrap();
        let h = view(DType::F16, vec![2, 2], &f16b).to_f32().unwrap();
        for i in 0..4 {
            assert_eq!(b[i], half::bf16::from_f32(vals[i]).to_f32());
            assert_eq!(h[i], half::f16::from_f32(vals[i]).to_f32());
        }
    }

    #[test]
    fn row_chunks_match_whole_tensor() {
        let vals: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let v = view(DType::F32, vec![2, 3, 2], &bytes);
        assert_eq!(v.num_rows(), 6);
        let mut out = vec![0f32; 4];
        v.rows_to_f32(2, 2, &mut out).unwrap();
        assert_eq!(out, &vals[4..8]);
        assert!(v.rows_to_f32(5, 2, &mut out).is_err());
        assert!(v.rows_to_f32(0, 1, &mut out).is_err());
    }

    #[test]
    fn non_finite_is_reported_with_position() {
        let vals = [1.0f32, 2.0, f32::NAN, 4.0];
        let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let v = view(DType::F32, vec![2, 2], &bytes);
        let msg = v.to_f32().unwrap_err().to_string();
        assert!(
            msg.contains("tensor 't'") && msg.contains("row 1, column 0"),
            "{msg}"
        );
        assert_eq!(v.check_finite().unwrap_err().to_string(), msg);
        for (dtype, bits) in [(DType::BF16, 0x7f80u16), (DType::F16, 0xfc00u16)] {
            let mut data: Vec<u8> = [1u16, 2, 3, 4]
                .iter()
                .flat_map(|b| b.to_le_bytes())
                .collect();
            assert!(view(dtype, vec![4], &data).check_finite().is_ok());
            data[6..8].copy_from_slice(&bits.to_le_bytes());
            let t = view(dtype, vec![4], &data);
            assert!(t
                .check_finite()
                .unwrap_err()
                .to_string()
                .contains("element 3"));
            assert!(t.to_f32().is_err());
        }
        let mut out = vec![0f32; 2];
        assert!(v.rows_to_f32(0, 1, &mut out).is_ok());
        assert!(v.rows_to_f32(1, 1, &mut out).is_err());
    }
}
