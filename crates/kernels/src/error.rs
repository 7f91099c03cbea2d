//! The one error type of the `kernels` crate. The kernels know nothing of files or tensor
//! names, so each variant says *what* is wrong with the slices it was handed (which row, which
//! column, which length); callers wrap it with the file and tensor it came from.

use crate::types::GgmlType;

/// What can be wrong with the data or the lengths handed to the quantize/dequantize API.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KernelError {
    /// A row length that is zero or not a multiple of the type's block size.
    #[error("{ty}: row of {n} values is not a non-zero multiple of the block size {block}")]
    RowLength {
        ty: GgmlType,
        n: usize,
        block: usize,
    },
    /// The input does not split into whole rows of `n_per_row` values.
    #[error("{ty}: input of {len} values is not a whole number of rows of {n_per_row}")]
    InputLength {
        ty: GgmlType,
        len: usize,
        n_per_row: usize,
    },
    /// The importance matrix does not hold exactly one weight per column.
    #[error("{ty}: importance matrix has {got} values, expected {expected} (one per column)")]
    ImatrixLength {
        ty: GgmlType,
        expected: usize,
        got: usize,
    },
    /// An importance weight is NaN or infinite.
    #[error("{ty}: importance matrix value at column {col} is not finite ({value})")]
    ImatrixNotFinite {
        ty: GgmlType,
        col: usize,
        value: f32,
    },
    /// An input value is NaN or infinite; ggml would write a block that fails validation.
    #[error("{ty}: input row {row}, column {col} is not finite ({value})")]
    NotFinite {
        ty: GgmlType,
        row: usize,
        col: usize,
        value: f32,
    },
    /// The output buffer does not have the exact size the input needs.
    #[error("{ty}: output buffer has {got} {unit}, expected {expected}")]
    OutputLength {
        ty: GgmlType,
        expected: usize,
        got: usize,
        unit: &'static str,
    },
    /// Encoded bytes that are not a whole number of blocks.
    #[error("{ty}: {len} bytes are not a whole number of {type_size}-byte blocks")]
    ByteLength {
        ty: GgmlType,
        len: usize,
        type_size: usize,
    },
    /// A size computation overflowed `usize` (only reachable with absurd lengths).
    #[error("{ty}: size of {what} overflows")]
    Overflow { ty: GgmlType, what: &'static str },
    /// A kernel path (from `G4Q_SIMD` or a caller) that this build or CPU cannot run.
    #[error("SIMD path '{requested}' is not available: {reason}")]
    SimdPath { requested: String, reason: String },
}
