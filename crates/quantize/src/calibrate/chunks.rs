//! Calibration text to token chunks the way `llama-imatrix` (tools/imatrix/imatrix.cpp,
//! `compute_imatrix`) does it, so both tools see the same token sequences:
//!
//! 1. the whole file is tokenized once with BOS prepended (llama.cpp tokenizes with
//!    `add_special`, and Gemma's vocabulary asks for BOS; special-token text is not parsed);
//! 2. it is cut into `len / ctx` consecutive chunks of `ctx` tokens (at most `--chunks` of them),
//!    the tail that does not fill a chunk is dropped;
//! 3. each chunk's first token is replaced by BOS, so every chunk is an independent sequence
//!    that starts like a document (the first chunk already starts with it).

use std::path::Path;

use verify::Tokenizer;

use crate::error::{QuantizeError, Result};

/// Reads `data` (UTF-8 text) and tokenizes it with the tokenizer of the checkpoint folder
/// `model_dir`, BOS first, as llama-imatrix tokenizes its `-f` file.
pub fn calibration_tokens(model_dir: &Path, data: &Path, bos: u32) -> Result<Vec<u32>> {
    let bytes = std::fs::read(data).map_err(|e| QuantizeError::Imatrix {
        file: data.to_path_buf(),
        message: format!("cannot read calibration text: {e}"),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| QuantizeError::Imatrix {
        file: data.to_path_buf(),
        message: format!(
            "calibration text is not UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        ),
    })?;
    let tok = Tokenizer::from_model_dir(model_dir)?;
    Ok(tok.encode_with_bos(&text, bos)?)
}

/// Cuts `tokens` (BOS first) into llama-imatrix's chunks of `ctx` tokens, each starting with
/// `bos`. `max_chunks` caps the count (`--chunks`); like llama-imatrix it refuses text shorter
/// than two chunks, since one chunk says little about a model's activations.
pub fn split_chunks(
    tokens: &[u32],
    ctx: usize,
    max_chunks: Option<usize>,
    bos: u32,
) -> Result<Vec<Vec<u32>>> {
    if ctx == 0 {
        return Err(QuantizeError::Options(
            "the chunk size (--ctx) must be at least 1".into(),
        ));
    }
    if max_chunks == Some(0) {
        return Err(QuantizeError::Options("--chunks must be at least 1".into()));
    }
    let need = ctx.saturating_mul(2);
    if tokens.len() < need {
        return Err(QuantizeError::Options(format!(
            "the calibration text tokenizes to {} tokens; a context of {ctx} needs at least {need}",
            tokens.len()
        )));
    }
    // The cutting itself is llama.cpp's perplexity/imatrix chunking, shared with `g4q verify`.
    Ok(verify::data::chunk_tokens(tokens, ctx, max_chunks, bos)?)
}

#[cfg(test)]
mod tests {
    use super::split_chunks;

    #[test]
    fn chunks_start_with_bos_and_drop_the_tail() {
        let tokens: Vec<u32> = (100..110).collect();
        let c = split_chunks(&tokens, 4, None, 2).unwrap();
        assert_eq!(c, vec![vec![2, 101, 102, 103], vec![2, 105, 106, 107]]);
        let c = split_chunks(&tokens, 3, Some(2), 2).unwrap();
        assert_eq!(c, vec![vec![2, 101, 102], vec![2, 104, 105]]);
    }

    #[test]
    fn short_text_and_bad_sizes_are_refused() {
        let tokens: Vec<u32> = (0..7).collect();
        assert!(split_chunks(&tokens, 4, None, 2).is_err());
        assert!(split_chunks(&tokens, 0, None, 2).is_err());
        assert!(split_chunks(&tokens, 2, Some(0), 2).is_err());
        assert_eq!(split_chunks(&tokens, 2, Some(9), 2).unwrap().len(), 3);
    }
}
