//! `--evaluate`: score every candidate against the reference in one pass (verify's
//! `compare_many`: each chunk runs through the reference once and through every candidate).
//!
//! A planned candidate is quantized exactly as `g4q convert --type` writes it, into a GGUF file
//! in a scratch folder (removed afterwards), and opened as `g4q verify` opens a GGUF candidate
//! (products with ggml's math). The figures therefore equal those of `g4q verify` on the file
//! `g4q convert` writes, whose sha256 the result records. The scratch folder needs the disk space
//! of all the candidates at once (they are scored side by side).

use std::path::Path;

use convert::Checkpoint;
use quantize::Imatrix;
use verify::compare::{compare_many, CompareOptions};
use verify::data::ScoreSpan;
use verify::gguf_weights::{GgufMath, GgufWeights};
use verify::Weights;

use super::candidates::{self, Candidate};
use super::evidence::Evidence;

/// The `source` of evaluated evidence.
pub const SOURCE: &str = "evaluated";

/// The evaluation chunks of `text` for a reference folder's tokenizer, cut as `g4q verify`
/// cuts them (`[bos] + text`, `ctx` tokens per chunk, at most `chunks`).
pub fn chunks(
    reference_dir: &Path,
    bos: u32,
    text: &str,
    ctx: usize,
    chunks: Option<usize>,
) -> Result<Vec<Vec<u32>>, String> {
    let tok = verify::Tokenizer::from_model_dir(reference_dir).map_err(|e| e.to_string())?;
    let ids = tok.encode_with_bos(text, bos).map_err(|e| e.to_string())?;
    verify::data::chunk_tokens(&ids, ctx, chunks, bos).map_err(|e| e.to_string())
}

/// Scores `cands` against `reference` over `chunks` (second-half positions, as verify's
/// default). Planned candidates (no file) are written from `ckpt` into `scratch` first, and get
/// the written file's sha256. `progress(done, total)` follows the chunks.
pub fn evaluate(
    reference: &dyn Weights,
    ckpt: Option<&Checkpoint>,
    cands: &mut [Candidate],
    imatrix: Option<&(Imatrix, String)>,
    chunks: &[Vec<u32>],
    scratch: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Evidence>, String> {
    let mut opened = Vec::with_capacity(cands.len());
    for c in cands.iter_mut() {
        let path = match &c.file {
            Some(f) => f.clone(),
            None => {
                let ckpt =
                    ckpt.ok_or_else(|| format!("{}: no checkpoint to write it from", c.name))?;
                let (ftype, use_im) = candidates::parse_name(&c.name)?;
                let im = if use_im {
                    let (im, file) =
                        imatrix.ok_or_else(|| format!("{} needs --imatrix", c.name))?;
                    Some((im, file.clone()))
                } else {
                    None
                };
                let opts = quantize::gguf_release::ReleaseOptions {
                    ftype,
                    mix: Default::default(),
                    imatrix: im,
                    progress: None,
                };
                let out = scratch.join(format!("{}.gguf", c.name));
                quantize::gguf_release::write(ckpt, &out, &opts)
                    .map_err(|e| format!("writing {}: {e}", c.name))?;
                c.sha256 = Some(verify::candidate::fingerprint(&out).map_err(|e| e.to_string())?);
                out
            }
        };
        opened.push(GgufWeights::open(&path, GgufMath::Ggml).map_err(|e| e.to_string())?);
    }
    let refs: Vec<&dyn Weights> = opened.iter().map(|w| w as &dyn Weights).collect();
    let opts = CompareOptions {
        span: ScoreSpan::SecondHalf,
        layer_errors: false,
    };
    let results = compare_many(reference, &refs, chunks, opts, progress).map_err(|e| {
        let names: Vec<String> = cands
            .iter()
            .enumerate()
            .map(|(k, c)| format!("candidate {k} is {}", c.name))
            .collect();
        format!("{e} ({})", names.join(", "))
    })?;
    Ok(results
        .iter()
        .map(|r| Evidence::from_metrics(&r.metrics, SOURCE))
        .collect())
}
