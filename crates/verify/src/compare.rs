//! One pass over the evaluation chunks with both models: every chunk runs through the reference
//! and the candidates layer-major (one layer's weights at a time, fetched once per run), the
//! residual streams are folded into per-layer error sums, then each chunk's logits are scored
//! into [`MetricSums`] and dropped.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::ScoreSpan;
use crate::error::{Result, VerifyError};
use crate::metrics::{score_position, MetricSums, Metrics};
use crate::model::LayerMajor;
use crate::observer::NoObserver;
use crate::reference_file::{ReferenceFile, ReferenceWriter};
use crate::spill::MemoryBudget;
use crate::weights::Weights;

/// How to compare.
#[derive(Clone, Copy, Debug)]
pub struct CompareOptions {
    /// Which positions of each chunk are scored.
    pub span: ScoreSpan,
    /// Also compare the residual stream after every layer (costs memory for `L + 1` copies of
    /// a chunk's hidden states per model).
    pub layer_errors: bool,
}

/// Relative error of one residual stream: `‖h_cand - h_ref‖ / ‖h_ref‖` over every position of
/// every chunk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerError {
    /// 0 for the scaled embedding, `i + 1` for the output of decoder layer `i`.
    pub index: usize,
    pub relative_error: f64,
}

/// The result of [`compare`].
#[derive(Clone, Debug)]
pub struct Comparison {
    pub metrics: Metrics,
    /// Empty unless [`CompareOptions::layer_errors`].
    pub layers: Vec<LayerError>,
}

/// Checks that the candidate is the same architecture as the reference, so positions and
/// vocabulary line up.
pub fn check_compatible(reference: &dyn Weights, candidate: &dyn Weights) -> Result<()> {
    let (r, c) = (reference.config(), candidate.config());
    let fields = [
        ("vocab_size", r.vocab_size, c.vocab_size),
        ("hidden_size", r.hidden_size, c.hidden_size),
        (
            "num_hidden_layers",
            r.num_hidden_layers,
            c.num_hidden_layers,
        ),
        (
            "num_attention_heads",
            r.num_attention_heads,
            c.num_attention_heads,
        ),
    ];
    for (name, a, b) in fields {
        if a != b {
            return Err(VerifyError::Input(format!(
                "the candidate has {name} {b} but the reference has {a}: not the same model"
            )));
        }
    }
    Ok(())
}

