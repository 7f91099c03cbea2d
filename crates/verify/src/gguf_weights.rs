//! A GGUF file (any ggml type g4q writes) as a [`Weights`] source, so a quantized release runs
//! through the very forward pass of the reference and differences come from its weights and
//! (optionally) ggml's arithmetic alone.
//!
//! Tensors stay quantized in the memory map; a matrix widens only the band of rows asked for, dequantizing whole ggml rows with the kernels crate (bit-identical to ggml's own
//! dequantizers on every SIMD path). Names are translated with `convert::llama`'s map, and ggml's
//! reversed dimension order is undone: a GGUF tensor with `dims = [cols, rows, (experts)]` is the
//! same bytes as the PyTorch `[(experts,) rows, cols]` tensor, so 3-D expert stacks come back as
//! `[experts * rows, cols]` exactly like the safetensors source does.
//!
//! Two ways to multiply ([`GgufMath`]): widen the rows and run the same f32 GEMM as the
//! reference (the error of the weights alone), or ggml's quantized dot products from the kernels
//! crate, where the activations are first rounded to the weight type's `vec_dot_type` (Q8_0 or
//! Q8_K for the block types, f16/bf16 for those float types), exactly as llama.cpp's CPU backend
//! computes: the error a llama.cpp user actually gets.

use std::path::Path;

use convert::gguf::finite::first_non_finite;
use convert::gguf::{GgufFile, TensorInfo};
use convert::llama::{config_from_gguf, gguf_name};
use convert::Gemma4Config;
use kernels::GgmlType;
use memmap2::{Mmap, UncheckedAdvice};

use crate::error::{Result, VerifyError};
use crate::weights::{Dims, Matrix, RowSource, Weights};

/// How the matrix products of a GGUF candidate are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufMath {
    /// ggml's quantized dot products (activations quantized to 8 bits), as llama.cpp runs.
    Ggml,
    /// Dequantize the weights to f32 and run the reference's f32 GEMM.
    Dequantize,
}

impl GgufMath {
    /// The name used by the CLI and the report.
    pub fn name(self) -> &'static str {
        match self {
            GgufMath::Ggml => "ggml",
            GgufMath::Dequantize => "dequantize",
        }
    }
}

/// An open GGUF release with its text config rebuilt from the metadata.
pub struct GgufWeights {
    /// The validated header (tensor infos, metadata).
    file: GgufFile,
    /// Our own read-only map of the file, through which all tensor bytes are read, so that
    /// [`Weights::release`] can drop a tensor's pages (the reader's map is not exposed) and a
    /// streaming run holds about one layer of the candidate.
    map: Mmap,
    config: Gemma4Config,
    label: String,
    math: GgufMath,
}

impl GgufWeights {
    /// Opens and validates `path` (a `gemma4` GGUF file); products are computed as `math` says.
    pub fn open(path: &Path, math: GgufMath) -> Result<Self> {
        let file = GgufFile::open(path)?;
        let config = config_from_gguf(&file)?;
        let label = path.display().to_string();
        let map = std::fs::File::open(path)
            // SAFETY: read-only map; g4q never writes a file it is reading.
            .and_then(|f| unsafe { Mmap::map(&f) })
            .map_err(|e| VerifyError::Input(format!("reading {label}: {e}")))?;
        let weights = GgufWeights {
            label,
            map,
            file,
            config,
            math,
        };
        weights.check_finite()?;
        Ok(weights)
    }

    /// Rejects a file with a NaN or infinite weight, naming the tensor. A block type's values
    /// are its finite integer codes times its f16 scales, so checking the scales (two bytes of
    /// every block) is enough and costs no dequantization; float tensors are checked value by
    /// value. Without this, ggml's quantized products can fold a NaN scale into figures that
    /// look plausible. Each tensor's pages are dropped after its check, so memory stays at
    /// about one tensor.
    fn check_finite(&self) -> Result<()> {
        for info in self.file.tensors() {
            let data = self
                .byte_range(info)
                .and_then(|r| self.map.get(r))
                .ok_or_else(|| {
                    VerifyError::shape(&info.name, format!("data lies outside {}", self.label))
                })?;
            let bad = first_non_finite(info.ty, data);
            self.drop_pages(info);
            if let Some((element, what)) = bad {
                return Err(VerifyError::NonFinite {
                    tensor: info.name.clone(),
                    what: format!("{what} at element {element} in {}", self.label),
                });
            }
        }
        Ok(())
    }

    /// Drops a tensor's pages from this process's memory (see [`Weights::release`]).
    fn drop_pages(&self, info: &TensorInfo) {
        let Some(r) = self.byte_range(info).filter(|r| r.end <= self.map.len()) else {
            return;
        };
        // SAFETY: a read-only, file-backed mapping: DONTNEED only drops clean page-cache
        // references, and any later access (through slices still borrowed) faults the same
        // bytes back in from the file. Widening to whole pages at worst drops a neighbour's.
        let _ = unsafe {
            self.map
                .unchecked_advise_range(UncheckedAdvice::DontNeed, r.start, r.end - r.start)
        };
    }

