//! Evaluation data: text tokenized with the reference's tokenizer or pre-tokenized ids, cut into
//! chunks exactly as llama.cpp's perplexity tool cuts them, so figures are comparable with its.
//!
//! llama.cpp tokenizes the whole text with BOS in front, takes chunk `i` as tokens
//! `[i * ctx, (i + 1) * ctx)`, and overwrites the first token of every chunk with BOS. Each
//! chunk is scored on its second half only (positions `ctx / 2 .. ctx - 1` predict the token
//! after them), because early positions see too little context to say much about the model;
//! [`ScoreSpan::All`] scores every position instead (what transformers' perplexity examples do).

use crate::error::{Result, VerifyError};

/// The evaluation text that ships with g4q (English prose and code written for it), used when
/// neither `--data` nor `--tokens-file` is given.
pub const BUNDLED_TEXT: &str = include_str!("../../../data/eval.txt");

/// Which positions of a chunk are scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreSpan {
    /// The second half, as llama.cpp's perplexity tool scores.
    SecondHalf,
    /// Every position that has a next token.
    All,
}

impl ScoreSpan {
    /// The first position scored in a chunk of `ctx` tokens (position `j` predicts `j + 1`).
    pub fn first(self, ctx: usize) -> usize {
        match self {
            ScoreSpan::SecondHalf => ctx / 2,
            ScoreSpan::All => 0,
        }
    }

    /// The name written in reports.
    pub fn name(self) -> &'static str {
        match self {
            ScoreSpan::SecondHalf => "second-half",
            ScoreSpan::All => "all",
        }
    }
}

/// Parses a tokens file: integers separated by whitespace and/or commas, optionally inside one
/// JSON-style pair of brackets. `file` names it in errors.
pub fn parse_token_ids(text: &str, file: &str) -> Result<Vec<u32>> {
    let body = text.trim();
    let body = body
        .strip_prefix('[')
        .and_then(|b| b.strip_suffix(']'))
        .unwrap_or(body);
    body.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, s)| {
            s.parse::<u32>().map_err(|_| {
                VerifyError::Input(format!(
                    "{file}: token {i} '{s}' is not a non-negative integer id"
                ))
            })
        })
        .collect()
}

/// Cuts `tokens` into at most `max_chunks` (all when `None`) chunks of `ctx` tokens, each
/// starting with `bos` as llama.cpp does; a partial last chunk is dropped.
pub fn chunk_tokens(
    tokens: &[u32],
    ctx: usize,
    max_chunks: Option<usize>,
    bos: u32,
) -> Result<Vec<Vec<u32>>> {
    if ctx < 2 {
        return Err(VerifyError::Input(format!(
            "--ctx {ctx} is too small: a chunk needs at least 2 tokens"
        )));
    }
    let available = tokens.len() / ctx;
    if available == 0 {
        return Err(VerifyError::Input(format!(
            "the data holds {} tokens, fewer than one chunk of --ctx {ctx}",
            tokens.len()
        )));
    }
    if max_chunks == Some(0) {
        return Err(VerifyError::Input("--chunks must be at least 1".into()));
    }
    let n = max_chunks.map_or(available, |m| m.min(available));
    Ok(tokens
        .chunks_exact(ctx)
        .take(n)
        .map(|c| {
            let mut chunk = c.to_vec();
            chunk[0] = bos;
            chunk
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_start_with_bos_and_drop_the_tail() {
        let tokens: Vec<u32> = (10..21).collect();
        let chunks = chunk_tokens(&tokens, 4, None, 2).unwrap();
        assert_eq!(chunks, vec![vec![2, 11, 12, 13], vec![2, 15, 16, 17]]);
        assert_eq!(chunk_tokens(&tokens, 4, Some(1), 2).unwrap().len(), 1);
        assert!(chunk_tokens(&tokens, 12, None, 2).is_err());
        assert!(chunk_tokens(&tokens, 1, None, 2).is_err());
    }

    #[test]
    fn token_files_parse_in_both_spellings() {
        assert_eq!(parse_token_ids("[2, 5,7]", "f").unwrap(), vec![2, 5, 7]);
        assert_eq!(parse_token_ids("2 5\n7\n", "f").unwrap(), vec![2, 5, 7]);
        let err = parse_token_ids("2 -5", "f").unwrap_err().to_string();
        assert!(err.contains("'-5'"), "{err}");
    }

    #[test]
    fn bundled_text_is_a_few_kilobytes() {
        assert!(BUNDLED_TEXT.len() > 4000, "{}", BUNDLED_TEXT.len());
    }
}
