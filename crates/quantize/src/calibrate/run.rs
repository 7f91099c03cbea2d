//! The imatrix run: every chunk through the reference forward pass with the collector attached.
//!
//! The chunks run layer-major ([`verify::LayerMajor`]): every chunk through layer `i` before
//! layer `i + 1`, so each layer's tensors are fetched (and their pages read) once per run and
//! released after it; memory is one layer's weights plus the chunks' residual streams, spilled to
//! disk beyond the [`MemoryBudget`]. The collector sees each weight's inputs chunk by chunk in
//! chunk order, exactly as with one pass per chunk, so the sums and counts are the same. Each
//! chunk is an independent sequence (no state carries over), as llama-imatrix clears its KV
//! cache per chunk. The tied head is skipped: llama-imatrix does not collect `output.weight` by default,
//! and on the released 262k-token vocabulary it is the largest GEMM of the pass.

use verify::spill::MemoryBudget;
use verify::{LayerMajor, Weights};

use crate::calibrate::chunks::split_chunks;
use crate::calibrate::collector::ImatrixCollector;
use crate::error::Result;
use crate::imatrix::Imatrix;

/// How to cut the calibration tokens, and what to record as the data set.
#[derive(Clone, Debug)]
pub struct ImatrixOptions {
    /// Tokens per chunk (llama-imatrix `-c`), recorded as `imatrix.chunk_size`.
    pub ctx: usize,
    /// At most this many chunks (llama-imatrix `--chunks`); `None`: as many as the text fills.
    pub max_chunks: Option<usize>,
    /// The data set name written to `imatrix.datasets` (llama.cpp writes the `-f` path as given).
    pub dataset: String,
}

/// Computes the importance matrix of `src` over `tokens` (BOS first, as
/// [`crate::calibrate::calibration_tokens`] returns them), with the chunks' activations under
/// the default [`MemoryBudget`]. `progress(done, total)` is called after every layer.
pub fn compute_imatrix(
    src: &dyn Weights,
    tokens: &[u32],
    opts: &ImatrixOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Imatrix> {
    compute_imatrix_with(src, tokens, opts, &MemoryBudget::default(), progress)
}

/// [`compute_imatrix`] with the chunks' activations kept under `budget`.
pub fn compute_imatrix_with(
    src: &dyn Weights,
    tokens: &[u32],
    opts: &ImatrixOptions,
    budget: &MemoryBudget,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Imatrix> {
    let cfg = src.config();
    let chunks = split_chunks(tokens, opts.ctx, opts.max_chunks, cfg.bos_token_id)?;
    let mut collector = ImatrixCollector::new(cfg.num_experts);
    let mut pass = LayerMajor::start(src, &chunks, budget, &mut collector)?;
    let n_layers = pass.num_layers();
    while pass.layers_done() < n_layers {
        pass.step(&mut collector)?;
        // Stop at the first bad layer rather than after the whole run.
        collector.check()?;
        progress(pass.layers_done(), n_layers);
    }
    let chunk_count = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
    let chunk_size = u32::try_from(opts.ctx).unwrap_or(u32::MAX);
    collector.finish(vec![opts.dataset.clone()], chunk_count, chunk_size)
}
