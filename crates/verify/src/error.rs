//! The one error type of the `verify` crate. Every variant says which tensor or input was at
//! fault so the binary can print one clear line.

/// Anything that can go wrong running the reference forward pass or the tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Reading the checkpoint failed (missing tensor, bad file, NaN, ...).
    #[error(transparent)]
    Convert(#[from] convert::ConvertError),
    /// A weight has a shape the config does not predict.
    #[error("tensor '{tensor}': {message}")]
    Shape { tensor: String, message: String },
    /// A weight holds NaN or infinity: `what` says where (element, block scale, file).
    #[error("tensor '{tensor}': {what}")]
    NonFinite { tensor: String, what: String },
    /// A candidate's weights, logits or metrics came out NaN or infinite while it was scored
    /// against a finite reference: the candidate fails (`g4q verify` reports a failing
    /// `finite` gate) rather than the input being unreadable.
    #[error("{0}")]
    CandidateNotFinite(String),
    /// The caller's input (token ids, text, options) cannot be run.
    #[error("{0}")]
    Input(String),
    /// Writing an output file failed.
    #[error("writing {file}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// The tokenizer file could not be read or used.
    #[error("tokenizer {file}: {message}")]
    Tokenizer { file: String, message: String },
}

impl VerifyError {
    /// A weight whose element `index` (row-major) is NaN or infinite.
    pub(crate) fn non_finite(tensor: &str, index: usize) -> Self {
        VerifyError::NonFinite {
            tensor: tensor.to_string(),
            what: format!("non-finite value at element {index}"),
        }
    }

    pub(crate) fn shape(tensor: &str, message: impl Into<String>) -> Self {
        VerifyError::Shape {
            tensor: tensor.to_string(),
            message: message.into(),
        }
    }
}

/// Result alias of the crate.
pub type Result<T, E = VerifyError> = std::result::Result<T, E>;
