//! One pass over the evaluation chunks with both models: each chunk runs through the reference
//! and the candidate (streaming: one layer's weights at a time each), its scored positions are
//! folded into [`MetricSums`], the residual streams into per-layer error sums, and the logits
//! are dropped. Nothing is written to disk, unlike llama.cpp's `--kl-divergence-base` two-step.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::ScoreSpan;
use crate::error::{Result, VerifyError};
use crate::metrics::{score_position, MetricSums, Metrics};
use crate::model::{forward_streaming, ForwardOptions};
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
        ("num_hidden_layers", r.num_hidden_layers, c.num_hidden_layers),
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
    check_compatible(reference, candidate)?;
    let fwd = ForwardOptions {
        hidden_states: opts.layer_errors,
    };
    let mut sums = MetricSums::default();
    let mut layer_sums: Vec<(f64, f64)> = Vec::new();
    for (ci, chunk) in chunks.iter().enumerate() {
        let r = forward_streaming(reference, chunk, fwd, &mut NoObserver, &mut |_, _| {})?;
        let c = forward_streaming(candidate, chunk, fwd, &mut NoObserver, &mut |_, _| {})?;
        let first = opts.span.first(chunk.len());
        // Scored in parallel, folded in position order: the sums never depend on threads.
        let scores: Vec<_> = (first..chunk.len() - 1)
            .into_par_iter()
            .map(|j| {
                let rl = r.logits.row(j);
                let cl = c.logits.row(j);
                let (rl, cl) = (
                    rl.as_slice().expect("logits rows are contiguous"),
                    cl.as_slice().expect("logits rows are contiguous"),
                );
                score_position(rl, cl, chunk[j + 1] as usize)
            })
            .collect();
        for s in &scores {
            sums.add(s);
        }
        if let (Some(hr), Some(hc)) = (&r.hidden_states, &c.hidden_states) {
            if layer_sums.is_empty() {
                layer_sums = vec![(0.0, 0.0); hr.len()];
            }
            for ((acc, a), b) in layer_sums.iter_mut().zip(hr).zip(hc) {
                for (&x, &y) in a.iter().zip(b.iter()) {
                    let d = (y - x) as f64;
                    acc.0 += d * d;
                    acc.1 += (x as f64) * (x as f64);
                }
            }
        }
        progress(ci + 1, chunks.len());
    }
    if sums.is_empty() {
        return Err(VerifyError::Input("no positions to score".into()));
    }
    let layers = layer_sums
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
        .collect();
    Ok(Comparison {
        metrics: sums.finish(),
        layers,
    })
}