    fn info(&self, canonical: &str) -> Result<(&TensorInfo, &[u8])> {
        let missing = || {
            VerifyError::shape(
                canonical,
                format!("no such tensor in {} (GGUF)", self.label),
            )
        };
        let gname = gguf_name(canonical).ok_or_else(missing)?;
        let info = self.file.header().tensor(&gname).ok_or_else(missing)?;
        let data = self
            .byte_range(info)
            .and_then(|r| self.map.get(r))
            .ok_or_else(|| {
                VerifyError::shape(canonical, format!("data lies outside {}", self.label))
            })?;
        Ok((info, data))
    }

    /// Where a tensor's bytes lie in the file (checked arithmetic: the header is untrusted).
    fn byte_range(&self, info: &TensorInfo) -> Option<std::ops::Range<usize>> {
        let start = self.file.header().data_offset.checked_add(info.offset)?;
        let end = start.checked_add(info.checked_n_bytes()?)?;
        Some(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
    }
}

/// A quantized (or plain f32/f16/bf16) GGUF tensor viewed as `[rows, cols]`.
struct GgufMatrix<'a> {
    name: String,
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: &'a [u8],
    math: GgufMath,
}

impl RowSource for GgufMatrix<'_> {
    fn dims(&self) -> Dims<'_> {
        Dims::new(&self.name, self.rows, self.cols)
    }

    fn read_rows(&self, row0: usize, n: usize, out: &mut [f32]) -> Result<()> {
        let src = &self.data[row0 * self.row_bytes..(row0 + n) * self.row_bytes];
        // Row by row: each ggml row is whole blocks, and one row at a time keeps the scratch in
        // the caller's panel buffer.
        for (bytes, dst) in src
            .chunks_exact(self.row_bytes)
            .zip(out.chunks_exact_mut(self.cols))
        {
            kernels::simd::dequantize_row(self.ty, bytes, dst).map_err(|e| {
                VerifyError::shape(&self.name, format!("dequantizing {:?}: {e}", self.ty))
            })?;
        }
        if let Some(bad) = out.iter().position(|v| !v.is_finite()) {
            return Err(VerifyError::non_finite(&self.name, row0 * self.cols + bad));
        }
        Ok(())
    }

    fn linear_rows(
        &self,
        x: &[f32],
        t: usize,
        rows: std::ops::Range<usize>,
    ) -> Option<Result<Vec<f32>>> {
        // f32 weights meet f32 activations in ggml too: the reference GEMM is the same product.
        if self.math != GgufMath::Ggml || self.ty == GgmlType::F32 {
            return None;
        }
        let w = self
            .data
            .get(rows.start * self.row_bytes..rows.end * self.row_bytes)?;
        let mut y = vec![0f32; t * rows.len()];
        Some(
            kernels::matmul::matmul(self.ty, w, rows.len(), self.cols, x, t, &mut y)
                .map(|()| y)
                .map_err(|e| {
                    VerifyError::shape(&self.name, format!("{} product: {e}", self.ty.name()))
                }),
        )
    }
}

impl Weights for GgufWeights {
    fn config(&self) -> &Gemma4Config {
        &self.config
    }

    fn has(&self, name: &str) -> bool {
        gguf_name(name).is_some_and(|g| self.file.header().tensor(&g).is_some())
    }

    fn matrix(&self, name: &str) -> Result<Matrix<'_>> {
        let (info, data) = self.info(name)?;
        let dims: Vec<usize> = info
            .dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| VerifyError::shape(name, "dimension does not fit in memory"))?;
        let (cols, rows) = match dims.as_slice() {
            [c, r] => (*c, *r),
            [c, r, e] => (
                *c,
                r.checked_mul(*e)
                    .ok_or_else(|| VerifyError::shape(name, "element count overflows"))?,
            ),
            other => {
                return Err(VerifyError::shape(
                    name,
                    format!("ggml dims {other:?} in {} are not a matrix", self.label),
                ))
            }
        };
        let row_bytes = info.ty.row_bytes(cols).ok_or_else(|| {
            VerifyError::shape(
                name,
                format!("{cols} columns are not whole {} blocks", info.ty.name()),
            )
        })?;
        if row_bytes.checked_mul(rows) != Some(data.len()) {
            return Err(VerifyError::shape(
                name,
                format!(
                    "{} bytes in {} do not hold [{rows}, {cols}] {}",
                    data.len(),
                    self.label,
                    info.ty.name()
                ),
            ));
        }
        Ok(Box::new(GgufMatrix {
            name: name.to_string(),
            ty: info.ty,
            rows,
            cols,
            row_bytes,
            data,
            math: self.math,
        }))
    }

    fn vector(&self, name: &str) -> Result<Vec<f32>> {
        let (info, data) = self.info(name)?;
        let n = info
            .checked_numel()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| VerifyError::shape(name, "element count overflows"))?;
        let mut out = vec![0f32; n];
        kernels::simd::dequantize_row(info.ty, data, &mut out).map_err(|e| {
            VerifyError::shape(
                name,
                format!("dequantizing {} in {}: {e}", info.ty.name(), self.label),
            )
        })?;
        Ok(out)
    }

    fn release(&self, name: &str) {
        if let Some(info) = gguf_name(name).and_then(|g| self.file.header().tensor(&g)) {
            self.drop_pages(info);
        }
    }
}
