//! Where the forward pass gets its weights from.
//!
//! The forward pass never sees files: it asks a [`Weights`] source for matrices by canonical name
//! (the Hugging Face name without the text prefix, e.g. `layers.3.self_attn.q_proj.weight`). The
//! safetensors checkpoint is one source ([`crate::checkpoint`]); quantized candidates (GGUF, AWQ,
//! ONNX) plug in later through the same trait, so one forward pass serves the reference and every
//! candidate. A matrix is anything that can widen a band of its rows to f32 ([`RowSource`]):
//! bf16 stays bf16 in memory and is widened panel by panel inside the GEMM, which is what keeps
//! the 31B streaming run under its memory budget.

use std::borrow::Cow;

use convert::Gemma4Config;

use crate::error::{Result, VerifyError};
use crate::gemm::Panel;

/// A 2-D weight `[rows, cols]` (`[out, in]` for a linear layer) that widens rows on demand.
pub trait RowSource: Send + Sync {
    /// Name and size: the one thing every source reports the same way.
    fn dims(&self) -> Dims<'_>;
    /// Canonical tensor name, for errors and observers.
    fn name(&self) -> &str {
        self.dims().name
    }
    /// Number of rows (outputs of a linear layer).
    fn rows(&self) -> usize {
        self.dims().rows
    }
    /// Number of columns (inputs of a linear layer).
    fn cols(&self) -> usize {
        self.dims().cols
    }
    /// Writes rows `row0 .. row0 + n` as f32 into `out` (`n * cols` values, row-major), after
    /// checking that they lie inside the matrix and that `out` holds exactly them.
    fn rows_to_f32(&self, row0: usize, n: usize, out: &mut [f32]) -> Result<()> {
        self.dims().check_rows(row0, n, out.len())?;
        self.read_rows(row0, n, out)
    }
    /// What [`RowSource::rows_to_f32`] does once the bounds are checked: each source's hot loop
    /// indexes without re-deriving them.
    fn read_rows(&self, row0: usize, n: usize, out: &mut [f32]) -> Result<()>;
    /// The whole matrix as stored, when the GEMM can read it in place (dense f32 or bf16); `None`
    /// (the default) makes it widen rows through [`RowSource::rows_to_f32`] instead.
    fn dense(&self) -> Option<Panel<'_>> {
        None
    }
    /// `x[t, cols] @ W[rows, :].T` computed by the source itself, or `None` (the default) to let
    /// the f32 GEMM widen rows. Quantized GGUF candidates use it to run ggml's own quantized
    /// dot products (activations rounded to 8 bits), so their error matches llama.cpp's.
    fn linear_rows(
        &self,
        _x: &[f32],
        _t: usize,
        _rows: std::ops::Range<usize>,
    ) -> Option<Result<Vec<f32>>> {
        None
    }
}

/// Name and size of a [`RowSource`] matrix.
#[derive(Clone, Copy, Debug)]
pub struct Dims<'a> {
    pub name: &'a str,
    pub rows: usize,
    pub cols: usize,
}

impl<'a> Dims<'a> {
    pub fn new(name: &'a str, rows: usize, cols: usize) -> Self {
        Dims { name, rows, cols }
    }

    /// Checks that rows `row0 .. row0 + n` lie inside the matrix and that `out_len` values hold
    /// exactly those rows.
    fn check_rows(&self, row0: usize, n: usize, out_len: usize) -> Result<()> {
        let inside = row0.checked_add(n).is_some_and(|e| e <= self.rows);
        if !inside || Some(out_len) != n.checked_mul(self.cols) {
            return Err(VerifyError::shape(
                self.name,
                format!(
                    "rows {row0}..{row0}+{n} into {out_len} values is outside [{}, {}]",
                    self.rows, self.cols
                ),
            ));
        }
        Ok(())
    }
}

/// A boxed matrix borrowed from (or owned by) its weight source.
pub type Matrix<'a> = Box<dyn RowSource + 'a>;

/// Element type of a dense matrix as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElemType {
    F32,
    F16,
    BF16,
}

impl ElemType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            ElemType::F32 => 4,
            ElemType::F16 | ElemType::BF16 => 2,
        }
    }
}

/// A dense row-major matrix of little-endian f32/f16/bf16 bytes, borrowed from an mmap or owned.
pub struct DenseMatrix<'a> {
    name: String,
    dtype: ElemType,
    rows: usize,
    cols: usize,
    bytes: Cow<'a, [u8]>,
}

