//! The one error type of the `convert` crate. Every variant names the file, and the tensor
//! where there is one, so the binary can print a single clear line.

use std::borrow::Cow;
use std::path::PathBuf;

/// How many bytes of a file-supplied value (a key, a name, a string, a shape) an error message
/// quotes. Inputs are untrusted: a 1 MB key or a shape of 100k dimensions must still give a
/// one-line message a terminal or CI log can show.
pub const MAX_QUOTED: usize = 96;

/// Longest message any error carries; a backstop for messages that quote several values.
const MAX_MESSAGE: usize = 1024;

/// `s` cut to about `max` bytes (on a character boundary), with the total length appended
/// when something was cut, so the message still says how long the value was; control
/// characters are escaped (`\n`), so a value from a file never breaks a message into lines.
pub fn cut_to(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max && !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(max.min(s.len()) + 16);
    for c in s.chars() {
        if out.len() >= max {
            out.push_str(&format!("… ({} bytes)", s.len()));
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `s` cut to [`MAX_QUOTED`] bytes: what every error message quotes of a value from a file.
pub fn cut(s: &str) -> Cow<'_, str> {
    cut_to(s, MAX_QUOTED)
}

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
            message: bounded(message.into()),
        }
    }

    pub(crate) fn format(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ConvertError::Format {
            file: file.into(),
            message: bounded(message.into()),
        }
    }

    pub(crate) fn tensor(
        file: impl Into<PathBuf>,
        tensor: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConvertError::Tensor {
            file: file.into(),
            tensor: cut(&tensor.into()).into_owned(),
            message: bounded(message.into()),
        }
    }

    pub(crate) fn io(file: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ConvertError::Io {
            file: file.into(),
            source,
        }
    }
}

/// `message` as one line of at most about [`MAX_MESSAGE`] bytes: what every error of g4q
/// carries, whatever a file put in it.
pub fn bounded(message: String) -> String {
    match cut_to(&message, MAX_MESSAGE) {
        Cow::Borrowed(_) => message,
        Cow::Owned(short) => short,
    }
}

/// Result alias of the crate.
pub type Result<T, E = ConvertError> = std::result::Result<T, E>;
