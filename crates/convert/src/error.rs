//! The one error type of the `convert` crate. Every variant names the file, and the tensor
//! where there is one, so the binary can print a single clear line.

use std::path::PathBuf;

/// Anything that can go wrong reading or writing model files.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// `config.json` (or another JSON file) is malformed or describes an unsupported model.
    #[error("{file}: {message}")]
    Config { file: String, message: String },
    /// A model file is malformed, truncated or disagrees with the config.
    #[error("{file}: {message}")]
    Format { file: PathBuf, message: String },
    /// A tensor is missing, has the wrong shape/dtype, or holds NaN/Inf.
    #[error("{file}: tensor '{tensor}': {message}")]
    Tensor {
        file: PathBuf,
        tensor: String,
        message: String,
    },
    /// Operating-system I/O failure.
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ConvertError {
    pub(crate) fn config(file: &str, message: impl Into<String>) -> Self {
        ConvertError::Config {
            file: file.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn format(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ConvertError::Format {
            file: file.into(),
            message: message.into(),
        }
    }

    pub(crate) fn tensor(
        file: impl Into<PathBuf>,
        tensor: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConvertError::Tensor {
            file: file.into(),
            tensor: tensor.into(),
            message: message.into(),
        }
    }

    pub(crate) fn io(file: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ConvertError::Io {
            file: file.into(),
            source,
        }
    }
}

/// Result alias of the crate.
pub type Result<T, E = ConvertError> = std::result::Result<T, E>;
