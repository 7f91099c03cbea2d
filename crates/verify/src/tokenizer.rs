//! Text to token ids through the checkpoint's `tokenizer.json` (the `tokenizers` crate, pure
//! Rust). Gemma's tokenizer adds no `<bos>` by itself; raw text for the forward pass gets the
//! config's BOS id (2) prepended, as the chat template would.

use std::path::Path;

use crate::error::{Result, VerifyError};

/// A loaded `tokenizer.json`.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    file: String,
}

impl Tokenizer {
    /// Loads `tokenizer.json` (or any file path given).
    pub fn from_file(path: &Path) -> Result<Self> {
        let file = path.display().to_string();
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| VerifyError::Tokenizer {
            file: file.clone(),
            message: e.to_string(),
        })?;
        Ok(Tokenizer { inner, file })
    }

    /// Loads `tokenizer.json` from a model folder.
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        Tokenizer::from_file(&dir.join("tokenizer.json"))
    }

    /// Token ids of `text` exactly as the tokenizer produces them (no BOS added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| self.err(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// `[bos] + encode(text)`: the input of the forward pass for raw text.
    pub fn encode_with_bos(&self, text: &str, bos: u32) -> Result<Vec<u32>> {
        let mut ids = vec![bos];
        ids.extend(self.encode(text)?);
        Ok(ids)
    }

    /// Token strings of `text` (for checks against the reference tokenizer).
    pub fn tokens(&self, text: &str) -> Result<Vec<String>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| self.err(e.to_string()))?;
        Ok(enc.get_tokens().to_vec())
    }

    /// Text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| self.err(e.to_string()))
    }

    /// Number of ids the tokenizer knows, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    fn err(&self, message: String) -> VerifyError {
        VerifyError::Tokenizer {
            file: self.file.clone(),
            message,
        }
    }
}
