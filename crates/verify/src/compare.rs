//! One pass over the evaluation chunks with both models: each chunk runs through the reference
//! and the candidate (streaming: one layer's weights at a time each), its scored positions are
//! folded into [`MetricSums`], the residual streams into per-layer error sums, and the logits
//! are dropped. Nothing is written to disk, unlike llama.cpp's `--kl-divergence-base` two-step.

use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::ScoreSpan;
use crate::error::{Result, VerifyError};
use crate::metrics::{score_position, MetricSums, Metrics};
use crate::model::{forward_streaming, ForwardOptions, ForwardOutput};
use crate::observer::NoObserver;
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

/// Scores several candidates against one reference in one pass: each chunk runs through the
/// reference once and through every candidate, so a sweep over quantization types costs one
/// reference pass instead of one per type. Results come back in `candidates` order and equal
/// what [`compare`] gives for each alone.
pub fn compare_many(
    reference: &dyn Weights,
    candidates: &[&dyn Weights],
    chunks: &[Vec<u32>],
    opts: CompareOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Comparison>> {
    for c in candidates {
        check_compatible(reference, *c)?;
    }
    let fwd = ForwardOptions {
        hidden_states: opts.layer_errors,
    };
    let mut sums: Vec<Sums> = candidates.iter().map(|_| Sums::default()).collect();
    for (ci, chunk) in chunks.iter().enumerate() {
        let r = forward_streaming(reference, chunk, fwd, &mut NoObserver, &mut |_, _| {})?;
        check_finite("reference", ci, &r)?;
        let first = opts.span.first(chunk.len());
        for (k, (cand, acc)) in candidates.iter().zip(sums.iter_mut()).enumerate() {
            let which = candidate_name(k, candidates.len());
            let c = forward_streaming(*cand, chunk, fwd, &mut NoObserver, &mut |_, _| {}).map_err(
                |e| match e {
                    VerifyError::NonFinite { .. } => {
                        VerifyError::CandidateNotFinite(format!("the {which}'s {e}"))
                    }
                    e => e,
                },
            )?;
            check_finite(&which, ci, &c)
                .map_err(|e| VerifyError::CandidateNotFinite(e.to_string()))?;
            // Scored in parallel, folded in position order: the sums never depend on threads.
            let scores: Vec<_> = (first..chunk.len().saturating_sub(1))
                .into_par_iter()
                .map(|j| {
                    let (rl, cl) = (r.logits.row(j), c.logits.row(j));
                    let (rl, cl) = (
                        rl.as_slice().expect("logits rows are contiguous"),
                        cl.as_slice().expect("logits rows are contiguous"),
                    );
                    score_position(rl, cl, chunk[j + 1] as usize)
                })
                .collect();
            for s in &scores {
                acc.metrics.add(s);
            }
            if let (Some(hr), Some(hc)) = (&r.hidden_states, &c.hidden_states) {
                add_layer_errors(&mut acc.layers, hr, hc);
            }
        }
        progress(ci + 1, chunks.len());
    }
    sums.into_iter()
        .enumerate()
        .map(|(k, acc)| {
            if acc.metrics.is_empty() {
                return Err(VerifyError::Input("no positions to score".into()));
            }
            let metrics = acc.metrics.finish();
            if let Some((name, value)) = metrics.first_non_finite() {
                let which = candidate_name(k, candidates.len());
                return Err(VerifyError::CandidateNotFinite(format!(
                    "metric {name} is {value}: the {which}'s logits are finite but too far from \
                     the reference's to score"
                )));
            }
            Ok(Comparison {
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
            })
        })
        .collect()
}

/// How errors name candidate `k` of `n`.
fn candidate_name(k: usize, n: usize) -> String {
    if n == 1 {
        "candidate".to_string()
    } else {
        format!("candidate {k}")
    }
}

/// Fails when a model's logits for chunk `ci` hold a NaN or an infinity (the metrics would be
/// NaN, and NaN passes no gate and fails none): names the model, the position and, when the
/// residual streams were kept, the first layer whose output went non-finite. The weights were
/// checked when opened, so this is an overflow in the arithmetic.
fn check_finite(which: &str, ci: usize, out: &ForwardOutput) -> Result<()> {
    let Some(flat) = out.logits.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    let vocab = out.logits.ncols().max(1);
    let layer = out.hidden_states.as_ref().and_then(|hs| {
        hs.iter()
            .position(|h| h.iter().any(|v| !v.is_finite()))
            .map(|i| match i {
                0 => ", first in the scaled embedding".to_string(),
                i => format!(", first in the output of layer {}", i - 1),
            })
    });
    Err(VerifyError::Input(format!(
        "the {which}'s logits are not finite at chunk {ci}, position {}, token {}{}",
        flat / vocab,
        flat % vocab,
        layer.unwrap_or_default()
    )))
}

/// Adds one chunk's squared differences and squared reference norms per residual stream.
fn add_layer_errors(acc: &mut Vec<(f64, f64)>, reference: &[Array2<f32>], cand: &[Array2<f32>]) {
    if acc.is_empty() {
        *acc = vec![(0.0, 0.0); reference.len()];
    }
    for ((sum, a), b) in acc.iter_mut().zip(reference).zip(cand) {
        for (&x, &y) in a.iter().zip(b.iter()) {
            let d = (y - x) as f64;
            sum.0 += d * d;
            sum.1 += (x as f64) * (x as f64);
        }
    }
}
