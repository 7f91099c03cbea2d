//! `--evaluate`: score every candidate against the reference in one pass (verify's
//! `compare_each`: each chunk runs through the reference once and through every candidate).
//!
//! A planned candidate is written exactly as `g4q convert` writes it, into a scratch folder
//! (removed afterwards), and opened as `g4q verify` opens that file or folder (GGUF products with
//! ggml's math; an AWQ or ONNX folder dequantized as its runtime defines). The figures therefore
//! equal those of `g4q verify` on what `g4q convert` writes, whose sha256 the result records.
//! Candidates are scored from files rather than from weights quantized in memory because the
//! GGUF reader is what `g4q verify` runs (its ggml products and checks) and the written bytes
//! are what the sha256 names; the scratch folder needs the disk space of all the candidates at
//! once (they are scored side by side). A candidate with a weight or logit that is not finite
//! is not scored (its error is returned in its place); the others still are.

use std::path::Path;

use convert::Checkpoint;
use quantize::Imatrix;
use verify::candidate::Opened;
use verify::compare::{compare_each, CompareOptions};
use verify::data::ScoreSpan;
use verify::gguf_weights::GgufMath;
use verify::spill::MemoryBudget;
use verify::{VerifyError, Weights};

use super::candidates::{self, Candidate, Planned};
use super::evidence::Evidence;
use super::folders;

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

/// What planned candidates are written from.
#[derive(Clone, Copy, Default)]
pub struct Sources<'a> {
    /// The checkpoint (MODEL).
    pub ckpt: Option<&'a Checkpoint>,
    /// The AWQ-scaled checkpoint `g4q convert --awq` quantizes: the source of `-awq` GGUF
    /// candidates.
    pub awq_scaled: Option<&'a Checkpoint>,
    /// The importance matrix and the name files record for it.
    pub imatrix: Option<&'a (Imatrix, String)>,
    /// The AWQ int4 folder, written by `g4q convert --format awq`'s own code (its AWQ search
    /// and writer), for the `AWQ_INT4_G…` candidate.
    pub awq_folder: Option<&'a Path>,
}

/// Writes planned candidate `c` (no file yet) into `scratch` from `src` and returns its path;
/// the AWQ int4 folder is [`Sources::awq_folder`], already written.
fn write_planned(
    c: &Candidate,
    src: &Sources<'_>,
    scratch: &Path,
) -> Result<std::path::PathBuf, String> {
    let ckpt = src
        .ckpt
        .ok_or_else(|| format!("{}: no checkpoint to write it from", c.name))?;
    let out = scratch.join(&c.name);
    match candidates::parse_name(&c.name)? {
        Planned::Gguf {
            ftype,
            imatrix: use_im,
            awq,
        } => {
            let from = if awq {
                src.awq_scaled
                    .ok_or_else(|| format!("{}: no AWQ-scaled checkpoint", c.name))?
            } else {
                ckpt
            };
            let im = if use_im {
                let (im, file) = src
                    .imatrix
                    .ok_or_else(|| format!("{} needs --imatrix", c.name))?;
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
            let out = out.with_extension("gguf");
            quantize::gguf_release::write(from, &out, &opts)
                .map_err(|e| format!("writing {}: {e}", c.name))?;
            Ok(out)
        }
        Planned::OnnxInt4 { block } => {
            folders::write_onnx(ckpt, block, &out)?;
            Ok(out)
        }
        Planned::AwqInt4 { .. } => src
            .awq_folder
            .map(Path::to_path_buf)
            .ok_or_else(|| format!("{}: the folder is not written", c.name)),
    }
}

/// Scores `cands` against `reference` over `chunks` (second-half positions, as verify's
/// default): one result per candidate, its evidence or why it could not be scored (a weight or
/// logit that is not finite). Planned candidates (no file) are written from `src` into
/// `scratch` first; every candidate gets the sha256 of what was scored. `progress(done, total)`
/// follows the chunks. Errors: a candidate that cannot be written or read, or a reference that
/// fails.
pub fn evaluate(
    reference: &dyn Weights,
    src: &Sources<'_>,
    cands: &mut [Candidate],
    chunks: &[Vec<u32>],
    scratch: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Result<Evidence, String>>, String> {
    let mut opened: Vec<Result<Opened, String>> = Vec::with_capacity(cands.len());
    for c in cands.iter_mut() {
        let path = match &c.file {
            Some(f) => f.clone(),
            None => write_planned(c, src, scratch)?,
        };
        if c.sha256.is_none() {
            c.sha256 = Some(verify::candidate::fingerprint(&path).map_err(|e| e.to_string())?);
        }
        opened.push(match Opened::open(&path, GgufMath::Ggml) {
            Ok(w) => Ok(w),
            Err(e @ VerifyError::NonFinite { .. }) => Err(format!("the candidate's {e}")),
            Err(e) => return Err(format!("{}: {e}", c.name)),
        });
    }
    let weights: Vec<&dyn Weights> = opened
        .iter()
        .filter_map(|o| o.as_ref().ok().map(Opened::weights))
        .collect();
    let opts = CompareOptions {
        span: ScoreSpan::SecondHalf,
        layer_errors: false,
    };
    let mut scored = if weights.is_empty() {
        Vec::new()
    } else {
        compare_each(
            reference,
            &weights,
            chunks,
            opts,
            &MemoryBudget::default(),
            progress,
        )
        .map_err(|e| e.to_string())?
    }
    .into_iter();
    let mut out = Vec::with_capacity(cands.len());
    let mut k = 0;
    for (o, c) in opened.iter().zip(cands.iter()) {
        out.push(match o {
            Err(why) => Err(why.clone()),
            Ok(_) => {
                k += 1;
                match scored.next().expect("one result per opened candidate") {
                    Ok(cmp) => Ok(Evidence::from_metrics(&cmp.metrics, SOURCE)),
                    // The row names the candidate: not its index among those scored.
                    Err(VerifyError::CandidateNotFinite(why)) => {
                        Err(why.replace(&format!("candidate {}'s", k - 1), "candidate's"))
                    }
                    Err(e) => return Err(format!("{}: {e}", c.name)),
                }
            }
        });
    }
    Ok(out)
}