impl<'a> DenseMatrix<'a> {
    /// Wraps `bytes` as a `[rows, cols]` matrix; the byte length must match exactly.
    pub fn new(
        name: &str,
        dtype: ElemType,
        rows: usize,
        cols: usize,
        bytes: Cow<'a, [u8]>,
    ) -> Result<Self> {
        let want = rows
            .checked_mul(cols)
            .and_then(|n| n.checked_mul(dtype.size()));
        if want != Some(bytes.len()) {
            return Err(VerifyError::shape(
                name,
                format!(
                    "{} bytes do not hold a [{rows}, {cols}] {dtype:?} matrix",
                    bytes.len()
                ),
            ));
        }
        Ok(DenseMatrix {
            name: name.to_string(),
            dtype,
            rows,
            cols,
            bytes,
        })
    }

    /// An owned f32 matrix (tests, synthetic weights).
    pub fn from_f32(name: &str, rows: usize, cols: usize, values: &[f32]) -> Result<Self> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        DenseMatrix::new(name, ElemType::F32, rows, cols, Cow::Owned(bytes))
    }
}

impl RowSource for DenseMatrix<'_> {
    fn dims(&self) -> Dims<'_> {
        Dims::new(&self.name, self.rows, self.cols)
    }

    fn dense(&self) -> Option<Panel<'_>> {
        match self.dtype {
            ElemType::BF16 => Some(Panel::Bf16(&self.bytes)),
            ElemType::F32 => Some(Panel::F32Le(&self.bytes)),
            ElemType::F16 => None,
        }
    }

    fn read_rows(&self, row0: usize, n: usize, out: &mut [f32]) -> Result<()> {
        let es = self.dtype.size();
        let start = row0 * self.cols * es;
        let src = &self.bytes[start..start + n * self.cols * es];
        if !widen(self.dtype, src, out) {
            let bad = out.iter().position(|v| !v.is_finite()).unwrap_or(0);
            return Err(VerifyError::non_finite(&self.name, row0 * self.cols + bad));
        }
        Ok(())
    }
}

/// Decodes little-endian `src` of type `dtype` into `out` (same element count). Returns whether
/// every value is finite; the check is folded into the decoding loop (an exponent test on the
/// raw bits) so that it vectorises with it instead of costing a second pass.
pub fn widen(dtype: ElemType, src: &[u8], out: &mut [f32]) -> bool {
    let mut bad = 0u32;
    match dtype {
        ElemType::F32 => {
            for (o, b) in out.iter_mut().zip(src.chunks_exact(4)) {
                let bits = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                bad |= ((bits & 0x7f80_0000) == 0x7f80_0000) as u32;
                *o = f32::from_bits(bits);
            }
        }
        ElemType::BF16 => {
            for (o, b) in out.iter_mut().zip(src.chunks_exact(2)) {
                let bits = u16::from_le_bytes([b[0], b[1]]);
                bad |= ((bits & 0x7f80) == 0x7f80) as u32;
                *o = f32::from_bits((bits as u32) << 16);
            }
        }
        ElemType::F16 => {
            for (o, b) in out.iter_mut().zip(src.chunks_exact(2)) {
                let bits = u16::from_le_bytes([b[0], b[1]]);
                bad |= ((bits & 0x7c00) == 0x7c00) as u32;
                *o = half::f16::from_bits(bits).to_f32();
            }
        }
    }
    bad == 0
}

/// A source of named weights for the forward pass.
pub trait Weights: Sync {
    /// The text-model configuration the weights belong to.
    fn config(&self) -> &Gemma4Config;
    /// Whether the source holds `name`.
    fn has(&self, name: &str) -> bool;
    /// A 2-D weight as `[rows, cols]`; 3-D expert stacks `[E, a, b]` come back as `[E*a, b]`.
    fn matrix(&self, name: &str) -> Result<Matrix<'_>>;
    /// A 1-D (or single-element) weight widened to f32.
    fn vector(&self, name: &str) -> Result<Vec<f32>>;
    /// Tells the source that `name` will not be read again soon, so it may drop its pages.
    /// Streaming mode calls this after each layer; the default does nothing.
    fn release(&self, _name: &str) {}
}

/// Fetches a matrix and checks its shape is `[rows, cols]`.
pub fn matrix_of<'w, W: Weights + ?Sized>(
    w: &'w W,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<Matrix<'w>> {
    let m = w.matrix(name)?;
    if m.rows() != rows || m.cols() != cols {
        return Err(VerifyError::shape(
            name,
            format!(
                "shape [{}, {}] but the config needs [{rows}, {cols}]",
                m.rows(),
                m.cols()
            ),
        ));
    }
    Ok(m)
}

/// Fetches a vector and checks its length.
pub fn vector_of<W: Weights + ?Sized>(w: &W, name: &str, len: usize) -> Result<Vec<f32>> {
    let v = w.vector(name)?;
    if v.len() != len {
        return Err(VerifyError::shape(
            name,
            format!("{} values but the config needs {len}", v.len()),
        ));
    }
    if let Some(bad) = v.iter().position(|x| !x.is_finite()) {
        return Err(VerifyError::non_finite(name, bad));
    }
    Ok(v)
}
