//! The one error type of the `quantize` crate.

use std::path::PathBuf;

/// Anything that can go wrong planning, calibrating or writing a quantized release.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error(transparent)]
    Convert(#[from] convert::ConvertError),
    /// The reference forward pass or the tokenizer failed during calibration.
    #[error(transparent)]
    Forward(#[from] verify::VerifyError),
    #[error("tensor '{tensor}': {source}")]
    Kernel {
        tensor: String,
        #[source]
        source: kernels::KernelError,
    },
    /// A weight the output type cannot hold (it would be written as infinity).
    #[error("tensor '{tensor}': {message}")]
    Value { tensor: String, message: String },
    /// An importance-matrix file is malformed or does not fit the model.
    #[error("{file}: {message}")]
    Imatrix { file: PathBuf, message: String },
    /// Options that cannot work together or do not fit the model.
    #[error("{0}")]
    Options(String),
}

/// Result alias of the crate.
pub type Result<T, E = QuantizeError> = std::result::Result<T, E>;