/// Runs both models over `chunks` and scores them. `progress(done, total)` is called after
/// each chunk.
pub fn compare(
    reference: &dyn Weights,
    candidate: &dyn Weights,
    chunks: &[Vec<u32>],
    opts: CompareOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Comparison> {
    let mut out = compare_many(reference, &[candidate], chunks, opts, progress)?;
    Ok(out.remove(0))
}

/// Per-candidate running sums.
#[derive(Default)]
struct Sums {
    metrics: MetricSums,
    /// Per residual stream: (Σ (cand - ref)², Σ ref²).
    layers: Vec<(f64, f64)>,
}

/// Scores several candidates against one reference in one pass, under the default
/// [`MemoryBudget`]: see [`compare_many_with`].
pub fn compare_many(
    reference: &dyn Weights,
    candidates: &[&dyn Weights],
    chunks: &[Vec<u32>],
    opts: CompareOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Comparison>> {
    compare_many_with(
        reference,
        candidates,
        chunks,
        opts,
        &MemoryBudget::default(),
        progress,
    )
}

/// [`compare_each`] that fails as a whole on the first candidate (in `candidates` order) whose
/// weights, logits or metrics are not finite.
pub fn compare_many_with(
    reference: &dyn Weights,
    candidates: &[&dyn Weights],
    chunks: &[Vec<u32>],
    opts: CompareOptions,
    budget: &MemoryBudget,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Comparison>> {
    compare_each(reference, candidates, chunks, opts, budget, progress)?
        .into_iter()
        .collect()
}

/// Scores several candidates against one reference in one pass, so a sweep over quantization
/// types costs one reference pass instead of one per type. Results come back in `candidates`
/// order and equal what [`compare`] gives for each alone. A candidate whose weights, logits or
/// metrics are not finite gets its [`VerifyError::CandidateNotFinite`] in its place and drops
/// out of the pass; any other error (the reference's, unreadable input) fails the whole call.
///
/// The models run layer-major and in lockstep ([`LayerMajor`]): layer `i` of the reference over
/// every chunk, then layer `i` of each candidate, so each tensor is fetched once per run and the
/// residual-stream errors of layer `i` are summed before the next layer (chunk by chunk, as one
/// pass per chunk sums them). The chunks' states are kept under `budget` and spilled beyond it.
/// Then the tied heads give every model's logits for groups of chunks whose logits fit the
/// budget (each embedding row block read once per group), and the positions are scored and
/// folded in chunk order, then position order. `progress(done, total)` is called after each
/// layer and each chunk's heads.
pub fn compare_each(
    reference: &dyn Weights,
    candidates: &[&dyn Weights],
    chunks: &[Vec<u32>],
    opts: CompareOptions,
    budget: &MemoryBudget,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Result<Comparison>>> {
    compare_each_from(
        reference,
        ReferenceSide::Run(None),
        candidates,
        chunks,
        opts,
        budget,
        progress,
    )
}

/// Where the reference's side of the scores comes from.
pub enum ReferenceSide<'a> {
    /// Run the reference forward pass; the writer, when given, stores its scored rows.
    Run(Option<&'a mut ReferenceWriter>),
    /// Read them from a stored reference (checked against this run by the caller): no
    /// reference pass and no per-layer errors (there are no reference hidden states).
    Stored(&'a ReferenceFile),
}

/// [`compare_each`] with the reference's rows from `side`; `reference` still gives the
/// architecture the candidates must match.
pub fn compare_each_from(
    reference: &dyn Weights,
    mut side: ReferenceSide<'_>,
    candidates: &[&dyn Weights],
    chunks: &[Vec<u32>],
    opts: CompareOptions,
    budget: &MemoryBudget,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Result<Comparison>>> {
    let stored = match &side {
        ReferenceSide::Stored(f) => Some(*f),
        ReferenceSide::Run(_) => None,
    };
    let opts = CompareOptions {
        layer_errors: opts.layer_errors && stored.is_none(),
        ..opts
    };
    for c in candidates {
        check_compatible(reference, *c)?;
    }
    let n = candidates.len();
    let nl = reference.config().num_hidden_layers;
    let vocab = reference.config().vocab_size;
    let total = nl + chunks.len();
    let obs = &mut NoObserver;
    let mut sums: Vec<Sums> = candidates.iter().map(|_| Sums::default()).collect();
    // A candidate that failed: its error, and no pass any more.
    let mut failed: Vec<Option<VerifyError>> = candidates.iter().map(|_| None).collect();
    let mut r = match stored {
        None => Some(LayerMajor::start(reference, chunks, budget, obs)?),
        Some(_) => None,
    };
    let mut cands = Vec::with_capacity(n);
    for (k, c) in candidates.iter().enumerate() {
        let pass = LayerMajor::start(*c, chunks, budget, obs).map_err(|e| of_candidate(e, k, n));
        cands.push(alive(pass, &mut failed[k])?);
    }
    // Per model (reference first) and chunk: the first residual stream that went non-finite,
    // named when the logits turn out non-finite (only while the streams are compared).
    let mut first_bad = vec![vec![None; chunks.len()]; n + 1];
    for stream in 0..=nl {
        if stream > 0 {
            if let Some(r) = &mut r {
                r.step(obs)?;
            }
            for (k, slot) in cands.iter_mut().enumerate() {
                if let Some(c) = slot {
                    let stepped = c.step(obs).map_err(|e| of_candidate(e, k, n));
                    if alive(stepped, &mut failed[k])?.is_none() {
                        *slot = None;
                    }
                }
            }
        }
        if let (true, Some(r)) = (opts.layer_errors, &r) {
            for (ci, bad) in first_bad[0].iter_mut().enumerate() {
                note_non_finite(r, ci, stream, bad)?;
            }
            for (k, (slot, acc)) in cands.iter().zip(sums.iter_mut()).enumerate() {
                let Some(c) = slot else { continue };
                if acc.layers.is_empty() {
                    acc.layers = vec![(0.0, 0.0); nl + 1];
                }
                for (ci, bad) in first_bad[k + 1].iter_mut().enumerate() {
                    note_non_finite(c, ci, stream, bad)?;
                    // Added chunk by chunk, in element order within each chunk.
                    let sum = &mut acc.layers[stream];
                    r.with_hidden(ci, |hr| c.with_hidden(ci, |hc| add_sq_errors(sum, hr, hc)))??;
                }
            }
        }
        if stream > 0 {
            progress(stream, total);
        }
    }
    // The heads run over groups of chunks whose logits (every model's) fit the budget, so the
    // embedding is read once per group; scoring still goes chunk by chunk in order.
    // Only the scored positions go through the heads (see `LayerMajor::logits`).
    let scored = |len: usize| {
        let first = opts.span.first(len);
        first..len.saturating_sub(1).max(first)
    };
    let logits_bytes = chunks
        .iter()
        .map(|c| scored(c.len()).len())
        .max()
        .unwrap_or(0)
        .saturating_mul(vocab)
        .saturating_mul(4);
    let models = n + usize::from(r.is_some());
    let per_chunk = logits_bytes.saturating_mul(models).max(1);
    // Where each chunk's scored positions start in a stored reference.
    let mut offsets = Vec::with_capacity(chunks.len());
    let mut at = 0;
    for c in chunks {
        offsets.push(at);
        at += c
            .len()
            .saturating_sub(1)
            .saturating_sub(opts.span.first(c.len()));
    }
    if let Some(f) = stored {
        if f.positions() != at || f.identity().vocab != vocab {
            return Err(VerifyError::Input(format!(
                "the stored reference holds {} positions of vocab {}, this run scores {at} of \
                 vocab {vocab}",
                f.positions(),
                f.identity().vocab
            )));
        }
    }
    let group = (budget.limit() / per_chunk).clamp(1, chunks.len().max(1));
    let mut g0 = 0;
    while g0 < chunks.len() {
        let g1 = (g0 + group).min(chunks.len());
        let rls = match &mut r {
            Some(r) => Some(r.logits(g0..g1, scored, obs)?),
            None => None,
        };
        let mut cls = Vec::with_capacity(n);
        for (k, slot) in cands.iter_mut().enumerate() {
            let logits = match slot {
                Some(c) => {
                    let l = c
                        .logits(g0..g1, scored, obs)
                        .map_err(|e| of_candidate(e, k, n));
                    let l = alive(l, &mut failed[k])?;
                    if l.is_none() {
                        *slot = None;
                    }
                    l
                }
                None => None,
            };
            cls.push(logits);
        }
        for (gi, ci) in (g0..g1).enumerate() {
            let chunk = &chunks[ci];
            let first = opts.span.first(chunk.len());
            let rl: &[f32] = match rls.as_ref().and_then(|l| l.chunk(gi)) {
                Some(rl) => {
                    check_finite("reference", ci, rl, vocab, first, first_bad[0][ci])?;
                    if let ReferenceSide::Run(Some(w)) = &mut side {
                        w.add_chunk(rl, chunk, first);
                    }
                    rl
                }
                None => &[],
            };
            for (k, acc) in sums.iter_mut().enumerate() {
                if failed[k].is_some() {
                    continue;
                }
                let Some(cl) = cls[k].as_ref().and_then(|l| l.chunk(gi)) else {
                    continue;
                };
                let which = candidate_name(k, n);
                if let Err(e) = check_finite(&which, ci, cl, vocab, first, first_bad[k + 1][ci]) {
                    failed[k] = Some(VerifyError::CandidateNotFinite(e.to_string()));
                    cands[k] = None;
                    continue;
                }
                // Scored in parallel, folded in position order: the sums never depend on threads.
                let scores: Vec<_> = (first..chunk.len().saturating_sub(1))
                    .into_par_iter()
                    .map(|j| {
                        let row = (j - first) * vocab..(j - first + 1) * vocab;
                        let target = chunk[j + 1] as usize;
                        match stored {
                            Some(f) => f.score(offsets[ci] + j - first, &cl[row], target),
                            None => (score_position(&rl[row.clone()], &cl[row], target), None),
                        }
                    })
                    .collect();
                for (s, gap) in &scores {
                    acc.metrics.add(s);
                    if let Some(g) = gap {
                        acc.metrics.add_kld_gap(*g);
                    }
                }
            }
            progress(nl + ci + 1, total);
        }
        g0 = g1;
    }
    let mut out = Vec::with_capacity(n);
    for (k, (acc, fail)) in sums.into_iter().zip(failed).enumerate() {
        if let Some(e) = fail {
            out.push(Err(e));
            continue;
        }
        if acc.metrics.is_empty() {
            return Err(VerifyError::Input("no positions to score".into()));
        }
        let metrics = acc.metrics.finish();
        if let Some((name, value)) = metrics.first_non_finite() {
            let which = candidate_name(k, n);
            out.push(Err(VerifyError::CandidateNotFinite(format!(
                "metric {name} is {value}: the {which}'s logits are finite but too far from \
                 the reference's to score"
            ))));
            continue;
        }
        out.push(Ok(Comparison {
            metrics,
            layers: acc
                .layers
                .iter()
                .enumerate()
                .map(|(index, &(diff, norm))| LayerError {
                    index,
                    relative_error: if norm > 0.0 {
                        (diff / norm).sqrt()
                    } else {
                        0.0
                    },
                })
                .collect(),
        }));
    }
    Ok(out)
}

/// Sorts a candidate's step result: a value goes on, a [`VerifyError::CandidateNotFinite`] is
/// recorded in `failed` (the candidate drops out: `None`), any other error fails the run.
fn alive<T>(res: Result<T>, failed: &mut Option<VerifyError>) -> Result<Option<T>> {
    match res {
        Ok(v) => Ok(Some(v)),
        Err(e @ VerifyError::CandidateNotFinite(_)) => {
            *failed = Some(e);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A candidate's forward-pass error: a non-finite weight makes it a candidate that fails.
fn of_candidate(e: VerifyError, k: usize, n: usize) -> VerifyError {
    match e {
        VerifyError::NonFinite { .. } => {
            VerifyError::CandidateNotFinite(format!("the {}'s {e}", candidate_name(k, n)))
        }
        e => e,
    }
}

/// How errors name candidate `k` of `n`.
fn candidate_name(k: usize, n: usize) -> String {
    if n == 1 {
        "candidate".to_string()
    } else {
        format!("candidate {k}")
    }
}

/// Records `stream` as chunk `ci`'s first non-finite residual stream if it is the first.
fn note_non_finite(
    pass: &LayerMajor<'_, '_>,
    ci: usize,
    stream: usize,
    bad: &mut Option<usize>,
) -> Result<()> {
    if bad.is_none() && pass.with_hidden(ci, |h| h.iter().any(|v| !v.is_finite()))? {
        *bad = Some(stream);
    }
    Ok(())
}

/// Fails when a model's logits for chunk `ci` hold a NaN or an infinity (the metrics would be
/// NaN, and NaN passes no gate and fails none): names the model, the position and, when the
/// residual streams were compared, the first layer whose output went non-finite. The weights
/// were checked when opened, so this is an overflow in the arithmetic.
fn check_finite(
    which: &str,
    ci: usize,
    logits: &[f32],
    vocab: usize,
    first: usize,
    first_bad: Option<usize>,
) -> Result<()> {
    let Some(flat) = logits.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    let vocab = vocab.max(1);
    let layer = first_bad.map(|i| match i {
        0 => ", first in the scaled embedding".to_string(),
        i => format!(", first in the output of layer {}", i - 1),
    });
    Err(VerifyError::Input(format!(
        "the {which}'s logits are not finite at chunk {ci}, position {}, token {}{}",
        first + flat / vocab,
        flat % vocab,
        layer.unwrap_or_default()
    )))
}

/// Adds one chunk's squared differences and squared reference norms of a residual stream.
fn add_sq_errors(sum: &mut (f64, f64), reference: &[f32], cand: &[f32]) {
    for (&x, &y) in reference.iter().zip(cand) {
        let d = (y - x) as f64;
        sum.0 += d * d;
        sum.1 += (x as f64) * (x as f64);
    }
}
