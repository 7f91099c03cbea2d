//! GGUF, the file format llama.cpp loads: a defensive reader ([`GgufFile`]) and a streaming
//! writer ([`GgufWriter`]) of version 3 files, byte-compatible with gguf-py and gguf.cpp.

pub mod finite;
mod reader;
mod value;
mod writer;

use kernels::GgmlType;

pub use reader::{parse_header, GgufFile, Header};
pub use value::{Array, Metadata, Value, ValueType};
pub use writer::{encode_header, GgufWriter};

/// "GGUF" at the start of every file.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most 4 dimensions.
pub const MAX_DIMS: usize = 4;
/// `GGML_MAX_NAME`: tensor names are shorter than this many bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// One tensor's entry in the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the row length (the contiguous dimension), so a
    /// PyTorch `[out, in]` weight has `dims == [in, out]`.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// A tensor with its PyTorch-order `shape` (outermost first), converted to ggml order.
    pub fn from_torch_shape(name: impl Into<String>, shape: &[usize], ty: GgmlType) -> Self {
        TensorInfo {
            name: name.into(),
            dims: shape.iter().rev().map(|&d| d as u64).collect(),
            ty,
            offset: 0,
        }
    }

    /// Number of elements, or `None` on overflow.
    pub fn checked_numel(&self) -> Option<u64> {
        self.dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }

    /// Data size in bytes, or `None` when the row is not whole blocks or the size overflows.
    pub fn checked_n_bytes(&self) -> Option<u64> {
        let row = *self.dims.first()?;
        let row_bytes = self.ty.row_bytes(usize::try_from(row).ok()?)? as u64;
        self.dims[1..]
            .iter()
            .try_fold(row_bytes, |acc, &d| acc.checked_mul(d))
    }

    /// Data size in bytes of a validated tensor.
    pub fn n_bytes(&self) -> u64 {
        self.checked_n_bytes().unwrap_or(0)
    }
}
